/** Loading GGUF models: architecture and hyperparameters, tokenizer, native weights. */
export { Model, type ModelInfo } from './model';
export { loadModel, defaultThreadCount, describeModelFile, GPU_FALLBACK_WARNING, type GpuOption, type LoadModelOptions } from './load';
export { SUPPORTED_ARCHITECTURES, readArchitecture, readHyperparameters, tensorSpecs } from './hparams';
