// Λ-masked, distance-limited attention (LM-Infinite) on the CPU.
// A plain C++ library: no N-API, no ggml. DESIGN.md §1 is the contract.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "lmi/lambda_rule.h"

namespace lmi::attn {

// Raised for any invalid problem description; the message names the argument.
class InvalidArgument : public std::invalid_argument {
 public:
  explicit InvalidArgument(const std::string& what) : std::invalid_argument(what) {}
};

// Element types of K/V rows. Q8_0 is ggml's 8-bit block: each run of 32 consecutive elements of a
// row is 34 bytes, an IEEE half scale d followed by 32 int8 q, and element i is d * q[i]. With
// Q8_0, headDim and every stride are multiples of 32 elements, so that rows start at blocks.
enum class KVType : int { F32 = 0, F16 = 1, Q8_0 = 8 };

constexpr int kQ8Block = 32;       // elements per Q8_0 block
constexpr int kQ8BlockBytes = 34;  // bytes per Q8_0 block

// Bytes taken by `elements` consecutive elements of type t (a multiple of 32 for Q8_0): the byte
// offset of element index `elements` from its row's or cache's start.
inline int64_t kvBytes(KVType t, int64_t elements) {
  switch (t) {
    case KVType::F32: return elements * 4;
    case KVType::F16: return elements * 2;
    default: return elements / kQ8Block * kQ8BlockBytes;  // Q8_0
  }
}

// How pairs of dimensions are rotated by RoPE.
//   Normal: (x[2k], x[2k+1])               (LLaMA GGUF, GPT-J; llama.cpp rope mode 0)
//   NeoX:   (x[k], x[k + rotaryDim/2])     (GPT-NeoX, Qwen2; llama.cpp rope mode 2)
enum class RopePairing : int { Normal = 0, NeoX = 2 };

enum class Encoding : int { None = 0, Rope = 1, Alibi = 2 };

struct PositionEncoding {
  Encoding kind = Encoding::Rope;
  // RoPE: pair k of the first rotaryDim dimensions turns by angle
  //   p * freqScale * thetaBase^(-2k / rotaryDim)
  // for a relative distance p. Angles are computed in double from relative distances only.
  double thetaBase = 10000.0;
  double freqScale = 1.0;
  int rotaryDim = 0;  // 0 means headDim; must be even and <= headDim
  RopePairing pairing = RopePairing::Normal;
  // ALiBi: one slope per query head (nHead values); bias is -slope * distance.
  const float* alibiSlopes = nullptr;
};

// Top-k middle attention (DESIGN.md §1, third row). Off when k == 0.
struct TopKMiddle {
  int k = 0;
  int64_t insertAt = 0;  // the distance the kept middle keys are attended at
};

struct Problem {
  int nQ = 0;        // queries in this call
  int nHead = 0;     // query heads
  int nHeadKV = 0;   // key/value heads; nHead % nHeadKV == 0, query head h uses KV head h / (nHead / nHeadKV)
  int headDim = 0;
  int64_t nSlot = 0; // key/value slots

  const float* q = nullptr;      // [nQ][nHead][headDim], un-rotated
  const void* k = nullptr;       // [nSlot][nHeadKV][headDim] (see the strides), un-rotated, kvType elements
  const void* v = nullptr;       // [nSlot][nHeadKV][headDim] (see the strides), kvType elements
  KVType kvType = KVType::F32;
  // Strides in elements between consecutive slots of k and v; 0 means nHeadKV * headDim.
  int64_t kSlotStride = 0;
  int64_t vSlotStride = 0;
  // Strides in elements between consecutive KV heads of k and v; 0 means headDim. Row (slot s,
  // KV head g) starts at s * slotStride + g * headStride, and no two rows may overlap. The default
  // is slot-major ([nSlot][nHeadKV][headDim]); a head-major cache ([nHeadKV][nSlot][headDim]) has
  // slotStride = headDim and headStride = nSlot * headDim, and lets a decode step read each KV
  // head's keys as one sequential stream. kNew/vNew rows are always [nHeadKV][headDim].
  int64_t kHeadStride = 0;
  int64_t vHeadStride = 0;

