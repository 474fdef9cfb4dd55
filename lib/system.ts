import { loadAddon } from './native/addon';
import type { NativeSystemInfo } from './native/types';

/** What the native side was built with and will use on this CPU (builds the addon on first use). */
export async function systemInfo(): Promise<NativeSystemInfo> {
  const addon = await loadAddon();
  return addon.systemInfo();
}
