/** Token sampling: pure transforms over a row of logits, and a seeded sampler that chains them. */
export { Prng, randomSeed } from './prng';
export {
  applyLogitBias,
  applyMinP,
  applyPenalties,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  logSumExp,
  negativeLogLikelihood,
  rankedIds,
  sampleFromLogits,
  softmax,
  type PenaltyOptions,
} from './transforms';
export { MAX_PENALTY_WINDOW, Sampler, resolveSamplingOptions, type ResolvedSamplingOptions, type SamplingOptions } from './sampler';
