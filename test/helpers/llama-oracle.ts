/**
 * llama.cpp as an oracle, through node-llama-cpp (a dev-dependency, CPU prebuilt). node-llama-cpp is
 * ESM-only and ts-jest compiles tests to CommonJS, so the work runs in a child process
 * (llama-oracle-child.mjs beside this file) that reads one JSON request and answers with one JSON reply.
 * Batch several models and jobs into one call: each process pays ~1 s to start llama.cpp.
 *
 * Settings: CPU only, flash attention off, K/V cache F32 by default (llama.cpp's default is F16,
 * which rounds K and V; pass kvType 'F16' to see that), context >= the longest job, one sequence,
 * history cleared between jobs. Log-probabilities are log of node-llama-cpp's float32 softmax of
 * the raw logits (temperature 0, no penalties), for every vocabulary entry.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';

export type OracleJob =
  | { kind: 'logprobs'; tokens: number[] }
  | { kind: 'greedy'; tokens: number[]; n: number }
  | { kind: 'tokenize'; text: string; special?: boolean };

export interface OracleModelRequest {
  modelPath: string;
  jobs: OracleJob[];
  /** Default: the longest job. */
  contextSize?: number;
  /** K/V cache type; default 'F32'. */
  kvType?: 'F32' | 'F16';
  /** Default 2. */
  threads?: number;
}

export type OracleJobResult =
  | { kind: 'logprobs'; nVocab: number; /** [position][nVocab] */ logprobs: Float32Array[] }
  | { kind: 'greedy' | 'tokenize'; ids: number[] };

/** One entry per model: its job results, or the error llama.cpp raised loading or running it. */
export type OracleModelResult = { ok: true; results: OracleJobResult[] } | { ok: false; error: string };

const SCRIPT = path.join(__dirname, 'llama-oracle-child.mjs');

interface RawReply {
  models: ({ nVocab: number; results: ({ ids: number[] } | { logprobs: string })[] } | { error: string })[];
}

const MARKER = '\n@@lm-infinite-oracle-reply@@\n';

/** One child process over `models`; it stops after the first model llama.cpp refuses. */
function runProcess(models: OracleModelRequest[], timeoutMs: number): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const at = stdout.lastIndexOf(MARKER);
      if (code !== 0 || at < 0) {
        const tail = (Buffer.concat(err).toString('utf8') + stdout).slice(-4000);
        reject(new Error(`llama oracle exited with ${code ?? signal} and no reply: ${tail}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout.slice(at + MARKER.length)) as RawReply);
      } catch (e) {
        reject(new Error(`llama oracle replied with something that is not JSON: ${(e as Error).message}`));
      }
    });
    child.stdin.end(JSON.stringify({ models }));
  });
}

function decode(m: RawReply['models'][number], req: OracleModelRequest): OracleModelResult {
  if ('error' in m) return { ok: false, error: m.error };
  return {
    ok: true,
    results: m.results.map((r, ji): OracleJobResult => {
      if ('logprobs' in r) {
        const b = Buffer.from(r.logprobs, 'base64');
        const all = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
        const rows = Array.from({ length: all.length / m.nVocab }, (_, i) => all.subarray(i * m.nVocab, (i + 1) * m.nVocab));
        return { kind: 'logprobs', nVocab: m.nVocab, logprobs: rows };
      }
      return { kind: req.jobs[ji].kind === 'greedy' ? 'greedy' : 'tokenize', ids: r.ids };
    }),
  };
}

/**
 * Runs every model's jobs, in as few child processes as it can (a new one after each model
 * llama.cpp refuses). Rejects only if a process itself fails (e.g. a GGML_ASSERT abort).
 */
export async function runOracle(models: OracleModelRequest[], timeoutMs = 300_000): Promise<OracleModelResult[]> {
  const results: OracleModelResult[] = [];
  while (results.length < models.length) {
    const rest = models.slice(results.length);
    const raw = await runProcess(rest, timeoutMs);
    if (raw.models.length === 0) throw new Error('llama oracle answered for no model');
    raw.models.forEach((m, i) => results.push(decode(m, rest[i])));
  }
  return results;
}

function only(result: OracleModelResult): OracleJobResult[] {
  if (!result.ok) throw new Error(`llama.cpp refused the model: ${result.error}`);
  return result.results;
}

/** log p(next | prefix) at every position of `tokens`: [position][nVocab]. */
export async function oracleLogProbs(modelPath: string, tokens: number[], opts: Partial<OracleModelRequest> = {}): Promise<Float32Array[]> {
  const [res] = await runOracle([{ ...opts, modelPath, jobs: [{ kind: 'logprobs', tokens }] }]);
  const r = only(res)[0];
  if (r.kind !== 'logprobs') throw new Error('internal: expected log-probabilities');
  return r.logprobs;
}

/** `n` greedy (argmax) continuation ids after `tokens`. */
export async function oracleGreedy(modelPath: string, tokens: number[], n: number, opts: Partial<OracleModelRequest> = {}): Promise<number[]> {
  const [res] = await runOracle([{ ...opts, modelPath, jobs: [{ kind: 'greedy', tokens, n }] }]);
  const r = only(res)[0];
  if (r.kind === 'logprobs') throw new Error('internal: expected ids');
  return r.ids;
}

/** llama.cpp's tokenization of `text` (no BOS). */
export async function oracleTokenize(modelPath: string, text: string, special = false): Promise<number[]> {
  const [res] = await runOracle([{ modelPath, jobs: [{ kind: 'tokenize', text, special }] }]);
  const r = only(res)[0];
  if (r.kind === 'logprobs') throw new Error('internal: expected ids');
  return r.ids;
}
