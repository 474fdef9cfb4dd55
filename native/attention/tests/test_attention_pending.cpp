// The queries' own keys and values given apart from the slots (Problem::kNew/vNew, how the engine
// attends a batch before writing it into its ring): for the randomized cases, moving each query's
// row out of its slot into kNew/vNew (or adding it there when no slot held it) must give the same
// result as the same keys all in slots: bit for bit against the kernel on the all-slots problem,
// within the usual tolerance against the dense reference. On every kernel path, with run() and
// runPartition(), with dense and strided new rows.
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

}  // namespace

int main(int argc, char** argv) {
  const int nCases = argc > 1 ? std::atoi(argv[1]) : 160;
  const auto t0 = std::chrono::steady_clock::now();
  Rng rng(20231128);
  const std::vector<KernelPath> paths = kernelPaths();
  int moved = 0, added = 0;
  for (int idx = 0; idx < nCases; idx++) {
    SplitCase sc(randomCase(rng, idx), rng, idx % 3 == 0 ? 5 : 0);
    Case& w = sc.whole;
    if (idx % 2 == 1) {  // an engine's head-major cache (the split form's fewer slots fit it too)
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
