// Shared by both sides of the llama.cpp comparison: the token stream and the measurement record.
import { readFileSync } from 'node:fs';

/**
 * The benchmark's token stream: BOS (1), then ids drawn by a 32-bit LCG from [3, nVocab) (no
 * control tokens). Throughput does not depend on the text, and both engines get identical ids.
 */
export class TokenStream {
  constructor(nVocab, seed = 1) {
    this.nVocab = nVocab;
    this.state = seed >>> 0;
    this.produced = 0;
  }

  next(n) {
    const out = new Array(n);
    for (let k = 0; k < n; k++, this.produced++) {
      if (this.produced === 0) {
        out[k] = 1;
        continue;
      }
      this.state = (Math.imul(this.state, 1664525) + 1013904223) >>> 0;
      out[k] = 3 + ((this.state >>> 8) % (this.nVocab - 3));
    }
    return out;
  }
}

/** Peak and current resident memory of this process, in bytes (Linux /proc; null elsewhere). */
export function memory() {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
    return { rss: kib('VmRSS'), peakRss: kib('VmHWM') };
  } catch {
    return { rss: null, peakRss: null };
  }
}

export const now = () => Number(process.hrtime.bigint()) / 1e9;

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs a plan of phases against an engine adapter { prefill(ids) , decode(n) -> step seconds[] } and
 * returns one record per phase: prefill (tokens, seconds, tokens/s), decode (position it started at,
 * tokens/s = tokens / total time), with the process's resident memory after each.
 */
export async function runPlan(engine, plan, nVocab, seed) {
  const stream = new TokenStream(nVocab, seed);
  let position = 0;
  const phases = [];
  for (const phase of plan) {
    if (phase.kind === 'prefill') {
      let left = phase.tokens - position;
      const appended = left;
      let seconds = 0;
      const piece = phase.piece ?? left;
      while (left > 0) {
        const ids = stream.next(Math.min(piece, left));
        const t0 = now();
        await engine.prefill(ids);
        seconds += now() - t0;
        position += ids.length;
        left -= ids.length;
      }
      // tokens: appended in this phase (the stream goes from position - tokens to position).
      phases.push({ kind: 'prefill', label: phase.label, position, tokens: appended, seconds, tokensPerSecond: appended / seconds, ...memory() });
    } else if (phase.kind === 'decode') {
      const start = position;
      const { steps, computeSeconds } = await engine.decode(phase.tokens);
      position += phase.tokens;
      const med = median(steps);
      const wall = steps.reduce((a, b) => a + b, 0);
      // The engine's own compute time, where it reports one: the rest of the wall time is the layers above it.
      const overhead = computeSeconds === undefined ? undefined : { wallSeconds: wall, computeSeconds, fraction: 1 - computeSeconds / wall };
      // Rates are tokens / total time: lm-infinite hands out several tokens per native call, so its
      // per-token steps are bursty and their median is not a decode speed.
      phases.push({ kind: 'decode', label: phase.label, position: start, tokens: phase.tokens, medianStepSeconds: med, tokensPerSecond: steps.length / wall, overhead, ...memory() });
    } else if (phase.kind === 'reset') {
      await engine.reset();
      position = 0;
      stream.produced = 0;
    } else {
      throw new Error(`unknown phase ${phase.kind}`);
    }
  }
  return phases;
}
