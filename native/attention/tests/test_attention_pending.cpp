// The queries' own keys and values given apart from the slots (Problem::kNew/vNew, how the engine
// attends a batch before writing it into its ring): for the randomized cases, moving each query's
// row out of its slot into kNew/vNew (or adding it there when no slot held it) must give the same
// result as the same keys all in slots: bit for bit against the kernel on the all-slots problem,
// within the usual tolerance against the dense reference. On every kernel path, with run() and
// runPartition(), with dense and strided new rows; the randomized cases, then the engine's decode
// step at head dim 8 (where the all-slots form takes dense tiles that the split form cannot).
#include <chrono>

#include "random_case.h"
#include "test_util.h"

using namespace lmi::attn;
using namespace lmi::attn::test;

namespace {

// One case in two forms over the same keys: `whole` has every key in a slot; the split form has
// the queries' rows in kNew/vNew and the slots they came from emptied.
struct SplitCase {
  Case whole;
  std::vector<int64_t> splitSlotPos;  // whole.slotPos[0, nSlot) with the moved slots set to -1
  int64_t nSlot = 0;                  // slots of the split form
  int64_t newStride = 0;
  int moved = 0;  // query rows taken out of a slot (the others are new keys)
  std::vector<float> kNewF, vNewF;
  std::vector<uint16_t> kNewH, vNewH;
  std::vector<float> poisonedKf, poisonedVf;  // see split()
  std::vector<uint16_t> poisonedKh, poisonedVh;

  SplitCase(Case c, Rng& rng, int64_t strideExtra) : whole(std::move(c)) {
    Case& w = whole;
    nSlot = w.nSlot();
    const int64_t row = w.row();
    const int64_t ks = w.kStride ? w.kStride : row, vs = w.vStride ? w.vStride : row;
    newStride = strideExtra ? row + strideExtra : 0;
    const int64_t ns = newStride ? newStride : row;
    splitSlotPos = w.slotPos;
    kNewF.assign(static_cast<size_t>(w.nQ * ns), 0.0f);
    vNewF.assign(static_cast<size_t>(w.nQ * ns), 0.0f);
    for (int i = 0; i < w.nQ; i++) {
      int64_t from = -1;
      for (int64_t s = 0; s < nSlot && from < 0; s++)
        if (splitSlotPos[s] == w.qPos[i]) from = s;
      for (int64_t e = 0; e < row; e++) {
        kNewF[i * ns + e] = from >= 0 ? w.kf[from * ks + e] : rng.sym();
        vNewF[i * ns + e] = from >= 0 ? w.vf[from * vs + e] : rng.sym();
      }
      if (from >= 0) {
        splitSlotPos[from] = -1;
        moved++;
      }
    }
    if (w.kvType == KVType::F16) {
      for (auto& x : kNewF) x = ref::halfToFloat(ref::floatToHalf(x));
      for (auto& x : vNewF) x = ref::halfToFloat(ref::floatToHalf(x));
      for (float x : kNewF) kNewH.push_back(ref::floatToHalf(x));
      for (float x : vNewF) vNewH.push_back(ref::floatToHalf(x));
    }
    // The whole form: the split slots, then the new rows as slots nSlot + i at qPos[i].
    w.slotPos = splitSlotPos;
    w.slotPos.insert(w.slotPos.end(), w.qPos.begin(), w.qPos.end());
    for (int i = 0; i < w.nQ; i++) {
      w.kf.resize(static_cast<size_t>((nSlot + i + 1) * ks), 0.0f);
      w.vf.resize(static_cast<size_t>((nSlot + i + 1) * vs), 0.0f);
      for (int64_t e = 0; e < row; e++) {
        w.kf[(nSlot + i) * ks + e] = kNewF[i * ns + e];
        w.vf[(nSlot + i) * vs + e] = vNewF[i * ns + e];
      }
    }
    if (w.kvType == KVType::F16) {
      w.kh.clear();
      w.vh.clear();
      for (float x : w.kf) w.kh.push_back(ref::floatToHalf(x));
      for (float x : w.vf) w.vh.push_back(ref::floatToHalf(x));
    }
  }

