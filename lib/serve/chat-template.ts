/**
 * Chat prompts. A model's GGUF may carry a Jinja chat template (`tokenizer.chat_template`); it is
 * rendered with @huggingface/jinja, with `messages`, `add_generation_prompt`, `bos_token` and
 * `eos_token` in scope (the library provides `raise_exception` and `strftime_now`). A model without one (stories260K,
 * base models) gets the fallback: one "<role>: <content>\n" line per message, then "assistant:"
 * for the reply, with "\nuser:" and "\nsystem:" as stop strings so the model does not write the
 * user's next turn.
 *
 * Persistent sessions append only what is new to their stream (ChatConversation): the rendering
 * of the whole conversation minus what the stream already holds, when the template renders a
 * conversation as a prefix of its continuation (most do); otherwise the new messages rendered
 * alone.
 */
import { Template } from '@huggingface/jinja';

import { getString } from '../gguf/metadata';
import { readGguf } from '../gguf/reader';
import type { Tokenizer } from '../tokenizer';
import { invalidRequest } from './errors';
import type { ChatMessage } from './params';

export interface ChatTemplate {
  /** Where it came from: the GGUF, the server's options, or the built-in fallback. */
  readonly source: 'gguf' | 'option' | 'fallback';
  /** Stop strings every reply gets (the fallback's role prefixes; none for Jinja templates). */
  readonly stop: readonly string[];
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
}

export const FALLBACK_STOP = ['\nuser:', '\nsystem:'];

export function fallbackTemplate(): ChatTemplate {
  return {
    source: 'fallback',
    stop: FALLBACK_STOP,
    render(messages, addGenerationPrompt) {
      let text = '';
      for (const m of messages) text += `${m.role}: ${m.content}\n`;
      return addGenerationPrompt ? text + 'assistant:' : text;
    },
  };
}

/** A Jinja template; throws a 400-style HttpError when rendering fails (a template's raise_exception included). */
export function jinjaTemplate(source: string, tokenizer: Tokenizer, origin: 'gguf' | 'option'): ChatTemplate {
  let template: Template;
  try {
    template = new Template(source);
  } catch (err) {
    throw new Error(`the chat template (${origin}) does not parse: ${(err as Error).message}`);
  }
  const text = (id: number | null) => (id === null ? '' : tokenizer.tokenText(id));
  const bosToken = text(tokenizer.bos);
  const eosToken = text(tokenizer.eos);
  return {
    source: origin,
    stop: [],
    render(messages, addGenerationPrompt) {
      try {
        return template.render({
          messages: messages.map((m) => ({ ...m })),
          add_generation_prompt: addGenerationPrompt,
          bos_token: bosToken,
          eos_token: eosToken,
        });
      } catch (err) {
        throw invalidRequest(`the model's chat template refused these messages: ${(err as Error).message}`, 'messages', 'chat_template_error');
      }
    },
  };
}

/**
 * The template for a model: `override` when given (a Jinja source, or null for the fallback),
 * else the GGUF's `tokenizer.chat_template`, else the fallback.
 */
export async function loadChatTemplate(modelPath: string, tokenizer: Tokenizer, override?: string | null): Promise<ChatTemplate> {
  if (override === null) return fallbackTemplate();
  if (typeof override === 'string') return jinjaTemplate(override, tokenizer, 'option');
  const gguf = await readGguf(modelPath);
  const source = getString(gguf.metadata, 'tokenizer.chat_template');
  return source !== undefined && source.trim() !== '' ? jinjaTemplate(source, tokenizer, 'gguf') : fallbackTemplate();
}

/**
 * One persistent chat, in constant memory: only the last turn (its messages and the reply) is
 * kept, however long the conversation runs. A new turn is rendered in a window of the last turn,
 * the reply and the new messages; the text appended is the window's rendering past what the
 * stream already holds (the last prompt and reply), so whatever a template writes at the start of
 * a conversation (BOS, a default system prompt) falls in the common prefix and cancels out.
 */
export class ChatConversation {
  private lastTurn: ChatMessage[] = [];
  private lastReply = '';
  private count = 0;

  /** Turns committed so far. */
  get turns(): number {
    return this.count;
  }

  /**
   * The text to append to the stream for `next` (new messages), to be followed by an assistant
   * reply. Nothing is recorded until commit() (call it once the text goes into the stream).
   */
  prepare(template: ChatTemplate, next: readonly ChatMessage[]): { text: string; commit: () => void } {
    let text: string;
    if (this.count === 0) {
      text = template.render(next, true);
    } else {
      const window: ChatMessage[] = [...this.lastTurn, { role: 'assistant', content: this.lastReply }];
      const prompt = template.render(this.lastTurn, true); // what the stream got before the reply
      const closed = template.render(window, false); // the last reply closed (end-of-turn markers included)
      const full = template.render([...window, ...next], true);
      const held = prompt + this.lastReply;
      // Where the reply's text ends in `closed`: right after `held`, or, for templates that
      // reformat content (trim it, add a space), after the reply's trimmed text.
      let end = -1;
      if (closed.startsWith(held)) end = held.length;
      else if (closed.startsWith(prompt)) {
        const core = this.lastReply.trim();
        const at = core === '' ? prompt.length : closed.indexOf(core, prompt.length);
        if (at >= 0) end = at + core.length;
      }
      text = end >= 0 && full.startsWith(closed)
        ? closed.slice(end) + full.slice(closed.length)
        : template.render(next, true); // the template rewrites earlier turns: render the new ones alone
    }
    return {
      text,
      commit: () => {
        this.lastTurn = [...next];
        this.lastReply = '';
        this.count++;
      },
    };
  }

  /** Records the reply generated after the last prompt (as the client saw it). */
  reply(content: string): void {
    this.lastReply = content;
  }
}
