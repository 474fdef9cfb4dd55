/**
 * The native addon's surface, declared once. Only lib/native and the typed wrappers over it
 * (lib/attention, ...) touch these functions; everything else goes through the wrappers.
 */
import type { ResolvedSamplingOptions } from '../sampling/sampler';

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
  noAvx512?: boolean;
}

export interface NativeSystemInfo {
  ggmlVersion: string;
  /** What ggml was built for (GGML_NATIVE: this machine's CPU). amxInt8: Intel AMX tile matmuls. */
  cpu: { avx: boolean; avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; neon: boolean; amxInt8?: boolean };
  attentionSimd: 'avx2+fma' | 'portable';
  /** What `loadModel(path, { gpu })` can use. Absent from addons older than GPU support. */
  gpu?: NativeGpuInfo;
}

/**
 * A ggml memory layout holding some of a model's matrices: "AMX" (Intel AMX tiles),
 * "CPU_REPACK" (rows interleaved for AVX2/AVX-512/NEON), or "mapped" (read from the file as stored).
 */
export interface NativeWeightLayout {
  name: string;
  tensors: number;
  bytes: number;
}

export interface NativeGpuInfo {
  /** Built with LMI_CUDA (ggml's CUDA backend and the CUDA Λ kernel). */
  compiled: boolean;
  /** CUDA devices visible to both (0 when not compiled). */
  deviceCount: number;
  /** The first device as ggml names it ("CUDA0") and describes it; empty when none. */
  name: string;
  description: string;
  memoryTotal: number;
  memoryFree: number;
  /** Why a model cannot be loaded on the GPU, with the fix; null when it can. */
  unavailableReason: string | null;
}

export interface NativeAddon extends NativeEngine {
  /** Validates synchronously (throws with code INVALID_ARGUMENT), computes on a worker thread. */
  attention(args: NativeAttentionArgs): Promise<Float32Array>;
  /** The C++ rule (lambda_rule.h) for pairs (i[n], j[n]): 0 masked, 1 local, 2 global, 3 middle. For cross-checks. */
  classify(i: BigInt64Array, j: BigInt64Array, mask: NativeAttentionArgs['mask']): Int8Array;
  cpuHasAvx2Fma(): boolean;
  systemInfo(): NativeSystemInfo;
  /**
   * ggml's quantizer (ggml_quantize_chunk, no importance matrix): `data` as rows of `nPerRow`
   * values, in ggml type `type` (one the engine computes: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
   * Q8_0, Q2_K..Q6_K; else UNSUPPORTED). Synchronous, for tests and tools that build small models.
   */
  quantize(type: number, data: Float32Array, nPerRow: number): Uint8Array;
  /**
   * The native sampler (what decode runs sample with) on one row: the id, or -1 where it leaves the
   * row to lib/sampling (NaN or +Infinity logits, nothing left to sample); the sfc32 state after.
   * Synchronous, for tests that hold it against lib/sampling.
   */
  sampleToken: NativeSampleToken;
}

export type NativeSampleToken = (args: { logits: Float32Array; sampling: NativeSamplingParams; rngState: Uint32Array; recent: Int32Array }) => {
  token: number;
  rngState: Uint32Array;
};

// ---------------------------------------------------------------------------------------------
// The model engine (issue: loader, tokenizers, engine, ring-buffer sessions).
// TypeScript reads the GGUF (lib/gguf), decides the hyperparameters and hands native a complete
// description; native mmaps the file, builds the ggml forward pass and owns K/V memory.
// TypeScript owns the slot table (lib/cache): which slot each token takes and every slot's position.

export type NativeArchitecture = 'llama' | 'qwen2' | 'gptneox' | 'mpt';

