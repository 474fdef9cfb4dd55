/**
 * Load test of `lm-infinite serve` on loopback: 1, 4 and 16 concurrent streaming clients, each
 * sending greedy /v1/completions requests back to back for a fixed time. Every stream is checked
 * against a single-client greedy run of the same prompt (same text, same completion_tokens, a
 * finish_reason and [DONE]): a lost, duplicated or reordered token fails the run. Reports
 * requests, failures, generated tokens/s and request / first-token latency percentiles, with
 * continuous batching on and off, and writes the "Serve: load test" section of bench/RESULTS.md.
 *
 *   npm run build:ts && npx sucrase-node bench/serve-load.ts [--model f.gguf] [--seconds 20]
 *       [--max-tokens 64] [--threads 2] [--no-write]
 */
import * as path from 'path';

import { Client } from '../test/serve/client';
import { arg, defaultModel, flag, machine, quantile, spawnServer, writeResultsSection } from './serve-common';

const model = arg('model', defaultModel);
const seconds = Number(arg('seconds', '20'));
const maxTokens = Number(arg('max-tokens', '64'));
const threads = arg('threads', '2');
const PROMPTS = ['Once upon a time', 'The cat sat', 'Tom and Sue went', 'One day, a little dog', 'The sun was hot', 'Lily had a red ball', 'There was a big tree', 'Ben wanted to fly'];

interface Row {
  batching: boolean;
  concurrency: number;
  requests: number;
  failed: number;
  mismatched: number;
  tokens: number;
  seconds: number;
  latency: number[];
  ttft: number[];
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const batching of [true, false]) {
    const server = await spawnServer(['-m', model, '--threads', threads, '--max-sessions', '64', ...(batching ? [] : ['--no-batching'])]);
    const client = new Client(server.url);
    try {
      // the single-client greedy reference of every prompt
      const reference = new Map<string, { text: string; tokens: number; finish: string }>();
      for (const prompt of PROMPTS) {
        const r = await client.stream('/v1/completions', { prompt, max_tokens: maxTokens, temperature: 0, stream_options: { include_usage: true } });
        if (r.status !== 200 || !r.done) throw new Error(`reference run failed for ${JSON.stringify(prompt)}: ${JSON.stringify(r.events.at(-1))}`);
        reference.set(prompt, { text: r.text, tokens: r.events.at(-1)!.usage.completion_tokens, finish: r.finishReason! });
      }
      for (const concurrency of [1, 4, 16]) {
        const row: Row = { batching, concurrency, requests: 0, failed: 0, mismatched: 0, tokens: 0, seconds: 0, latency: [], ttft: [] };
        const t0 = performance.now();
        const end = t0 + seconds * 1000;
        const worker = async (w: number) => {
          for (let k = 0; performance.now() < end; k++) {
            const prompt = PROMPTS[(w + k) % PROMPTS.length];
            const start = performance.now();
            try {
              const r = await client.stream('/v1/completions', { prompt, max_tokens: maxTokens, temperature: 0, stream_options: { include_usage: true } });
              const want = reference.get(prompt)!;
              const usage = r.events.at(-1)?.usage;
              row.requests++;
              if (r.status !== 200 || !r.done || usage === undefined) row.failed++;
              else if (r.text !== want.text || usage.completion_tokens !== want.tokens || r.finishReason !== want.finish) row.mismatched++;
              else {
                row.tokens += usage.completion_tokens;
                row.latency.push(performance.now() - start);
                row.ttft.push(r.times[0] ?? NaN);
              }
            } catch (err) {
              row.requests++;
              row.failed++;
              console.error(`request failed: ${(err as Error).message}`);
            }
          }
        };
        await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
        row.seconds = (performance.now() - t0) / 1000;
        rows.push(row);
        console.error(`batching ${batching ? 'on ' : 'off'} c=${concurrency}: ${row.requests} requests, ${row.failed} failed, ${row.mismatched} mismatched, ${(row.tokens / row.seconds).toFixed(0)} tokens/s`);
      }
    } finally {
      await server.stop();
    }
  }

  const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(0) : 'n/a');
  const table = [
    '| batching | clients | requests | failed | wrong tokens | tokens/s | requests/s | latency p50 / p99 (ms) | first token p50 / p99 (ms) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) =>
      `| ${r.batching ? 'on' : 'off'} | ${r.concurrency} | ${r.requests} | ${r.failed} | ${r.mismatched} | ${(r.tokens / r.seconds).toFixed(0)} | ${(r.requests / r.seconds).toFixed(1)} | ` +
      `${fmt(quantile(r.latency, 0.5))} / ${fmt(quantile(r.latency, 0.99))} | ${fmt(quantile(r.ttft, 0.5))} / ${fmt(quantile(r.ttft, 0.99))} |`,
    ),
  ].join('\n');
  const ok = rows.every((r) => r.failed === 0 && r.mismatched === 0);
  console.log(table);
  if (!flag('no-write'))
    writeResultsSection(
      'Serve: load test',
      `\`npm run build:ts && npx sucrase-node bench/serve-load.ts --seconds ${seconds} --max-tokens ${maxTokens} --threads ${threads}\`\n\n` +
        `${path.basename(model)}; server: \`lm-infinite serve\` (child process, ${threads} threads, Λ defaults, f16 K/V); ` +
        `clients: streaming greedy /v1/completions of ${maxTokens} tokens, back to back, ${seconds} s per row, on loopback. ` +
        `Every stream is compared with a single-client greedy run of its prompt (text, completion_tokens, finish_reason, [DONE]); ` +
        `"wrong tokens" counts streams that differ. ${machine()}.\n\n${table}\n\n` +
        (ok ? 'Zero failed requests and zero lost or duplicated tokens in every row.' : '**Some requests failed or differed: see the table.**'),
    );
  if (!ok) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
