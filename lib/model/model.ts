import { DisposedError } from '../errors';
import type { NativeArchitecture, NativeDevice, NativeHyperparameters, NativeModel, NativeSampleToken, NativeWeightLayout } from '../native/types';
import { Session, type SessionHost } from '../session/session';
import type { SessionOptions } from '../session/options';
import type { Tokenizer } from '../tokenizer';

export interface ModelInfo {
  arch: NativeArchitecture;
  /** `general.name`, when the file has one. */
  name: string | null;
  /** The GGUF file, as given to loadModel. */
  path: string;
  hparams: Readonly<NativeHyperparameters>;
  /** Training context length (`<arch>.context_length`): the default nLocal. */
  contextLength: number;
  nVocab: number;
  /** Bytes of weights mapped by native. */
  weightBytes: number;
  tensorCount: number;
  /** Default compute threads of this model's sessions. */
  threads: number;
  /** Where weights, K/V and compute live (loadModel's `gpu` option). */
  device: NativeDevice;
  /**
   * Where a CPU model's matrices live: ggml's faster CPU layouts ("AMX", "CPU_REPACK"), into
   * which loadModel copies them as llama.cpp does, or "mapped" (read from the file as stored).
   * Empty on a GPU.
   */
  weightLayouts: readonly NativeWeightLayout[];
}

/** A loaded model: weights (native, shared by all its sessions), hyperparameters and tokenizer. */
export class Model {
  readonly info: Readonly<ModelInfo>;
  readonly tokenizer: Tokenizer;
  private native: NativeModel | null;
  private readonly sessions = new Set<Session>();
  private disposing: Promise<void> | null = null;
  private readonly host: SessionHost;

  /** @internal Use loadModel(). */
  constructor(native: NativeModel, info: ModelInfo, tokenizer: Tokenizer, nativeSampler?: NativeSampleToken) {
    this.native = native;
    this.info = Object.freeze({ ...info, hparams: Object.freeze({ ...info.hparams }) });
    this.tokenizer = tokenizer;
    const self = this;
    this.host = {
      tokenizer,
      nativeSampler,
      nVocab: info.nVocab,
      nLayer: info.hparams.nLayer,
      contextLength: info.contextLength,
      defaultThreads: info.threads,
      nativeModel(): NativeModel {
        if (self.native === null || self.disposing !== null) throw new DisposedError('this model');
        return self.native;
      },
      forget(session: Session): void {
        self.sessions.delete(session);
      },
    };
  }

  /** Where the model runs: 'gpu' (CUDA) or 'cpu'. */
  get device(): NativeDevice {
    return this.info.device;
  }

  get disposed(): boolean {
    return this.disposing !== null;
  }

  /** Sessions created and not yet disposed. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * A new stream with its own K/V memory, allocated now and fixed for the session's life.
   * See SessionOptions for the attention settings and their defaults.
   */
  createSession(options?: SessionOptions): Session {
    if (this.disposing !== null) throw new DisposedError('this model');
    const session = new Session(this.host, options);
    this.sessions.add(session);
    return session;
  }

  /**
   * Disposes every session of the model, waits for their running native calls, then frees the
   * weights. Idempotent; later use of the model or its sessions throws DisposedError.
   */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      const sessions = [...this.sessions];
      for (const s of sessions) s.dispose();
      await Promise.all(sessions.map((s) => s.closed()));
      const native = this.native;
      this.native = null;
      native?.dispose();
    })();
    return this.disposing;
  }
}
