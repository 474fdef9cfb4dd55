/**
 * Re-typing the weights of a GGUF model, for tests: each tensor may be replaced by new bytes of
 * another ggml type, everything else (metadata, other tensors, order) kept. With ggml's own
 * quantizer (the addon's `quantize`) this turns an F32 synthetic model into the file llama.cpp's
 * quantize tool would write for the same weights (no importance matrix), in any type the engine
 * computes, K-quants included.
 */
import { GgmlType, ggufValue, parseGguf, serializeGguf, type GgufTensorInfo, type GgufTensorSpec } from '../../lib/gguf';

/** ggml_quantize_chunk: `data` as rows of `nPerRow` values, in ggml type `type`. */
export type Quantizer = (type: number, data: Float32Array, nPerRow: number) => Uint8Array;

/** What to store instead of a tensor: its new type and bytes. `undefined` keeps the tensor. */
export type TensorRewrite = (tensor: GgufTensorInfo, data: Uint8Array) => { type: GgmlType; data: Uint8Array } | undefined;

/** llama.cpp's `general.file_type` (llama_ftype) for a file whose matrices are all of one type. */
const FILE_TYPE: Partial<Record<GgmlType, number>> = {
  [GgmlType.F32]: 0, [GgmlType.F16]: 1, [GgmlType.Q4_0]: 2, [GgmlType.Q4_1]: 3, [GgmlType.Q8_0]: 7,
  [GgmlType.Q5_0]: 8, [GgmlType.Q5_1]: 9, [GgmlType.Q2_K]: 10, [GgmlType.Q3_K]: 12, [GgmlType.Q4_K]: 15,
  [GgmlType.Q5_K]: 17, [GgmlType.Q6_K]: 18, [GgmlType.BF16]: 32,
};

/** The bytes of `bytes` (a GGUF file) with its tensors rewritten by `rewrite`. */
export function rewriteTensors(bytes: Uint8Array, rewrite: TensorRewrite, fileType?: number): Uint8Array {
  const file = parseGguf(bytes);
  const tensors: GgufTensorSpec[] = file.tensors.map((t) => {
    const data = bytes.slice(t.offset, t.offset + t.byteLength);
    const next = rewrite(t, data);
    return next ? { name: t.name, type: next.type, dims: t.dims, data: next.data } : { name: t.name, type: t.type, dims: t.dims, data };
  });
  const metadata = new Map(file.metadata);
  if (fileType !== undefined) metadata.set('general.file_type', ggufValue.u32(fileType));
  return serializeGguf({ version: file.version, metadata, tensors });
}

/** F32 values of a little-endian F32 tensor's bytes. */
export function f32Values(data: Uint8Array): Float32Array {
  const copy = data.slice();
  return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

/**
 * Every F32 matrix (2-D, more than one row: embeddings, projections, classifier) quantized to
 * `type` with `quantize`; vectors (norms, biases) stay F32, as llama.cpp's quantize tool leaves them.
 */
export function quantizeModel(bytes: Uint8Array, type: GgmlType, quantize: Quantizer): Uint8Array {
  return rewriteTensors(
    bytes,
    (t, data) => {
      if (t.type !== GgmlType.F32 || t.dims.length !== 2 || t.dims[1] < 2) return undefined;
      return { type, data: quantize(type, f32Values(data), t.dims[0]) };
    },
    FILE_TYPE[type],
  );
}
