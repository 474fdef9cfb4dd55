/** The HTTP server: an OpenAI-compatible request handler, persistent sessions, continuous batching. */
export { createHandler, type ServeHandler, type ServeOptions } from './handler';
export { BatchScheduler, type BatchSchedulerOptions, type BatchStepInfo } from './scheduler';
export { SessionStore, type ServedSession, type SessionStoreOptions } from './sessions';
export { ChatConversation, fallbackTemplate, jinjaTemplate, loadChatTemplate, FALLBACK_STOP, type ChatTemplate } from './chat-template';
export { HttpError } from './errors';
export type { ChatMessage, ChatRequest, CompletionRequest } from './params';
