/** GGUF file format: read the header, metadata and tensor table; write files (tests); describe them. */
export * from './types';
export {
  GGML_TYPES,
  ggmlTypeInfo,
  ggmlTypeName,
  isKnownGgmlType,
  tensorByteLength,
  tensorElementCount,
  type GgmlTypeInfo,
} from './ggml-types';
export {
  parseGguf,
  readGguf,
  DEFAULT_MAX_HEADER_BYTES,
  GGUF_DEFAULT_ALIGNMENT,
  MAX_ARRAY_DEPTH,
  MAX_KEY_BYTES,
  MAX_METADATA_ENTRIES,
  MAX_NESTED_ARRAYS,
  MAX_TENSOR_NAME_BYTES,
  MAX_TENSORS,
  type GgufReadOptions,
} from './reader';
export {
  serializeGguf,
  serializeGgufHeader,
  writeGguf,
  type GgufHeaderSpec,
  type GgufLayout,
  type GgufSpec,
  type GgufTensorHeaderSpec,
  type GgufTensorSpec,
} from './writer';
export * from './metadata';
export { describeGguf, type DescribeOptions } from './describe';
export { valueTypeName } from './value-types';
