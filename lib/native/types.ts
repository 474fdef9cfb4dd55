/**
 * The native addon's surface, declared once. Only lib/native and the typed wrappers over it
 * (lib/attention, ...) touch these functions; everything else goes through the wrappers.
 */
export interface NativeAttentionArgs {
  nQ: number;
  nHead: number;
  nHeadKV: number;
  headDim: number;
  nSlot: number;
  kvType: 'f32' | 'f16';
  /** [nQ][nHead][headDim] */
  q: Float32Array;
  /** [nSlot][nHeadKV][headDim]; Uint16Array holds IEEE half bits when kvType is 'f16'. */
  k: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
  /** Absolute position of each slot; -1 marks an empty slot. */
  slotPos: BigInt64Array;
  qPos: BigInt64Array;
  scale: number;
  encoding:
    | { kind: 'rope'; thetaBase: number; freqScale: number; rotaryDim: number; pairing: 'normal' | 'neox' }
    | { kind: 'alibi'; slopes: Float32Array }
    | { kind: 'none' };
  mask: { lambda: boolean; origin: number; nGlobal: number; nLocal: number; limitDistance: number };
  topK: { k: number; insertAt: number };
  threads: number;
  forcePortable?: boolean;
}

export interface NativeSystemInfo {
  ggmlVersion: string;
  ggmlCommit: string;
  cpu: { avx: boolean; avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; neon: boolean };
  attentionSimd: 'avx2+fma' | 'portable';
}

export interface NativeAddon {
  /** Validates synchronously (throws with code INVALID_ARGUMENT), computes on a worker thread. */
  attention(args: NativeAttentionArgs): Promise<Float32Array>;
  /** The C++ rule (lambda_rule.h) for pairs (i[n], j[n]): 0 masked, 1 local, 2 global, 3 middle. For cross-checks. */
  classify(i: BigInt64Array, j: BigInt64Array, mask: NativeAttentionArgs['mask']): Int8Array;
  cpuHasAvx2Fma(): boolean;
  systemInfo(): NativeSystemInfo;
}

