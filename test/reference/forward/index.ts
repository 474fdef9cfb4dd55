/** The plain reference forward pass (tests only): see forward.ts. */
export {
  ReferenceModel,
  referenceForward,
  alibiSlopes,
  argmax,
  logSoftmax,
  type ReferenceForwardOptions,
  type ReferenceLambdaOptions,
  type ReferenceState,
  type ResolvedAttention,
} from './forward';
export { readHparams, loadWeights, tensorValues, type ReferenceArch, type ReferenceHparams, type ReferenceWeights } from './model';
export { dequantize, quantize, floatToBf16Bits, REFERENCE_TYPES } from './blocks';