export interface NativeHyperparameters {
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKV: number;
  headDim: number;
  nFF: number;
  /** RMSNorm (llama, qwen2) or LayerNorm (gptneox, mpt) epsilon. */
  normEps: number;
  /** Training context length (`<arch>.context_length`). */
  contextLength: number;
  /** RoPE models: theta base, position multiplier, rotated dims, pairing. Ignored for ALiBi models. */
  ropeTheta: number;
  ropeFreqScale: number;
  rotaryDim: number;
  ropePairing: 'normal' | 'neox';
  /** gptneox: attention and MLP read the same input (parallel residual). */
  parallelResidual: boolean;
  /** mpt: ALiBi bias max (slopes m_h = 2^(-alibiBiasMax * (h+1) / nHead) for power-of-two nHead), clamp of QKV (0 = none). */
  alibiBiasMax: number;
  clampKQV: number;
}

export interface NativeTensorSpec {
  name: string;
  /** ggml type number (GgmlType). */
  type: number;
  /** ggml order: dims[0] is the row length. */
  dims: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

export interface NativeModelSpec {
  path: string;
  arch: NativeArchitecture;
  hparams: NativeHyperparameters;
  tensors: NativeTensorSpec[];
  /** Default compute threads for contexts of this model. */
  threads: number;
  /**
   * Where weights, K/V and compute live. 'gpu' needs a CUDA build and a device (else the load
   * rejects with UNSUPPORTED, saying which is missing). Default 'cpu'.
   */
  device?: NativeDevice;
}

export type NativeDevice = 'cpu' | 'gpu';

/**
 * How a session's K/V cache stores its rows: IEEE half, float, or ggml's 8-bit Q8_0 blocks (32
 * values share one half scale; 34 bytes per 32 values, so about half of f16's memory and
 * bandwidth). q8_0 needs a head dimension that is a multiple of 32 and runs on the CPU only.
 */
export type KvCacheType = 'f16' | 'f32' | 'q8_0';

export interface NativeContextOptions {
  /** Slots of the ring-buffer cache (nGlobal + nLocal, or the vanilla maximum). */
  nSlot: number;
  /** Extra archive slots for layers >= topKFromLayer (top-k middle attention); 0 when top-k is off. */
  nArchive: number;
  topKFromLayer: number;
  kvType: KvCacheType;
  /** Largest number of tokens one eval() may carry. */
  maxBatch: number;
  threads: number;
  /**
   * @internal Testing knob: run the forward pass as graph segments with the Λ kernel called
   * between them, as a GPU model always does, on the CPU. Same results, more overhead.
   */
  segmented?: boolean;
  /**
   * @internal Testing knob: keep the CPU cache slot-major ([slot][KV head][headDim], what a GPU
   * model uses) instead of head-major. Same results, slower decode at long windows.
   */
  slotMajorKV?: boolean;
}

export interface NativeEvalBatch {
  /** Token ids, n entries. */
  tokens: Int32Array;
  /** Absolute position of each token, increasing. */
  positions: BigInt64Array;
  /** Slot each token's K/V is written to (0 <= slot < nSlot). */
  slots: Int32Array;
  /** Copies [src0, dst0, src1, dst1, ...] of K/V from ring slots to archive slots (>= nSlot), done before writing. */
  archiveCopies: Int32Array;
  /**
   * Every slot's position while this batch attends, before it is written (nSlot + nArchive entries;
   * -1 empty; this batch's archive copies not yet counted), each older than positions[0]. The batch
   * attends to these slots and to its own tokens; then its tokens are written into `slots`.
   */
  slotPositions: BigInt64Array;
  mask: { lambda: boolean; origin: number; nGlobal: number; nLocal: number; limitDistance: number };
  topK: { k: number; insertAt: number };
  /** Which rows of logits to return: all tokens, the last one, or none. */
  logits: 'all' | 'last' | 'none';
  /**
   * Context eval only: a Float32Array of exactly rows × nVocab elements that eval() writes the logits
   * into and resolves with (so decoding allocates nothing per token). Must not be read or passed to
   * another eval until this one settles. Absent: a fresh array.
   */
  out?: Float32Array;
}

/** The sampler's resolved options as NativeContext.decode() takes them (the seed is in rngState). */
export interface NativeSamplingParams extends Omit<ResolvedSamplingOptions, 'seed' | 'logitBias'> {
  /** Logit bias as two parallel arrays (distinct ids). */
  biasIds: Int32Array;
  biasValues: Float64Array;
}

/**
 * A decode run: evaluate `token`, sample the next id from its logits with the native copy of the
 * TypeScript sampler, evaluate it, and so on, one token per step, without returning to JavaScript.
 * Step i writes at positions[i] into slots[i] (one step per entry at most); the table is the one
 * before the run (a context without an archive: nSlot entries).
 */
export interface NativeDecodeRequest {
  token: number;
  positions: BigInt64Array;
  slots: Int32Array;
  slotPositions: BigInt64Array;
  mask: NativeEvalBatch['mask'];
  /** The stream's latest tokens, oldest first, ending with `token` (for the penalties). */
  recent: Int32Array;
  /** nVocab entries: the run ends once an id with a nonzero entry is sampled. */
  endAfter: Uint8Array;
  /** No step starts once the run has taken this long (0: no limit). */
  budgetMs: number;
  sampling: NativeSamplingParams;
  /** The sampler's sfc32 state before the run; the result carries the state after it. */
  rngState: Uint32Array;
  /** nVocab floats: receives the last step's logits. */
  out: Float32Array;
  /** At least positions.length entries: receives the sampled ids. */
  sampledOut: Int32Array;
}

export interface NativeDecodeResult {
  /** Steps done: `token` and the first steps - 1 sampled ids were evaluated and written. */
  steps: number;
  /** Ids in sampledOut: steps, or steps - 1 when the native sampler left the last row to TypeScript (NaN or infinite logits). */
  sampled: number;
  computeSeconds: number;
  rngState: Uint32Array;
}

export interface NativeContext {
  /** Runs the batch on a worker thread; resolves with logits [rows][nVocab] (empty when logits is 'none'). */
  eval(batch: NativeEvalBatch): Promise<Float32Array>;
  /** A decode run on the worker thread. Stand-ins (test fakes) may omit it; sessions then decode one eval per token. */
  decode?(request: NativeDecodeRequest): Promise<NativeDecodeResult>;
  /**
   * Puts back what the last `steps` steps of the latest decode() overwrote (synchronous: a few rows
   * per layer), as if the run had ended that many steps earlier. Only before any other eval.
   */
  rollback?(steps: number): void;
  /** Bytes of K/V (and archive) memory this context holds. */
  kvBytes(): number;
  /** Evals this context finished and the seconds the engine spent computing them (on the worker thread). */
  /** Forward passes this context finished, the calls (eval, decode) that ran them, and the seconds they took (on the worker thread). */
  stats(): { evals: number; calls: number; computeSeconds: number };
  dispose(): void;
}

/** One sequence of a NativeModel.evalMany() call. */
export interface NativeEvalManyItem {
  context: NativeContext;
  batch: NativeEvalBatch;
}

export interface NativeModel {
  createContext(options: NativeContextOptions): NativeContext;
  /**
   * Continuous batching: the batches of several distinct contexts of this model as ONE forward
   * pass over their concatenated tokens (matmuls batched; attention per sequence through the Λ
   * kernel against each context's own K/V). Resolves with each item's logits, as eval() would
   * return them. Every context is busy (eval() on it rejects) until it settles; one evalMany at a
   * time per model. Validates every batch before anything runs. Optional in the type so that
   * stand-ins (test fakes, older addons) may omit it; callers fall back to eval().
   */
  evalMany?(items: NativeEvalManyItem[]): Promise<Float32Array[]>;
  /** Bytes of weights mapped (or, on a GPU, uploaded). */
  weightBytes(): number;
  /** Where the model runs. Optional in the type for stand-ins and older addons (then 'cpu'). */
  device?(): NativeDevice;
  /** Where a CPU model's matrices live (ggml layouts); empty on a GPU. Optional for stand-ins. */
  weightLayouts?(): NativeWeightLayout[];
  dispose(): void;
}

export interface NativeEngine {
  /** mmaps the file, checks every tensor against the file and the architecture, builds the weights; off the event loop. */
  loadModel(spec: NativeModelSpec): Promise<NativeModel>;
}