  Problem split() {
    Problem p = whole.problem();
    // The split form's K/V: the whole form's, with the rows of the slots it does not have (the
    // moved and added query rows) poisoned, so that reading them instead of kNew/vNew shows.
    if (poisonedKf.empty()) {
      poisonedKf = whole.kf, poisonedVf = whole.vf, poisonedKh = whole.kh, poisonedVh = whole.vh;
      for (bool value : {false, true}) {
        const auto [ss, hs] = whole.strides(value);
        for (int64_t slot = nSlot; slot < whole.nSlot(); slot++)
          for (int g = 0; g < whole.nHeadKV; g++)
            for (int d = 0; d < whole.headDim; d++) {
              const size_t i = static_cast<size_t>(slot * ss + g * hs + d);
              (value ? poisonedVf : poisonedKf)[i] = NAN;
              if (whole.kvType == KVType::F16) (value ? poisonedVh : poisonedKh)[i] = 0x7e00;
            }
      }
    }
    const bool f16Cache = whole.kvType == KVType::F16;
    p.k = f16Cache ? static_cast<const void*>(poisonedKh.data()) : poisonedKf.data();
    p.v = f16Cache ? static_cast<const void*>(poisonedVh.data()) : poisonedVf.data();
    p.nSlot = nSlot;
    p.slotPos = splitSlotPos.data();
    const bool f16 = whole.kvType == KVType::F16;
    p.kNew = f16 ? static_cast<const void*>(kNewH.data()) : kNewF.data();
    p.vNew = f16 ? static_cast<const void*>(vNewH.data()) : vNewF.data();
    p.kNewStride = newStride;
    p.vNewStride = newStride;
    return p;
  }
};

// The engine's decode step at head dim 8, the shape the dense decode tiles take: a head-major
// ring of W slots after the pinned ones, one query whose own row comes in kNew. W + 1 keys in the
// local window, so that W % 64 == 0 leaves the query's row alone in the last tile. Three slot
// layouts, for the two ways the kernel orders keys: the ring (a few runs of consecutive slots and
// positions, ordered without a sort), the ring's slots shuffled in blocks of 8 (more runs than
// that takes), and a ring where a few slots repeat other slots' positions (overlapping runs);
// the last two are sorted.
Case engineDecodeCase(Rng& rng, int idx) {
  Case c;
  const int G = static_cast<int>(rng.range(1, 5));
  c.nHeadKV = static_cast<int>(rng.range(1, 4));
  c.nHead = G * c.nHeadKV;
  c.headDim = 8;
  c.kvType = rng.coin() ? KVType::F16 : KVType::F32;
  c.pe.kind = rng.coin(0.8) ? Encoding::Rope : Encoding::None;
  c.pe.pairing = RopePairing::Normal;
  c.pe.thetaBase = 10000.0;
  c.scale = 1.0f / std::sqrt(8.0f);
  const int64_t W = rng.pick(std::vector<int64_t>{63, 64, 65, 128, 200, 256});
  const int64_t pinned = rng.pick(std::vector<int64_t>{0, 4, 10});
  const int64_t base = rng.coin() ? 0 : (int64_t(1) << 40);
  const int64_t n = pinned + W + rng.range(0, 300);  // tokens before the query
  c.mask.lambda = true;
  c.mask.origin = base;
  c.mask.nGlobal = pinned;
  c.mask.nLocal = W + 1;
  c.mask.limitDistance = W + 1;
  for (int64_t t = 0; t < pinned; t++) c.slotPos.push_back(base + t);
  std::vector<int64_t> ring(W, -1);
  for (int64_t t = n - W; t < n; t++) ring[(t - pinned) % W] = base + t;
  const int layout = idx % 3;
  if (layout == 1) {
    std::vector<std::vector<int64_t>> blocks;
    for (size_t b = 0; b < ring.size(); b += 8)
      blocks.emplace_back(ring.begin() + b, ring.begin() + std::min(ring.size(), b + 8));
    rng.shuffle(blocks);
    ring.clear();
    for (const auto& b : blocks) ring.insert(ring.end(), b.begin(), b.end());
  } else if (layout == 2) {
    for (int i = 0; i < 3; i++) ring[rng.range(0, W - 1)] = ring[rng.range(0, W - 1)];
  }
  c.slotPos.insert(c.slotPos.end(), ring.begin(), ring.end());
  c.qPos.push_back(base + n);
  c.nQ = 1;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "engine decode case %d: G=%d nHeadKV=%d kv=%s enc=%d W=%lld pinned=%lld n=%lld layout=%d", idx, G,
                c.nHeadKV, c.kvType == KVType::F16 ? "f16" : "f32", static_cast<int>(c.pe.kind), (long long)W,
                (long long)pinned, (long long)n, layout);
  c.what = buf;
  c.fill(rng);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 160;
  const auto t0 = std::chrono::steady_clock::now();
  Rng rng(20231128);
  const std::vector<KernelPath> paths = kernelPaths();
  int moved = 0, added = 0;
  const int nEngine = nCases / 4;
  for (int idx = 0; idx < nCases + nEngine; idx++) {
    const bool engine = idx >= nCases;
    SplitCase sc(engine ? engineDecodeCase(rng, idx) : randomCase(rng, idx), rng, idx % 3 == 0 ? 5 : 0);
    Case& w = sc.whole;
    if (engine) {
      w.toHeadMajor(0, 0);
      w.what += " head-major";
    } else if (idx % 2 == 1) {  // an engine's head-major cache (the split form's fewer slots fit it too)
      w.toHeadMajor(idx % 4 == 1 ? 0 : 3, 0);
      w.what += " head-major";
    }
    moved += sc.moved;
    const ref::Result want = ref::run(w.problem());
    const double tol = w.kvType == KVType::F16 ? 5e-4 : 2e-4;
    for (const KernelPath& kp : paths) {
      const char* pname = kp.name;
      for (int partitions : {0, 3}) {
        const std::vector<float> all = runKernel(w, w.problem(), kp.options, partitions);
        const std::vector<float> got = runKernel(w, sc.split(), kp.options, partitions);
        LMI_CHECK(bitEqual(got, all), "%s [%s, partitions %d] kNew/vNew differ from the same keys in slots",
                  w.what.c_str(), pname, partitions);
        const double diff = maxDiff(got, want.out, w.headDim, want.ambiguous);
        LMI_CHECK(diff <= tol, "%s [%s, partitions %d] kNew/vNew: max|diff| = %g against the reference",
                  w.what.c_str(), pname, partitions, diff);
      }
    }
    added += w.nQ;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d cases in %.1f s; %d query rows, %d of them moved out of a slot\n", nCases, secs, added, moved);
  return finish("test_attention_pending");
}
