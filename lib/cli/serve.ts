/**
 * `lm-infinite serve`: the OpenAI-compatible HTTP server (lib/serve) on node:http. Ctrl-C or
 * SIGTERM stops taking requests, ends running generations and exits.
 */
import * as fs from 'fs';
import * as http from 'http';

import { type Command, InvalidArgumentError as UsageError, Option } from 'commander';

import { loadModel } from '../model';
import { createHandler } from '../serve';
import type { LambdaAttentionOptions } from '../session';
import { KV_CACHE_TYPES, type KvCacheType } from '../session/options';
import { type GpuFlag, gpuFlag, gpuFromFlag } from './session-flags';

/** An integer in [min, max]. */
function int(min: number, max = 2 ** 31 - 1): (value: string) => number {
  return (value) => {
    const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`expected an integer in [${min}, ${max}]`);
    return n;
  };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration in ms: `500ms`, `30s`, `10m`, `2h`, `1d`; a bare number is seconds. */
export function parseDuration(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value);
  if (!m) throw new UsageError('expected a duration such as 500ms, 30s, 10m, 2h (a bare number is seconds)');
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's').toLowerCase()]);
  if (!Number.isSafeInteger(ms)) throw new UsageError('duration out of range');
  return ms;
}

const BYTE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** Bytes: `1048576`, `512k`, `64m`, `4g` (binary units; `kb`, `mib`, ... accepted too); `inf` for no limit. */
export function parseBytes(value: string): number {
  if (/^\s*(inf|infinity|unlimited)\s*$/i.test(value)) return Infinity;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(value);
  if (!m) throw new UsageError('expected a size such as 1048576, 512k, 64m or 4g (or inf)');
  const n = Math.floor(Number(m[1]) * BYTE_UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError('size out of range');
  return n;
}

interface ServeFlags {
  model: string;
  host: string;
  port: number;
  modelId?: string;
  threads?: number;
  gpu?: GpuFlag;
  nGlobal?: number;
  nLocal?: number;
  limitDistance?: number;
  kvType: KvCacheType;
  chunkSize: number;
  sessionTtl: number;
  maxSessions: number;
  maxKvBytes: number;
  maxBodyBytes: number;
  maxTokens: number;
  maxPromptTokens: number;
  requestTimeout: number;
  maxBatchTokens: number;
  batching: boolean;
  chatTemplate?: string;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description(
      'Serve a GGUF model over HTTP: OpenAI-compatible /v1/completions and /v1/chat/completions (streaming or not), ' +
        '/v1/models, /health, /metrics; persistent sessions (session_id or X-Session-Id) in constant memory; ' +
        'continuous batching of all sessions into one forward pass.',
    )
    .requiredOption('-m, --model <file.gguf>', 'the GGUF model')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', int(0, 65535), 8080)
    .option('--model-id <id>', 'the model id clients send and /v1/models lists (default: general.name, else the file name)')
    .option('--threads <n>', 'compute threads (default: an estimate of the physical cores)', int(1, 1024))
    .addOption(gpuFlag())
    .option('--n-global <n>', 'Λ: pinned tokens at the start of each session (default 10)', int(0))
    .option('--n-local <n>', "Λ: local window (default: the model's training length)", int(1))
    .option('--limit-distance <n>', 'Λ: distance cap of the global branch (default: n-local)', int(0))
    .addOption(new Option('--kv-type <type>', 'K/V storage').choices(KV_CACHE_TYPES).default('f16'))
    .option('--chunk-size <n>', 'prompt tokens per forward pass and session (smaller: fairer interleaving)', int(1, 8192), 128)
    .option('--session-ttl <duration>', 'dispose a persistent session idle this long', parseDuration, 600_000)
    .option('--max-sessions <n>', 'sessions alive at once, persistent and one-off (429 beyond)', int(1), 64)
    .option('--max-kv-bytes <size>', 'K/V memory of all sessions together, e.g. 4g (503 beyond; default: no limit)', parseBytes, Infinity)
    .option('--max-body-bytes <size>', 'request body limit (413 beyond)', parseBytes, 4 << 20)
    .option('--max-tokens <n>', 'largest max_tokens a request may ask for', int(1), 4096)
    .option('--max-prompt-tokens <n>', 'largest prompt one request may append', int(1), 16384)
    .option('--request-timeout <duration>', 'stop a request running longer (0: never)', parseDuration, 600_000)
    .option('--max-batch-tokens <n>', 'most tokens in one batched forward pass', int(1, 65536), 512)
    .option('--no-batching', 'run each session on its own (no continuous batching)')
    .option('--chat-template <file>', "a Jinja chat template to use instead of the model's")
    .action(async (flags: ServeFlags) => {
      const chatTemplate = flags.chatTemplate !== undefined ? fs.readFileSync(flags.chatTemplate, 'utf8') : undefined;
      const model = await loadModel(flags.model, { gpu: gpuFromFlag(flags.gpu), ...(flags.threads !== undefined ? { threads: flags.threads } : {}) });
      const attention: LambdaAttentionOptions = {};
      if (flags.nGlobal !== undefined) attention.nGlobal = flags.nGlobal;
      if (flags.nLocal !== undefined) attention.nLocal = flags.nLocal;
      if (flags.limitDistance !== undefined) attention.limitDistance = flags.limitDistance;
      const handler = createHandler({
        model,
        ...(flags.modelId !== undefined ? { modelId: flags.modelId } : {}),
        session: { attention, kvType: flags.kvType, chunkSize: flags.chunkSize },
        sessionTtlMs: flags.sessionTtl,
        maxSessions: flags.maxSessions,
        maxKvBytes: flags.maxKvBytes,
        maxBodyBytes: flags.maxBodyBytes,
        maxTokensLimit: flags.maxTokens,
        maxPromptTokens: flags.maxPromptTokens,
        requestTimeoutMs: flags.requestTimeout,
        batching: flags.batching,
        maxBatchTokens: flags.maxBatchTokens,
        ...(chatTemplate !== undefined ? { chatTemplate } : {}),
      });
      const server = http.createServer(handler);
      server.requestTimeout = 0; // generation time is bounded by --request-timeout, not by node:http
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(flags.port, flags.host, () => resolve());
      });
      const address = server.address();
      const where = typeof address === 'object' && address !== null ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address);
      const kv = handler.sessions.sessionKvBytes();
      process.stderr.write(
        `lm-infinite: serving ${JSON.stringify(handler.modelId)} on ${where} ` +
          `(${model.info.arch}, ${(kv / 2 ** 20).toFixed(1)} MiB K/V per session, at most ${flags.maxSessions} sessions, ` +
          `batching ${flags.batching ? 'on' : 'off'})\n`,
      );
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          process.stderr.write(`lm-infinite: ${signal}: stopping\n`);
          server.close();
          void handler.close().then(() => {
            server.closeAllConnections();
            resolve();
          });
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
      await model.dispose();
    });
}
