/**
 * Soak test of `lm-infinite serve`: 8 persistent chat sessions talk at once, turn after turn
 * (streamed, sampled), until each has generated 50k tokens, i.e. ~100× the model's training
 * length per session with stories260K. The server's resident memory (/metrics
 * process_resident_memory_bytes) is sampled throughout; with Λ attention every session's K/V is
 * fixed, so RSS must stay flat once warm. Writes the "Serve: soak" section of bench/RESULTS.md.
 *
 *   npm run build:ts && npx sucrase-node bench/serve-soak.ts [--model f.gguf] [--sessions 8]
 *       [--tokens 50000] [--threads 2] [--no-write]
 */
import * as path from 'path';

import { Client } from '../test/serve/client';
import { arg, defaultModel, flag, machine, spawnServer, writeResultsSection } from './serve-common';

const model = arg('model', defaultModel);
const nSessions = Number(arg('sessions', '8'));
const target = Number(arg('tokens', '50000'));
const threads = arg('threads', '2');
const TOPICS = ['the park', 'a red ball', 'the big tree', 'a little bird', 'the sea', 'a cake', 'the moon', 'a kind dog'];

async function metric(client: Client, name: string): Promise<number> {
  const res = await fetch(`${client.base}/metrics`);
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  const server = await spawnServer(['-m', model, '--threads', threads, '--max-sessions', String(nSessions + 4)]);
  const client = new Client(server.url);
  const generated = new Array<number>(nSessions).fill(0);
  const turns = new Array<number>(nSessions).fill(0);
  const samples: { t: number; progress: number; rss: number; heap: number; kv: number }[] = [];
  let failures = 0;
  const t0 = performance.now();
  let done = false;
  const sampler = (async () => {
    while (!done) {
      const progress = generated.reduce((a, b) => a + b, 0) / (nSessions * target);
      samples.push({ t: (performance.now() - t0) / 1000, progress, rss: await metric(client, 'process_resident_memory_bytes'), heap: await metric(client, 'nodejs_heap_used_bytes'), kv: await metric(client, 'lmi_kv_bytes') });
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  try {
    await Promise.all(
      Array.from({ length: nSessions }, async (_, s) => {
        while (generated[s] < target) {
          const turn = turns[s]++;
          const r = await client.stream('/v1/chat/completions', {
            messages: [{ role: 'user', content: `Tell me a story about ${TOPICS[(s + turn) % TOPICS.length]}.` }],
            max_tokens: 250,
            temperature: 0.8,
            seed: s * 100_000 + turn,
            session_id: `soak-${s}`,
            stream_options: { include_usage: true },
          });
          const usage = r.events.at(-1)?.usage;
          if (r.status !== 200 || !r.done || usage === undefined) {
            failures++;
            console.error(`session ${s} turn ${turn} failed: ${JSON.stringify(r.events.at(-1))}`);
            if (failures > 10) throw new Error('too many failures');
            continue;
          }
          generated[s] += usage.completion_tokens;
        }
      }),
    );
  } finally {
    done = true;
    await sampler;
  }
  const seconds = (performance.now() - t0) / 1000;
  const infos = await Promise.all(Array.from({ length: nSessions }, (_, s) => client.json(`/v1/sessions/soak-${s}`)));
  const finalRss = await metric(client, 'process_resident_memory_bytes');
  await server.stop();

  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  const at = (p: number) => samples.find((x) => x.progress >= p) ?? samples[samples.length - 1];
  const warm = at(0.1);
  const after = samples.filter((x) => x.t >= warm.t);
  const maxRss = Math.max(...after.map((x) => x.rss));
  const minRss = Math.min(...after.map((x) => x.rss));
  const total = generated.reduce((a, b) => a + b, 0);
  const tokensPerSession = infos.map((i) => i.body.tokens as number);
  const kvPerSession = new Set(infos.map((i) => i.body.kv_bytes as number));
  const checkpoints = [0.1, 0.25, 0.5, 0.75, 1].map((p) => `| ${(p * 100).toFixed(0)}% | ${at(p).t.toFixed(0)} | ${mib(p === 1 ? finalRss : at(p).rss)} | ${mib(at(p).heap)} | ${mib(at(p).kv)} |`);
  const flat = maxRss - minRss < 32 * 2 ** 20;
  const body =
    `\`npm run build:ts && npx sucrase-node bench/serve-soak.ts --sessions ${nSessions} --tokens ${target} --threads ${threads}\`\n\n` +
    `${path.basename(model)} (trained on 512 tokens); server: \`lm-infinite serve\` (child process, ${threads} threads, Λ defaults: nGlobal 10, nLocal 512, f16 K/V, batching on). ` +
    `${nSessions} persistent chat sessions (fallback template) talk concurrently, streamed, temperature 0.8, until each has generated ${target} tokens. ${machine()}.\n\n` +
    `- ${total} tokens generated in ${seconds.toFixed(0)} s (${(total / seconds).toFixed(0)} tokens/s over all sessions), ${turns.reduce((a, b) => a + b, 0)} turns, ${failures} failed requests.\n` +
    `- Stream length per session at the end: ${Math.min(...tokensPerSession)}–${Math.max(...tokensPerSession)} tokens; K/V per session: ${[...kvPerSession].map((b) => `${mib(b)} MiB`).join(', ')} (fixed).\n` +
    `- Server RSS from 10% of the run to the end: min ${mib(minRss)} MiB, max ${mib(maxRss)} MiB (spread ${mib(maxRss - minRss)} MiB; the bench fails at 32 MiB): ` +
    `${flat ? 'flat' : '**not flat**'}, while every stream grew ${Math.round(Math.min(...tokensPerSession) / 512)}× past the training length; the V8 heap stays between ` +
    `${mib(Math.min(...after.map((x) => x.heap)))} and ${mib(Math.max(...after.map((x) => x.heap)))} MiB.\n\n` +
    `| progress | time (s) | server RSS (MiB) | V8 heap used (MiB) | K/V of all sessions (MiB) |\n| ---: | ---: | ---: | ---: | ---: |\n${checkpoints.join('\n')}`;
  console.log(body);
  if (!flag('no-write')) writeResultsSection('Serve: soak', body);
  if (failures > 0 || !flat) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
