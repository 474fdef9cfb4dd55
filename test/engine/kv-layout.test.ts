/**
 * The CPU cache's two layouts (native/engine/src/kv_cache.h): head-major (the default, each KV
 * head's keys one sequential stream) and slot-major (what a GPU model keeps; here a testing knob).
 * The kernel reads the same values in the same order from either, so every logit must be
 * bit-identical: chunked prefill and decode through a wrapping Λ ring, f16 and f32, the archive
 * copies of top-k attention, vanilla attention, the segmented pass, and evalMany (whose op writes
 * each sequence's new rows into its cache itself). Correctness of the default layout against
 * independent references is what the other engine and session tests check.
 */
import { loadAddon } from '../../lib/native/addon';
import type { NativeAddon, NativeContextOptions, NativeModel } from '../../lib/native/types';
import { fixturePath, STORIES } from '../gguf/helpers';
import { writeSyntheticModel } from '../helpers/synthetic-models';
import { randomTokens } from '../reference-forward/compare';
import { SlotTable, specFromGguf, type Mask } from './spec-from-gguf';
import { expectIdentical, stream, type StreamOptions } from './streams';

async function expectSameLayouts(label: string, model: NativeModel, o: StreamOptions, extra: Partial<NativeContextOptions> = {}) {
  const headMajor = await stream(model, o, extra);
  const slotMajor = await stream(model, o, { ...extra, slotMajorKV: true });
  expectIdentical(label, headMajor, slotMajor);
}

describe('head-major K/V == slot-major K/V, bit for bit', () => {
  let addon: NativeAddon;
  beforeAll(async () => {
    addon = await loadAddon();
  });

  describe('stories260K (4 KV heads of 8 dims)', () => {
    let model: NativeModel;
    beforeAll(async () => {
      model = await addon.loadModel(await specFromGguf(fixturePath(STORIES), 2));
    });
    afterAll(() => model?.dispose());

    const ring = { nGlobal: 4, nLocal: 32, seed: 5 };
    test('prefill chunks and decode through a wrapping ring, f16 and f32', async () => {
      for (const kvType of ['f16', 'f32'] as const)
        await expectSameLayouts(`stories ${kvType}`, model, {
          ...ring, total: 230, chunks: [40, 1, 9, 1, 1, 27], kvType, modes: ['all', 'last'],
        });
    });
    test('top-k middle attention: archive copies move every KV head', async () => {
      await expectSameLayouts('stories top-k', model, {
        ...ring, total: 150, chunks: [8, 1, 8], kvType: 'f16', modes: ['all'], topK: { k: 4, insertAt: 16, fromLayer: 1 },
      });
    });
    test('vanilla attention', async () => {
      await expectSameLayouts('stories vanilla', model, {
        ...ring, total: 90, chunks: [33, 1], kvType: 'f16', modes: ['all'], vanilla: true,
      });
    });
    test('segmented pass (the cache written by the next segment)', async () => {
      await expectSameLayouts('stories segmented', model, {
        ...ring, total: 120, chunks: [16, 1, 5], kvType: 'f32', modes: ['all'], topK: { k: 3, insertAt: 8, fromLayer: 2 },
      }, { segmented: true });
    });
    test('evalMany: the batched op writes each sequence into its own layout', async () => {
      const opts = { nSlot: 40, nArchive: 0, topKFromLayer: 0, kvType: 'f16' as const, maxBatch: 8, threads: 2 };
      const mask: Mask = { lambda: true, origin: 0, nGlobal: 4, nLocal: 24, limitDistance: 24 };
      const tokens = [randomTokens(96, 21), randomTokens(96, 22)];
      const run = async (slotMajorKV: boolean[]): Promise<Float32Array[]> => {
        const ctxs = slotMajorKV.map((s) => model.createContext({ ...opts, slotMajorKV: s }));
        const tables = ctxs.map(() => new SlotTable(40, 4));
        const out: Float32Array[] = [];
        for (let at = 0, i = 0; at < 96; i++) {
          const size = [8, 1, 3][i % 3];
          out.push(...(await model.evalMany!(ctxs.map((context, s) => ({
            context, batch: tables[s].batch(tokens[s].slice(at, at + size), mask, 'all'),
          })))));
          at += size;
        }
        ctxs.forEach((c) => c.dispose());
        return out;
      };
      const head = await run([false, false]);
      expectIdentical('evalMany slot-major', head, await run([true, true]));
      expectIdentical('evalMany mixed', head, await run([false, true]));
    });
  });

  test('llama, GQA with 64-dim heads (the fused decode tiles), Q8_0', async () => {
    const path = writeSyntheticModel('llama', {
      seed: 43, nEmbd: 256, nLayer: 2, nHead: 4, nHeadKV: 2, nFF: 256, nCtx: 512, weightType: 'Q8_0',
    });
    const model = await addon.loadModel(await specFromGguf(path, 2));
    try {
      await expectSameLayouts('llama64 ring', model, {
        nGlobal: 4, nLocal: 96, seed: 9, total: 300, chunks: [64, 1, 1, 1, 17], kvType: 'f16', modes: ['last', 'all'],
      });
    } finally {
      model.dispose();
    }
  });
});