  const int64_t* slotPos = nullptr;  // [nSlot] absolute position of each slot; -1 marks an empty slot
  const int64_t* qPos = nullptr;     // [nQ] absolute position of each query, >= 0

  // The queries' own keys and values, not (yet) in any slot: row i is the token of query i, at
  // position qPos[i], kvType elements. Null (both): every key is in a slot. With them a host can
  // attend a batch before writing it into its cache, so the cache never holds more than the window:
  // keys of this batch's earlier queries come from here, older ones from the slots (which may still
  // hold keys the batch will overwrite). The keys are then the slots' and these nQ rows, as if the
  // rows were nQ more slots at positions qPos; positions must not repeat across the two.
  const void* kNew = nullptr;  // [nQ][nHeadKV][headDim]
  const void* vNew = nullptr;  // [nQ][nHeadKV][headDim]
  int64_t kNewStride = 0;      // elements between rows of kNew; 0 means nHeadKV * headDim
  int64_t vNewStride = 0;

  float scale = 0.0f;  // logit scale, usually 1/sqrt(headDim); must be finite and > 0
  PositionEncoding pe;
  // Keys stored already turned (RoPE only; 0: they are not). With keyTurnPeriod = M > 0 the K row
  // of a key at position j, in a slot or in kNew, holds R(j mod M) k rather than k: k turned as
  // RoPE turns a key at position j mod M (turnKeys() makes such rows). The attention is the same;
  // what changes is the work: keys whose positions share floor(j / M) need one turn between them
  // and the query, so a decode tile of them turns its few query rows once instead of every key.
  // The angle stays below M radians however long the stream, so nothing is lost to large angles.
  int64_t keyTurnPeriod = 0;
  LambdaMask mask;
  TopKMiddle topK;

  float* out = nullptr;  // [nQ][nHead][headDim]; a query with no kept key gets zeros
};

struct RunOptions {
  int threads = 1;              // worker threads for run(); ignored by runPartition
  bool forcePortable = false;   // skip the AVX2/FMA path even where the CPU has it (tests)
  bool noAvx512 = false;        // skip the AVX-512 decode tiles even where the CPU has them (tests)
};

// Throws InvalidArgument if the problem is malformed (null pointers, bad sizes,
// GQA ratio, rotaryDim, non-finite scale or options, positions < 0 other than -1 slots,
// nLocal <= 0, limitDistance < 0, nGlobal < 0, topK.k < 0 ...).
void validate(const Problem& p);

// validate() without reading the contents of qPos and slotPos (their pointers are still checked):
// for a host that passes the same position arrays, validated once, to several problems (a
// model's layers).
void validateExceptPositions(const Problem& p);

// Computes the whole problem with opts.threads threads (validates first).
void run(const Problem& p, const RunOptions& opts = {});

// The number of independent work items run() splits the problem into, and the
// partitioned entry point used by hosts with their own thread pool (ggml custom ops):
// calling runPartition(p, ith, nth, opts) for every ith in [0, nth) computes the whole
// problem. Does not validate; call validate() once first.
void runPartition(const Problem& p, int ith, int nth, const RunOptions& opts = {});

// Turns key rows for Problem::keyTurnPeriod: row i (nHeadKV heads of headDim f32 elements, each
// head's first rotaryDim dims as pe pairs them) becomes R(pos[i] mod period) row i, with the
// kernel's own RoPE coefficients (angles in double, cos/sin rounded to float). rowStride: elements
// between rows. Throws InvalidArgument for a period <= 0, an encoding other than RoPE, or a bad shape.
void turnKeys(float* rows, int64_t n, int64_t rowStride, int nHeadKV, int headDim, const int64_t* pos, int64_t period,
              const PositionEncoding& pe);

// Whether this process would take the AVX2/FMA path.
bool cpuHasAvx2Fma();

// Whether this process would also take the AVX-512 decode tiles (AVX-512 F/VL/DQ on top of AVX2).
bool cpuHasAvx512();

}  // namespace lmi::attn
