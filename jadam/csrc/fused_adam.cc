// One-pass multi-tensor Adam / AdamW / AdaMax / NAdam step for XLA on CPU (`fused=True`).
//
// A single XLA FFI custom call updates a group of leaves of a parameter tree: for each leaf it
// reads the gradient g, the stored first moment m, the stored second moment v (AdaMax: the
// infinity norm u) and, when needed, the parameter p once; decodes the moments to float32,
// updates them, encodes them back and writes either the new parameter (apply mode) or the
// update (transform mode, written over the gradient's buffer) in the same pass. Outputs alias
// inputs (`input_output_aliases` on donated buffers), so the step runs in place. In moments-only
// mode (`moments_only`) it writes m and v alone and XLA computes the update: from the new
// float32 moments or from the old 16-bit ones (see MomentsBody).
//
// Moments are stored per leaf as one of (see jadam/_storage.py, _precision.py, _quantization.py):
//   float32;
//   bfloat16 / float16 with jadam's dithered stochastic rounding (dither = a pure function of
//     a per-leaf key, the element index and the step count);
//   block-wise 8-bit: uint8 rows of `block` codes followed by the block's float32 absmax.
// The arithmetic mirrors jadam's pure-JAX path operation by operation (no FMA contraction
// except where XLA contracts, exact division and square root), so both paths agree bit for bit.
// Scalars that depend on the step count (bias corrections, learning rate, dither count, float16
// denominator floor) arrive in a small f32 buffer computed by JAX as the pure path computes them.
//
// Operands: scalars f32[kNumScalars], then per kind n leaves (see FusedAdamImpl). With `packed`,
// m and v are not n leaves but one flat buffer each holding every leaf's moments in tree order
// (float32, bfloat16 or float16); this call's leaves start at element `offset` of them.
// `leaf_info` holds kInfoFields int64 per leaf: storage kind, block size, weight decay on/off,
// dither key of m, dither key of v.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
// (GCC 12 warns about the headers' own _mm512_undefined_*() once their intrinsics are inlined.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace ffi = xla::ffi;

#if defined(__GNUC__) || defined(__clang__)
#define JADAM_ALWAYS_INLINE __attribute__((always_inline))
#else
#define JADAM_ALWAYS_INLINE
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define JADAM_X86_DISPATCH 1
#else
#define JADAM_X86_DISPATCH 0
#endif

namespace {

// Indices into the scalar buffer. Keep in sync with `SCALARS` in jadam/_kernel.py.
enum Scalar : int {
  kB1 = 0,        // β1
  kOneMinusB1,    // 1 − β1
  kB2,            // β2
  kOneMinusB2,    // 1 − β2
  kInvBiasCorr1,  // 1 / (1 − β1^t)
  kInvBiasCorr2,  // 1 / (1 − β2^t)
  kEps,           // ε
  kEpsRoot,       // ε added inside the square root
  kNegLr,         // −α
  kWeightDecay,   // λ (AdamW, decoupled)
  kCountBits,     // the step count t, its uint32 bits (the dither's time index)
  kDivisor,       // 1 − β2^t (1 without bias correction): the 8-bit floor's divisor
  kHalfFloor,     // the denominator floor of a float16 v: √(tiny/(1 − β2^t)), AdaMax: tiny
  kInvBiasCorr1Next,  // 1 / (1 − β1^(t+1)) (NAdam's momentum term)
  kNumScalars,
};

// NAdam: Adam's moments, Dozat's Nesterov direction (jadam.nadam, scale_by_adam(nesterov=True)).
enum Algorithm : int32_t { kAdam = 0, kAdamax = 1, kNadam = 2 };
// Storage kinds; keep in sync with jadam/_kernel.py.
enum Kind : int { kF32 = 0, kBF16 = 1, kF16 = 2, kQ8 = 3 };
constexpr size_t kInfoFields = 5;  // kind, block, decay, key_m, key_v

struct Coefficients {
  float b1, omb1, b2, omb2, ibc1, ibc2, eps, eps_root, neg_lr, wd, divisor, half_floor;
  uint32_t count;
  float ibc1_next;
};

// One leaf. In transform mode `g` is the output buffer of the update: it holds the gradient
// on entry and each element is overwritten with its update after it was read.
struct Leaf;
using RangeFn = void (*)(const Leaf&, size_t, size_t, const Coefficients&);

struct Leaf {
  float* g;
  void* m;
  void* v;
  float* p;  // null when not needed
  size_t size;
  size_t block;  // 8-bit: values per absmax; else 1
  uint32_t key_m, key_v;
  RangeFn fn;
};

// ------------------------------------------------------------------------------------------
// Scalar helpers.

inline uint32_t FloatBits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
inline float BitsFloat(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// NaN-propagating maximum / minimum, like XLA's `max` / `min` on CPU.
inline float NanMax(float a, float b) { return (a > b || a != a) ? a : b; }
inline float NanMin(float a, float b) { return (a < b || a != a) ? a : b; }

// x·y + z, contracted into one rounding exactly where XLA's CPU backend contracts it.
template <bool kFma>
JADAM_ALWAYS_INLINE inline float MulAdd(float x, float y, float z) {
  if constexpr (kFma) {
    return __builtin_fmaf(x, y, z);
  } else {
    return x * y + z;
  }
}

// jadam/_precision.py dither_bits: key + index/ρ + count/φ in 32-bit fixed point.
// Split as (key + first·1/ρ + count/φ) + j·1/ρ for the element first + j, with j a 32-bit
// loop counter: a 64-bit index would make the vectorized loops narrow every index first.
constexpr uint32_t kIndexStep = 0xC13FA9A9u;
JADAM_ALWAYS_INLINE inline uint32_t DitherBase(uint32_t key, size_t first, uint32_t count) {
  return key + static_cast<uint32_t>(first) * kIndexStep + count * 0x9E3779B9u;
}
JADAM_ALWAYS_INLINE inline uint32_t Dither(uint32_t base, uint32_t j) {
  return base + j * kIndexStep;
}

// Through int32 (exact: below 2^24), as the pure path: x86 before AVX-512 has no vector
// conversion from unsigned integers.
JADAM_ALWAYS_INLINE inline float Uniform(uint32_t bits) {
  return static_cast<float>(static_cast<int32_t>(bits >> 8)) * 0x1p-24f;
}

// bfloat16: the top half of a float32.
JADAM_ALWAYS_INLINE inline float LoadBF16(uint16_t h) {
  return BitsFloat(static_cast<uint32_t>(h) << 16);
}
// round_stochastic to bfloat16: add 16 dither bits below the kept half, truncate.
JADAM_ALWAYS_INLINE inline uint16_t StoreBF16(float x, uint32_t bits) {
  const uint32_t raw = FloatBits(x);
  if (x != x) return static_cast<uint16_t>((raw >> 16) | 0x0040u);  // a quiet NaN
  return static_cast<uint16_t>((raw + (bits >> 16)) >> 16);
}

// float16 <-> float32 without denormal float intermediates (XLA's threads may flush them).
// Every case is computed and one selected, without branches, so that the loops vectorize.
JADAM_ALWAYS_INLINE inline float LoadF16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  const uint32_t special = sign | 0x7f800000u | ((em & 0x3ffu) << 13);  // inf, NaN
  const uint32_t normal = sign | ((em << 13) + 0x38000000u);
  // Subnormal: exact, and a normal float32; the sign by its bit (−0 for 0x8000).
  const uint32_t subnormal =
      sign | FloatBits(static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f);
  return BitsFloat(em >= 0x7c00u ? special : (em >= 0x0400u ? normal : subnormal));
}

// Round to nearest even, as XLA's float32 -> float16 conversion.
JADAM_ALWAYS_INLINE inline uint16_t RoundF16(float x) {
  const uint32_t raw = FloatBits(x);
  const uint32_t sign = (raw >> 16) & 0x8000u;
  const uint32_t ax = raw & 0x7fffffffu;
  const uint32_t nan = 0x7e00u | ((ax >> 13) & 0x3ffu);
  // Below float16's smallest normal: multiples of 2^−24, rounded to nearest even by adding
  // 2^23 (the integer is then the low bits of the sum; meaningless, and unused, above).
  const uint32_t subnormal = FloatBits(BitsFloat(ax) * 0x1p24f + 0x1p23f) - 0x4b000000u;
  const uint32_t normal = (ax + 0xfffu + ((ax >> 13) & 1u) - 0x38000000u) >> 13;
  const uint32_t magnitude =
      ax > 0x7f800000u ? nan
                       : (ax >= 0x477ff000u ? 0x7c00u : (ax < 0x38800000u ? subnormal : normal));
  return static_cast<uint16_t>(sign | magnitude);
}

// The next float16 after h toward +inf (up) or −inf, as XLA's NextAfter.
JADAM_ALWAYS_INLINE inline uint16_t NextF16(uint16_t h, bool up) {
  const uint32_t bits = h;
  const uint32_t magnitude = bits & 0x7fffu;
  const bool positive = (bits & 0x8000u) == 0;
  const uint32_t step = positive == up ? bits + 1 : bits - 1;
  const uint32_t from_zero = up ? 0x0001u : 0x8001u;
  return static_cast<uint16_t>(magnitude > 0x7c00u ? bits : (magnitude == 0 ? from_zero : step));
}

// round_stochastic to float16 (jadam/_precision.py): saturate, then pick the neighbour away
// from the nearest value with probability |error| / gap.
JADAM_ALWAYS_INLINE inline uint16_t StoreF16(float x, uint32_t bits) {
  x = std::min(std::max(x, -65504.0f), 65504.0f);  // NaN: handled below (nearest is NaN)
  const uint16_t nearest = RoundF16(x);
  const float nearest_f = LoadF16(nearest);
  const float error = x - nearest_f;
  const uint16_t other = NextF16(nearest, error > 0.0f);
  const float gap = std::fabs(LoadF16(other) - nearest_f);
  const float probability = std::fabs(error) / (gap > 0.0f ? gap : 1.0f);
  return Uniform(bits) < probability ? other : nearest;
}

template <int K>
struct Storage;
template <>
struct Storage<kF32> {
  using T = float;
  static float Load(float x) { return x; }
  static float Store(float x, uint32_t) { return x; }
};
template <>
struct Storage<kBF16> {
  using T = uint16_t;
  static float Load(uint16_t x) { return LoadBF16(x); }
  static uint16_t Store(float x, uint32_t bits) { return StoreBF16(x, bits); }
};
template <>
struct Storage<kF16> {
  using T = uint16_t;
  static float Load(uint16_t x) { return LoadF16(x); }
  static uint16_t Store(float x, uint32_t bits) { return StoreF16(x, bits); }
};

// ------------------------------------------------------------------------------------------
// The arithmetic of one element, shared by every storage.

struct NewMoments {
  float m, v;
};

template <int32_t kAlgo, bool kFma>
JADAM_ALWAYS_INLINE inline NewMoments UpdateMoments(float g, float m, float v,
                                                    const Coefficients& c) {
  const float mi = MulAdd<kFma>(m, c.b1, g * c.omb1);
  if constexpr (kAlgo != kAdamax) {
    return {mi, MulAdd<kFma>(v, c.b2, (g * g) * c.omb2)};
  } else {
    return {mi, NanMax(v * c.b2, std::fabs(g))};
  }
}

// The same from decoded 8-bit moments: there XLA contracts the other product of each EMA,
// fma(g, 1 − β1, β1·m) instead of fma(m, β1, (1 − β1)·g).
template <int32_t kAlgo, bool kFma>
JADAM_ALWAYS_INLINE inline NewMoments UpdateDecodedMoments(float g, float m, float v,
                                                           const Coefficients& c) {
  const float mi = MulAdd<kFma>(g, c.omb1, m * c.b1);
  if constexpr (kAlgo != kAdamax) {
    return {mi, MulAdd<kFma>(g * g, c.omb2, v * c.b2)};
  } else {
    return {mi, NanMax(v * c.b2, std::fabs(g))};
  }
}

// m̂ / (max(s, floor) + ε), s = √(v̂ + ε_root) (Adam) or u (AdaMax); 0/0 → 0 when kSafe.
// NAdam's m̂ is β1·m/(1 − β1^(t+1)) + (1 − β1)·g/(1 − β1^t), as jadam._family computes it;
// XLA contracts the first product with float32 moments, the second with 16-bit or 8-bit ones.
template <int32_t kAlgo, bool kSafe, bool kFloor, bool kFma, bool kF32Moments>
JADAM_ALWAYS_INLINE inline float Direction(float m, float v, float g, float floor,
                                           const Coefficients& c) {
  float s;
  if constexpr (kAlgo != kAdamax) {
    s = std::sqrt(MulAdd<kFma>(v, c.ibc2, c.eps_root));
  } else {
    s = v;
  }
  if constexpr (kFloor) s = NanMax(s, floor);
  const float denom = s + c.eps;
  float m_hat;
  if constexpr (kAlgo == kNadam) {
    if constexpr (kF32Moments) {
      m_hat = MulAdd<kFma>(c.b1, m * c.ibc1_next, c.omb1 * (g * c.ibc1));
    } else {
      m_hat = MulAdd<kFma>(c.omb1, g * c.ibc1, c.b1 * (m * c.ibc1_next));
    }
  } else {
    m_hat = m * c.ibc1;
  }
  const float q = m_hat / denom;
  if constexpr (kSafe) return (denom != 0.0f) ? q : 0.0f;
  return q;
}

template <bool kApply, bool kDecay, bool kFma>
JADAM_ALWAYS_INLINE inline void WriteStep(float d, float* __restrict g, float* __restrict p, size_t i,
                                          const Coefficients& c) {
  if constexpr (kDecay) d = MulAdd<kFma>(p[i], c.wd, d);
  if constexpr (kApply) {
    p[i] = MulAdd<kFma>(d, c.neg_lr, p[i]);
  } else {
    g[i] = d * c.neg_lr;
  }
}

// Elements [begin, end) of a leaf with float32 or 16-bit moments.
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, bool kFma, int kKind>
JADAM_ALWAYS_INLINE inline void ElementBody(const Leaf& leaf, size_t begin, size_t end,
                                            const Coefficients& c) {
  using S = Storage<kKind>;
  using T = typename S::T;
  // g and p are distinct buffers (g holds the update in transform mode).
  // Pieces of at most 2^31 elements, so that the loop counter is 32-bit.
  for (size_t first = begin; first < end; first += size_t{1} << 31) {
    const uint32_t n = static_cast<uint32_t>(std::min(end - first, size_t{1} << 31));
    float* __restrict g = leaf.g + first;
    T* __restrict m = static_cast<T*>(leaf.m) + first;
    T* __restrict v = static_cast<T*>(leaf.v) + first;
    float* __restrict p = leaf.p == nullptr ? nullptr : leaf.p + first;
    const uint32_t base_m = DitherBase(leaf.key_m, first, c.count);
    const uint32_t base_v = DitherBase(leaf.key_v, first, c.count);
    for (uint32_t j = 0; j < n; ++j) {
      const NewMoments x = UpdateMoments<kAlgo, kFma>(g[j], S::Load(m[j]), S::Load(v[j]), c);
      m[j] = S::Store(x.m, Dither(base_m, j));
      v[j] = S::Store(x.v, Dither(base_v, j));
      const float d = Direction<kAlgo, kSafe, kKind == kF16, kFma, kKind == kF32>(
          x.m, x.v, g[j], c.half_floor, c);
      WriteStep<kApply, kDecay, kFma>(d, g, p, j, c);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Block-wise 8-bit moments (jadam/_quantization.py).

constexpr int kExponentBits = 4;
template <bool kSigned>
constexpr int MantissaBits() {
  return kSigned ? 3 : 4;
}
template <bool kSigned>
constexpr float LargestCode() {
  return 1.0f - (kSigned ? 0x1p-4f : 0x1p-5f);  // 1 − 2^−(M+1)
}

// The value of a code relative to the absmax times largest code (the pure path's
// _decode_magnitude, with the sign bit of a signed code): both ranges computed and one
// selected, without a table, so that the decoding loop vectorizes.
template <bool kSigned>
JADAM_ALWAYS_INLINE inline float DecodeCode(uint32_t code) {
  constexpr int kM = MantissaBits<kSigned>();
  const uint32_t magnitude_code = kSigned ? code & 127u : code;
  const uint32_t exponent = magnitude_code >> kM;
  const uint32_t mantissa = magnitude_code & ((1u << kM) - 1);
  const uint32_t normal = ((exponent + 127 - 16) << 23) | (mantissa << (23 - kM));
  // Steps of 2^(1 − M − 16): exact, and normal float32 values.
  const uint32_t subnormal = FloatBits(static_cast<float>(static_cast<int32_t>(mantissa)) *
                                       BitsFloat(static_cast<uint32_t>(127 + 1 - kM - 16) << 23));
  const uint32_t magnitude = exponent == 0 ? subnormal : normal;
  if constexpr (kSigned) return BitsFloat(magnitude | ((code & 128u) << 24));  // 128: −0
  return BitsFloat(magnitude);
}

// The smallest non-zero unsigned code relative to the absmax (float64, then float32, as the
// pure path's `float(code_values(signed=False)[1]) * absmax`).
const float kSmallestCode =
    static_cast<float>(std::ldexp(1.0, 1 - 4 - 16) / static_cast<double>(LargestCode<false>()));

template <bool kSigned, bool kStochastic>
JADAM_ALWAYS_INLINE inline uint8_t Encode(float x, float factor, uint32_t bits) {
  constexpr int kM = MantissaBits<kSigned>();
  constexpr int kDropped = 23 - kM;
  const float y = std::fabs(x) * factor;
  uint32_t noise;
  float uniform;
  if constexpr (kStochastic) {
    noise = bits & ((1u << kDropped) - 1);
    uniform = Uniform(bits);
  } else {
    noise = 1u << (kDropped - 1);
    uniform = 0.5f;
  }
  // Both ranges computed and one selected (no branch: the loop vectorizes).
  // Subnormal range of the code: steps of 2^(1 − M − 16).
  const float steps = std::floor(y * static_cast<float>(1 << (kM - 1 + 16)) + uniform);
  const int32_t subnormal = static_cast<int32_t>(std::min(steps, 1024.0f));
  // Normal range: (exponent − 127 + 16)·2^M + mantissa of the rounded bits, which is their
  // top 9 + M bits minus (127 − 16)·2^M (y ≥ 0: no sign bit).
  const uint32_t raw = FloatBits(y) + noise;
  const int32_t normal = static_cast<int32_t>(raw >> kDropped) - ((127 - 16) << kM);
  int32_t code = y < 0x1p-15f ? subnormal : normal;
  code = std::min(std::max(code, 0), (1 << (kExponentBits + kM)) - 1);
  if constexpr (kSigned) code |= x < 0.0f ? 128 : 0;
  return static_cast<uint8_t>(code);
}

// The extremes of a block in a fixed order (NaN if any value is NaN): 8 lanes, element j in
// lane j mod 8, the tail in lane 0, then lanes 0..7 combined. The order only decides which of
// +0 and −0 a zero extreme is; see BlockScale.
JADAM_ALWAYS_INLINE inline void BlockRangeInOrder(const float* __restrict x, size_t count,
                                                  bool padded, float* hi_out, float* lo_out) {
  float hi[8], lo[8];
  int32_t nan[8];
  for (int k = 0; k < 8; ++k) {
    hi[k] = padded ? 0.0f : -INFINITY;
    lo[k] = padded ? 0.0f : INFINITY;
    nan[k] = 0;
  }
  size_t j = 0;
  for (; j + 8 <= count; j += 8) {
    for (int k = 0; k < 8; ++k) {
      const float v = x[j + k];
      hi[k] = hi[k] > v ? hi[k] : v;
      lo[k] = lo[k] < v ? lo[k] : v;
      nan[k] |= v != v;
    }
  }
  for (; j < count; ++j) {
    hi[0] = hi[0] > x[j] ? hi[0] : x[j];
    lo[0] = lo[0] < x[j] ? lo[0] : x[j];
    nan[0] |= x[j] != x[j];
  }
  float h = hi[0], l = lo[0];
  int32_t any_nan = nan[0];
  for (int k = 1; k < 8; ++k) {
    h = h > hi[k] ? h : hi[k];
    l = l < lo[k] ? l : lo[k];
    any_nan |= nan[k];
  }
  *hi_out = any_nan ? NAN : h;
  *lo_out = any_nan ? NAN : l;
}

// The stored absmax of a block as the pure path's reductions give it: max(max x, −min x)
// (signed) or max x, NaN if any value is NaN; zero padding of a partial block takes part.
// The value of an extreme does not depend on the order of the comparisons, only the sign of a
// zero does, and a zero absmax means an all-zero block: those (rare) blocks are redone in the
// fixed order, all others take 32 independent lanes (GCC vectorizes neither: it sees
// reductions it may not reorder; hence vector-extension values, two SSE or one AVX register
// each).
// kWide: 8-float vectors (AVX builds); else 4-float ones (SSE2 splits 8-float ones badly).
template <bool kSigned, bool kWide>
JADAM_ALWAYS_INLINE inline float BlockScale(const float* __restrict x, size_t count, bool padded) {
  float h, l;
#if defined(__GNUC__) || defined(__clang__)
  constexpr int kWidth = kWide ? 8 : 4;
  typedef float Lanes __attribute__((vector_size(4 * kWidth)));
  typedef int32_t LaneMask __attribute__((vector_size(4 * kWidth)));
  constexpr int kAccumulators = 32 / kWidth;
  Lanes hi[kAccumulators], lo[kAccumulators];
  LaneMask nan[kAccumulators];
  for (int a = 0; a < kAccumulators; ++a) {
    hi[a] = Lanes{} + (padded ? 0.0f : -INFINITY);
    lo[a] = Lanes{} + (padded ? 0.0f : INFINITY);
    nan[a] = LaneMask{};
  }
  size_t j = 0;
  for (; j + kWidth * kAccumulators <= count; j += kWidth * kAccumulators) {
    for (int a = 0; a < kAccumulators; ++a) {
      Lanes v;
      std::memcpy(&v, x + j + kWidth * a, sizeof(v));
      const LaneMask keep_hi = hi[a] > v;
      hi[a] = (Lanes)((keep_hi & (LaneMask)hi[a]) | (~keep_hi & (LaneMask)v));
      if constexpr (kSigned) {
        const LaneMask keep_lo = lo[a] < v;
        lo[a] = (Lanes)((keep_lo & (LaneMask)lo[a]) | (~keep_lo & (LaneMask)v));
      }
      nan[a] |= v != v;
    }
  }
  for (int step = 1; step < kAccumulators; step *= 2) {  // pairwise, in vectors
    for (int a = 0; a + step < kAccumulators; a += 2 * step) {
      const LaneMask keep_hi = hi[a] > hi[a + step];
      hi[a] = (Lanes)((keep_hi & (LaneMask)hi[a]) | (~keep_hi & (LaneMask)hi[a + step]));
      const LaneMask keep_lo = lo[a] < lo[a + step];
      lo[a] = (Lanes)((keep_lo & (LaneMask)lo[a]) | (~keep_lo & (LaneMask)lo[a + step]));
      nan[a] |= nan[a + step];
    }
  }
  float hi_lanes[kWidth], lo_lanes[kWidth];
  int32_t nan_lanes[kWidth];
  std::memcpy(hi_lanes, &hi[0], sizeof(hi_lanes));
  std::memcpy(lo_lanes, &lo[0], sizeof(lo_lanes));
  std::memcpy(nan_lanes, &nan[0], sizeof(nan_lanes));
  h = hi_lanes[0];
  l = lo_lanes[0];
  int32_t any_nan = nan_lanes[0];
  for (int k = 1; k < kWidth; ++k) {
    h = h > hi_lanes[k] ? h : hi_lanes[k];
    l = l < lo_lanes[k] ? l : lo_lanes[k];
    any_nan |= nan_lanes[k];
  }
  for (; j < count; ++j) {
    h = h > x[j] ? h : x[j];
    l = l < x[j] ? l : x[j];
    any_nan |= x[j] != x[j];
  }
  if (any_nan) return NAN;
  const float scale = kSigned ? NanMax(h, -l) : h;
  if (scale != 0.0f) return scale;
#endif
  BlockRangeInOrder(x, count, padded, &h, &l);
  return kSigned ? NanMax(h, -l) : h;
}

inline float RowScale(const uint8_t* row, size_t block) {
  float scale;
  std::memcpy(&scale, row + block, 4);
  return scale;
}

// The denominator floor of a block of 8-bit v with absmax `v_scale`: √(resolution / d), AdaMax:
// the resolution (jadam/_storage.py floor_denominator).
template <int32_t kAlgo>
inline float BlockFloor(float v_scale, const Coefficients& c) {
  const float resolution = kSmallestCode * v_scale;
  return kAlgo != kAdamax ? std::sqrt(resolution / c.divisor) : resolution;
}

// An 8-bit leaf's rows of codes and a per-thread scratch for one block's new moments (before
// they are encoded), for BlockBody and BlockBodyAvx512.
struct BlockRows {
  uint8_t* m;
  uint8_t* v;
  float* new_m;
  float* new_v;
};

inline BlockRows BlockRowsOf(const Leaf& leaf) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < 2 * leaf.block) scratch.resize(2 * leaf.block);
  return {static_cast<uint8_t*>(leaf.m), static_cast<uint8_t*>(leaf.v), scratch.data(),
          scratch.data() + leaf.block};
}

// Blocks [begin / block, ceil(end / block)) of an 8-bit leaf: decode, update and find the
// absmax of the new moments of a block, then encode them and write its steps.
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, bool kFma, bool kStochastic>
JADAM_ALWAYS_INLINE inline void BlockBody(const Leaf& leaf, size_t begin, size_t end,
                                          const Coefficients& c) {
  const BlockRows rows = BlockRowsOf(leaf);
  const size_t block = leaf.block, row = block + 4;
  float* __restrict new_m = rows.new_m;
  float* __restrict new_v = rows.new_v;
  float* __restrict g = leaf.g;
  float* __restrict p = leaf.p;
  for (size_t b = begin / block; b * block < end; ++b) {
    uint8_t* __restrict m_row = rows.m + b * row;
    uint8_t* __restrict v_row = rows.v + b * row;
    const size_t base = b * block;
    // 32-bit counters (blocks are far smaller): see Dither.
    const uint32_t count = static_cast<uint32_t>(std::min(block, leaf.size - base));
    // XLA turns the pure path's absmax / largest_code into absmax · (1 / largest_code).
    const float m_factor = RowScale(m_row, block) * (1.0f / LargestCode<true>());
    const float v_factor = RowScale(v_row, block) * (1.0f / LargestCode<false>());
    const float* gb = g + base;  // not restrict: gb_out below writes the same updates buffer
    for (uint32_t j = 0; j < count; ++j) {
      const float m_old = DecodeCode<true>(m_row[j]) * m_factor;
      const float v_old = DecodeCode<false>(v_row[j]) * v_factor;
      const NewMoments x = UpdateDecodedMoments<kAlgo, kFma>(gb[j], m_old, v_old, c);
      new_m[j] = x.m;
      new_v[j] = x.v;
    }
    // kFma is set exactly in the AVX2 / AVX-512 variants: there 8-float vectors.
    const float m_scale = BlockScale<true, kFma>(new_m, count, count < block);
    const float v_scale = BlockScale<false, kFma>(new_v, count, count < block);
    const float m_encode = LargestCode<true>() / (m_scale > 0.0f ? m_scale : 1.0f);
    const float v_encode = LargestCode<false>() / (v_scale > 0.0f ? v_scale : 1.0f);
    const float floor = BlockFloor<kAlgo>(v_scale, c);
    // Encoding and the step in one pass over the block (in L1): the integer work of the
    // encoding overlaps the divider's latency of the step.
    const uint32_t base_m = DitherBase(leaf.key_m, base, c.count);
    const uint32_t base_v = DitherBase(leaf.key_v, base, c.count);
    float* __restrict gb_out = g + base;
    float* __restrict pb = p == nullptr ? nullptr : p + base;
    for (uint32_t j = 0; j < count; ++j) {
      const float xm = new_m[j], xv = new_v[j];
      m_row[j] = Encode<true, kStochastic>(xm, m_encode, Dither(base_m, j));
      v_row[j] = Encode<false, kStochastic>(xv, v_encode, Dither(base_v, j));
      const float d = Direction<kAlgo, kSafe, true, kFma, false>(xm, xv, gb_out[j], floor, c);
      WriteStep<kApply, kDecay, kFma>(d, gb_out, pb, j, c);
    }
    std::memset(m_row + count, 0, block - count);  // padding encodes as code 0
    std::memset(v_row + count, 0, block - count);
    std::memcpy(m_row + block, &m_scale, 4);
    std::memcpy(v_row + block, &v_scale, 4);
  }
}

#if JADAM_X86_DISPATCH
// Block-wise 8-bit moments with AVX-512 (the hot path of `state_precision="8bit"` on x86):
// the same operations as BlockBody, so the same bits, in two passes over a block instead of
// five. Pass 1 decodes, updates and keeps each moment's absmax in vector accumulators
// (VRANGEPS's maximum of magnitudes for m, VMAXPS for v, and whether any lane was NaN); pass 2
// encodes both moments and writes the step, so the encoder's integer work overlaps the
// divider's latency of the step.
// Both passes run over whole 16-lane vectors, with masks for a block's tail.
#define JADAM_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))

// The lanes of the first `remaining` elements (all 16 if there are as many).
inline __mmask16 TailMask(size_t remaining) {
  return remaining >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << remaining) - 1);
}

JADAM_AVX512 inline __m512 NanMaxV(__m512 a, __m512 b) {  // NanMax, lane by lane
  const __mmask16 keep_a =
      _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) | _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
  return _mm512_mask_blend_ps(keep_a, b, a);
}

// Direction's m̂ (16-bit and 8-bit moments): m/(1 − β1^t), NAdam's β1·m/(1 − β1^(t+1)) +
// (1 − β1)·g/(1 − β1^t).
template <int32_t kAlgo>
JADAM_AVX512 inline __m512 MomentumTerm(__m512 m, __m512 g, const Coefficients& c) {
  const __m512 ibc1 = _mm512_set1_ps(c.ibc1);
  if constexpr (kAlgo == kNadam) {
    return _mm512_fmadd_ps(_mm512_set1_ps(c.omb1), _mm512_mul_ps(g, ibc1),
                           _mm512_mul_ps(_mm512_set1_ps(c.b1),
                                         _mm512_mul_ps(m, _mm512_set1_ps(c.ibc1_next))));
  } else {
    return _mm512_mul_ps(m, ibc1);
  }
}

// Direction and WriteStep of 16 values: the step from the new moments (s floored at `floor`;
// NanMax as one VMAXPS(floor, s) when floor > 0, see BlockBodyAvx512), written to p (apply
// mode) or over the gradient g_out (transform mode). p may be null unless needed.
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe>
JADAM_AVX512 JADAM_ALWAYS_INLINE inline void StepV(__m512 m, __m512 v, __m512 g, __m512 floor,
                                                   bool simple_floor, __mmask16 k, float* p,
                                                   float* g_out, const Coefficients& c) {
  __m512 s = v;
  if constexpr (kAlgo != kAdamax) {
    s = _mm512_sqrt_ps(_mm512_fmadd_ps(v, _mm512_set1_ps(c.ibc2), _mm512_set1_ps(c.eps_root)));
  }
  s = simple_floor ? _mm512_max_ps(floor, s) : NanMaxV(s, floor);
  const __m512 denom = _mm512_add_ps(s, _mm512_set1_ps(c.eps));
  const __m512 numerator = MomentumTerm<kAlgo>(m, g, c);
  __m512 d;
  if constexpr (kSafe) {
    d = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(denom, _mm512_setzero_ps(), _CMP_NEQ_UQ),
                            numerator, denom);
  } else {
    d = _mm512_div_ps(numerator, denom);
  }
  const __m512 neg_lr = _mm512_set1_ps(c.neg_lr);
  __m512 old_p = _mm512_setzero_ps();
  if constexpr (kDecay || kApply) old_p = _mm512_maskz_loadu_ps(k, p);
  if constexpr (kDecay) d = _mm512_fmadd_ps(old_p, _mm512_set1_ps(c.wd), d);
  if constexpr (kApply) {
    _mm512_mask_storeu_ps(p, k, _mm512_fmadd_ps(d, neg_lr, old_p));
  } else {
    _mm512_mask_storeu_ps(g_out, k, _mm512_mul_ps(d, neg_lr));
  }
}

// DecodeCode of 16 codes. x = (exponent + 127 − 16) << 23 | mantissa << (23 − M) is the
// value of a normal code; for a subnormal one (exponent 0) x = 2^−16 + mantissa·2^(−M−16),
// so the value mantissa·2^(1−M−16) is 2x − 2^−15, exact in one fused multiply-subtract.
template <bool kSigned>
JADAM_AVX512 inline __m512 DecodeV(__m128i bytes) {
  constexpr int kM = MantissaBits<kSigned>();
  const __m512i code = _mm512_cvtepu8_epi32(bytes);
  const __m512i magnitude = kSigned ? _mm512_and_si512(code, _mm512_set1_epi32(127)) : code;
  const __m512 x = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(magnitude, 23 - kM),
                                                        _mm512_set1_epi32((127 - 16) << 23)));
  const __mmask16 exponent_zero = _mm512_testn_epi32_mask(magnitude, _mm512_set1_epi32(15 << kM));
  const __m512 value =
      _mm512_mask_fmsub_ps(x, exponent_zero, _mm512_set1_ps(2.0f), _mm512_set1_ps(0x1p-15f));
  if constexpr (kSigned) {  // value | (code << 24 & sign bit)
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_castps_si512(value), _mm512_slli_epi32(code, 24),
        _mm512_set1_epi32(static_cast<int>(0x80000000u)), 0xF8));
  }
  return value;
}

// Encode of 16 values, as int32 codes (before the sign bit for m: ≤ 127). Differences from the
// scalar form that give the same codes: the product y·2^(M−1+16) is exact, so a fused
// multiply-add rounds as the separate addition; conversion by truncation is the floor for these
// non-negative sums; the bound 1024 only matters in lanes the selection drops; no code is
// negative (y ≥ 0: the normal range starts at code 2^M, and a NaN y has a positive sign or is
// the default NaN 0xFFC00000, neither wraps), so only the upper clamp remains, and v's (255)
// is the unsigned saturation of its narrowing to bytes.
template <bool kSigned, bool kStochastic>
JADAM_AVX512 inline __m512i EncodeV(__m512 x, __m512 factor, __m512i bits) {
  constexpr int kM = MantissaBits<kSigned>();
  constexpr int kDropped = 23 - kM;
  const __m512 y = _mm512_mul_ps(_mm512_abs_ps(x), factor);
  // The normal code (raw >> dropped) − (127 − 16)·2^M, the subtraction moved into the noise:
  // its low `dropped` bits are zero, so adding it is an OR (one VPTERNLOGD with the mask).
  const __m512i offset = _mm512_set1_epi32(-(((127 - 16) << kM) << kDropped));
  __m512i noise;
  __m512 uniform;
  if constexpr (kStochastic) {
    noise = _mm512_ternarylogic_epi32(bits, _mm512_set1_epi32((1 << kDropped) - 1), offset,
                                      0xEA);  // bits & mask | offset
    uniform = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bits, 8)),
                            _mm512_set1_ps(0x1p-24f));
  } else {
    noise = _mm512_add_epi32(offset, _mm512_set1_epi32(1 << (kDropped - 1)));
    uniform = _mm512_set1_ps(0.5f);
  }
  const __m512i subnormal = _mm512_cvttps_epi32(
      _mm512_fmadd_ps(y, _mm512_set1_ps(static_cast<float>(1 << (kM - 1 + 16))), uniform));
  const __m512i normal =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_castps_si512(y), noise), kDropped);
  const __mmask16 small = _mm512_cmp_ps_mask(y, _mm512_set1_ps(0x1p-15f), _CMP_LT_OQ);
  __m512i code = _mm512_mask_blend_epi32(small, normal, subnormal);
  if constexpr (kSigned) {
    code = _mm512_min_epi32(code, _mm512_set1_epi32(127));
    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    code = _mm512_mask_or_epi32(code, negative, code, _mm512_set1_epi32(128));
  }
  return code;
}


template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, bool kStochastic>
JADAM_AVX512 void BlockBodyAvx512(const Leaf& leaf, size_t begin, size_t end,
                                  const Coefficients& coefficients) {
  const Coefficients c = coefficients;  // see Body
  const BlockRows rows = BlockRowsOf(leaf);
  const size_t block = leaf.block, row = block + 4;
  float* __restrict new_m = rows.new_m;
  float* __restrict new_v = rows.new_v;
  const __m512 b1 = _mm512_set1_ps(c.b1), omb1 = _mm512_set1_ps(c.omb1);
  const __m512 b2 = _mm512_set1_ps(c.b2), omb2 = _mm512_set1_ps(c.omb2);
  const __m512i lane_steps = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int>(kIndexStep)));
  const __m512i vector_step = _mm512_set1_epi32(static_cast<int>(16 * kIndexStep));
  for (size_t b = begin / block; b * block < end; ++b) {
    uint8_t* __restrict m_row = rows.m + b * row;
    uint8_t* __restrict v_row = rows.v + b * row;
    const size_t base = b * block;
    const uint32_t count = static_cast<uint32_t>(std::min(block, leaf.size - base));
    float* g_out = leaf.g + base;  // the gradient; in transform mode overwritten by the update
    float* pb = leaf.p == nullptr ? nullptr : leaf.p + base;
    const __m512 m_factor = _mm512_set1_ps(RowScale(m_row, block) * (1.0f / LargestCode<true>()));
    const __m512 v_factor = _mm512_set1_ps(RowScale(v_row, block) * (1.0f / LargestCode<false>()));
    // Pass 1: decode, update, absmax (zero padding of a partial block takes part).
    const bool padded = count < block;
    __m512 m_abs = _mm512_setzero_ps();
    __m512 v_max = _mm512_set1_ps(padded ? 0.0f : -INFINITY);
    __mmask16 nan = 0;
    for (uint32_t j = 0; j < count; j += 16) {
      const __mmask16 k = TailMask(count - j);
      const __m512 g = _mm512_maskz_loadu_ps(k, g_out + j);
      const __m512 m = _mm512_mul_ps(DecodeV<true>(_mm_maskz_loadu_epi8(k, m_row + j)), m_factor);
      const __m512 v = _mm512_mul_ps(DecodeV<false>(_mm_maskz_loadu_epi8(k, v_row + j)), v_factor);
      const __m512 m_new = _mm512_fmadd_ps(g, omb1, _mm512_mul_ps(m, b1));
      __m512 v_new;
      if constexpr (kAlgo != kAdamax) {
        v_new = _mm512_fmadd_ps(_mm512_mul_ps(g, g), omb2, _mm512_mul_ps(v, b2));
      } else {
        v_new = NanMaxV(_mm512_mul_ps(v, b2), _mm512_abs_ps(g));
      }
      _mm512_mask_storeu_ps(new_m + j, k, m_new);
      _mm512_mask_storeu_ps(new_v + j, k, v_new);
      m_abs = _mm512_mask_range_ps(m_abs, k, m_abs, m_new, 0x0B);  // max |x| (NaN: dropped)
      v_max = _mm512_mask_max_ps(v_max, k, v_max, v_new);
      nan |= _mm512_mask_cmp_ps_mask(k, m_new, v_new, _CMP_UNORD_Q);  // either is NaN
    }
    // max |x| = max(max x, −min x) except for the sign of a zero; blocks with a NaN or a zero
    // absmax take the scalar BlockScale (canonical NaN, fixed-order reduction).
    float m_scale = _mm512_reduce_max_ps(m_abs);
    float v_scale = _mm512_reduce_max_ps(v_max);
    if (nan != 0 || m_scale == 0.0f) m_scale = BlockScale<true, true>(new_m, count, padded);
    if (nan != 0 || v_scale == 0.0f) v_scale = BlockScale<false, true>(new_v, count, padded);
    const float m_encode = LargestCode<true>() / (m_scale > 0.0f ? m_scale : 1.0f);
    const float v_encode = LargestCode<false>() / (v_scale > 0.0f ? v_scale : 1.0f);
    const float floor = BlockFloor<kAlgo>(v_scale, c);
    // NanMax(s, floor) is one VMAXPS(floor, s) unless floor is 0 (its sign) or NaN.
    const bool simple_floor = floor > 0.0f;
    const __m512 floor_v = _mm512_set1_ps(floor);
    const __m512 m_encode_v = _mm512_set1_ps(m_encode), v_encode_v = _mm512_set1_ps(v_encode);
    __m512i dither_m = _mm512_add_epi32(
        _mm512_set1_epi32(static_cast<int>(DitherBase(leaf.key_m, base, c.count))), lane_steps);
    __m512i dither_v = _mm512_add_epi32(
        _mm512_set1_epi32(static_cast<int>(DitherBase(leaf.key_v, base, c.count))), lane_steps);
    // Pass 2: encode both moments, write the step.
    for (uint32_t j = 0; j < count; j += 16) {
      const __mmask16 k = TailMask(count - j);
      const __m512 m_new = _mm512_maskz_loadu_ps(k, new_m + j);
      const __m512 v_new = _mm512_maskz_loadu_ps(k, new_v + j);
      const __m512i m_code = EncodeV<true, kStochastic>(m_new, m_encode_v, dither_m);
      const __m512i v_code = EncodeV<false, kStochastic>(v_new, v_encode_v, dither_v);
      _mm_mask_storeu_epi8(m_row + j, k, _mm512_cvtepi32_epi8(m_code));
      _mm_mask_storeu_epi8(v_row + j, k, _mm512_cvtusepi32_epi8(v_code));
      dither_m = _mm512_add_epi32(dither_m, vector_step);
      dither_v = _mm512_add_epi32(dither_v, vector_step);
      StepV<kAlgo, kApply, kDecay, kSafe>(m_new, v_new, _mm512_maskz_loadu_ps(k, g_out + j),
                                          floor_v, simple_floor, k,
                                          kApply || kDecay ? pb + j : nullptr, g_out + j, c);
    }
    std::memset(m_row + count, 0, block - count);  // padding encodes as code 0
    std::memset(v_row + count, 0, block - count);
    std::memcpy(m_row + block, &m_scale, 4);
    std::memcpy(v_row + block, &v_scale, 4);
  }
}

// Float16 moments with AVX-512's float16 conversions (VCVTPH2PS is LoadF16, VCVTPS2PH with
// round-to-nearest-even is RoundF16, both exact and independent of denormal flushing), the
// rest of StoreF16 in 16-bit lanes. The gap between two neighbouring float16 values is a
// power of two, so StoreF16's |error| / gap is |error| times the gap's exact reciprocal.
JADAM_AVX512 inline __m256i StoreF16V(__m512 x, __m512i bits) {
  // std::min(std::max(x, −65504), 65504): VMAXPS(a, b) is a > b ? a : b (NaN: b).
  x = _mm512_min_ps(_mm512_set1_ps(65504.0f), _mm512_max_ps(_mm512_set1_ps(-65504.0f), x));
  const __m256i nearest = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 nearest_f = _mm512_maskz_cvtph_ps(0xFFFF, nearest);
  const __m512 error = _mm512_sub_ps(x, nearest_f);
  const __mmask16 up = _mm512_cmp_ps_mask(error, _mm512_setzero_ps(), _CMP_GT_OQ);
  // NextF16(nearest, up).
  const __m256i one = _mm256_set1_epi16(1);
  const __m256i magnitude = _mm256_and_si256(nearest, _mm256_set1_epi16(0x7fff));
  const __mmask16 positive =
      _mm256_testn_epi16_mask(nearest, _mm256_set1_epi16(static_cast<int16_t>(0x8000)));
  const __mmask16 away = _kxnor_mask16(positive, up);
  __m256i other = _mm256_mask_add_epi16(_mm256_sub_epi16(nearest, one), away, nearest, one);
  const __m256i from_zero =
      _mm256_mask_blend_epi16(up, _mm256_set1_epi16(static_cast<int16_t>(0x8001)), one);
  other = _mm256_mask_mov_epi16(
      other, _mm256_cmpeq_epi16_mask(magnitude, _mm256_setzero_si256()), from_zero);
  other = _mm256_mask_mov_epi16(
      other, _mm256_cmpgt_epi16_mask(magnitude, _mm256_set1_epi16(0x7c00)), nearest);
  const __m512 gap =
      _mm512_abs_ps(_mm512_sub_ps(_mm512_maskz_cvtph_ps(0xFFFF, other), nearest_f));
  // 1 / gap: exponent 254 − e (gap is 2^−24 … 2^5; NaN only where other == nearest).
  const __m512 inverse = _mm512_castsi512_ps(
      _mm512_sub_epi32(_mm512_set1_epi32(254 << 23), _mm512_castps_si512(gap)));
  const __m512 probability = _mm512_mul_ps(_mm512_abs_ps(error), inverse);
  const __m512 uniform =
      _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bits, 8)), _mm512_set1_ps(0x1p-24f));
  return _mm256_mask_blend_epi16(_mm512_cmp_ps_mask(uniform, probability, _CMP_LT_OQ), nearest,
                                 other);
}

template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe>
JADAM_AVX512 void HalfBodyAvx512(const Leaf& leaf, size_t begin, size_t end,
                                 const Coefficients& coefficients) {
  const Coefficients c = coefficients;  // see Body
  uint16_t* m16 = static_cast<uint16_t*>(leaf.m);
  uint16_t* v16 = static_cast<uint16_t*>(leaf.v);
  const __m512 b1 = _mm512_set1_ps(c.b1), omb1 = _mm512_set1_ps(c.omb1);
  const __m512 b2 = _mm512_set1_ps(c.b2), omb2 = _mm512_set1_ps(c.omb2);
  const __m512 floor = _mm512_set1_ps(c.half_floor);
  const bool simple_floor = c.half_floor > 0.0f;  // see BlockBodyAvx512
  const __m512i lane_steps = _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int>(kIndexStep)));
  const __m512i vector_step = _mm512_set1_epi32(static_cast<int>(16 * kIndexStep));
  __m512i dither_m = _mm512_add_epi32(
      _mm512_set1_epi32(static_cast<int>(DitherBase(leaf.key_m, begin, c.count))), lane_steps);
  __m512i dither_v = _mm512_add_epi32(
      _mm512_set1_epi32(static_cast<int>(DitherBase(leaf.key_v, begin, c.count))), lane_steps);
  for (size_t i = begin; i < end; i += 16) {
    const __mmask16 k = TailMask(end - i);
    const __m512 g = _mm512_maskz_loadu_ps(k, leaf.g + i);
    const __m512 m = _mm512_maskz_cvtph_ps(k, _mm256_maskz_loadu_epi16(k, m16 + i));
    const __m512 v = _mm512_maskz_cvtph_ps(k, _mm256_maskz_loadu_epi16(k, v16 + i));
    const __m512 m_new = _mm512_fmadd_ps(m, b1, _mm512_mul_ps(g, omb1));
    __m512 v_new;
    if constexpr (kAlgo != kAdamax) {
      v_new = _mm512_fmadd_ps(v, b2, _mm512_mul_ps(_mm512_mul_ps(g, g), omb2));
    } else {
      v_new = NanMaxV(_mm512_mul_ps(v, b2), _mm512_abs_ps(g));
    }
    _mm256_mask_storeu_epi16(m16 + i, k, StoreF16V(m_new, dither_m));
    _mm256_mask_storeu_epi16(v16 + i, k, StoreF16V(v_new, dither_v));
    dither_m = _mm512_add_epi32(dither_m, vector_step);
    dither_v = _mm512_add_epi32(dither_v, vector_step);
    StepV<kAlgo, kApply, kDecay, kSafe>(m_new, v_new, g, floor, simple_floor, k,
                                        kApply || kDecay ? leaf.p + i : nullptr, leaf.g + i, c);
  }
}
#endif

// ------------------------------------------------------------------------------------------
// Selection of the compiled loop: algorithm, mode, weight decay, safe division, storage, and
// the ISA (baseline, AVX2 with FMA — what XLA emits on such a CPU — or AVX-512 for the
// compute-bound 16-bit and 8-bit kinds, chosen at run time).

template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, bool kFma, int kKind>
JADAM_ALWAYS_INLINE inline void Body(const Leaf& leaf, size_t begin, size_t end,
                                     const Coefficients& coefficients) {
  // A local copy: the compiler then knows no store through a leaf's pointers changes it
  // (otherwise every coefficient is reloaded per element and nothing vectorizes).
  const Coefficients c = coefficients;
  if constexpr (kKind == kQ8) {
    BlockBody<kAlgo, kApply, kDecay, kSafe, kFma, true>(leaf, begin, end, c);
  } else if constexpr (kKind == kQ8 + 1) {  // 8-bit, round to nearest
    BlockBody<kAlgo, kApply, kDecay, kSafe, kFma, false>(leaf, begin, end, c);
  } else {
    ElementBody<kAlgo, kApply, kDecay, kSafe, kFma, kKind>(leaf, begin, end, c);
  }
}
constexpr int kQ8Nearest = kQ8 + 1;  // internal kind: 8-bit without dither

template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, int kKind>
void RangeBase(const Leaf& leaf, size_t begin, size_t end, const Coefficients& c) {
  Body<kAlgo, kApply, kDecay, kSafe, false, kKind>(leaf, begin, end, c);
}

#if JADAM_X86_DISPATCH
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, int kKind>
__attribute__((target("avx2,fma"))) void RangeAvx2(const Leaf& leaf, size_t begin, size_t end,
                                                   const Coefficients& c) {
  Body<kAlgo, kApply, kDecay, kSafe, true, kKind>(leaf, begin, end, c);
}

// The compute-bound kinds (16-bit and 8-bit moments) also for AVX-512: twice the registers,
// single-instruction narrowing and masked tails. The same operations, so the same results.
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, int kKind>
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")))
void RangeAvx512(const Leaf& leaf, size_t begin, size_t end, const Coefficients& c) {
  if constexpr (kKind == kQ8 || kKind == kQ8Nearest) {
    BlockBodyAvx512<kAlgo, kApply, kDecay, kSafe, kKind == kQ8>(leaf, begin, end, c);
  } else if constexpr (kKind == kF16) {
    HalfBodyAvx512<kAlgo, kApply, kDecay, kSafe>(leaf, begin, end, c);
  } else {
    Body<kAlgo, kApply, kDecay, kSafe, true, kKind>(leaf, begin, end, c);
  }
}
#endif

#if JADAM_X86_DISPATCH
bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
bool HasAvx512() {
  static const bool has = HasAvx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return has;
}
#endif

template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, int kKind>
RangeFn SelectIsa() {
#if JADAM_X86_DISPATCH
  if constexpr (kKind != kF32) {
    if (HasAvx512()) return &RangeAvx512<kAlgo, kApply, kDecay, kSafe, kKind>;
  }
  if (HasAvx2()) return &RangeAvx2<kAlgo, kApply, kDecay, kSafe, kKind>;
#endif
  return &RangeBase<kAlgo, kApply, kDecay, kSafe, kKind>;
}

template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe>
RangeFn SelectKind(int kind) {
  switch (kind) {
    case kBF16:
      return SelectIsa<kAlgo, kApply, kDecay, kSafe, kBF16>();
    case kF16:
      return SelectIsa<kAlgo, kApply, kDecay, kSafe, kF16>();
    case kQ8:
      return SelectIsa<kAlgo, kApply, kDecay, kSafe, kQ8>();
    case kQ8Nearest:
      return SelectIsa<kAlgo, kApply, kDecay, kSafe, kQ8Nearest>();
    default:
      return SelectIsa<kAlgo, kApply, kDecay, kSafe, kF32>();
  }
}

template <int32_t kAlgo, bool kApply>
RangeFn SelectDecay(bool decay, bool safe, int kind) {
  if (decay) {
    return safe ? SelectKind<kAlgo, kApply, true, true>(kind)
                : SelectKind<kAlgo, kApply, true, false>(kind);
  }
  return safe ? SelectKind<kAlgo, kApply, false, true>(kind)
              : SelectKind<kAlgo, kApply, false, false>(kind);
}

RangeFn Select(int32_t algorithm, bool apply, bool decay, bool safe, int kind) {
  if (algorithm == kAdam) {
    return apply ? SelectDecay<kAdam, true>(decay, safe, kind)
                 : SelectDecay<kAdam, false>(decay, safe, kind);
  }
  if (algorithm == kNadam) {
    return apply ? SelectDecay<kNadam, true>(decay, safe, kind)
                 : SelectDecay<kNadam, false>(decay, safe, kind);
  }
  return apply ? SelectDecay<kAdamax, true>(decay, safe, kind)
               : SelectDecay<kAdamax, false>(decay, safe, kind);
}

// ------------------------------------------------------------------------------------------
// Moments-only mode: m and v in place and nothing else (`g` is read only here; 20 bytes per
// value with float32 moments). The update is then XLA's, with the pure path's expressions, so
// it fuses into optax.apply_updates' sum and needs no buffer of its own: from the new float32
// moments, or (16-bit moments, whose direction needs the unrounded new moments) from the old
// stored ones and g, read before this call overwrites them (see jadam/_fused.py).

template <int32_t kAlgo, bool kFma, int kKind>
JADAM_ALWAYS_INLINE inline void MomentsBody(const Leaf& leaf, size_t begin, size_t end,
                                            const Coefficients& coefficients) {
  using S = Storage<kKind>;
  using T = typename S::T;
  const Coefficients c = coefficients;  // see Body
  const float* __restrict g = leaf.g + begin;
  T* __restrict m = static_cast<T*>(leaf.m) + begin;
  T* __restrict v = static_cast<T*>(leaf.v) + begin;
  const uint32_t base_m = DitherBase(leaf.key_m, begin, c.count);  // pieces < 2^32: see Cut
  const uint32_t base_v = DitherBase(leaf.key_v, begin, c.count);
  const uint32_t n = static_cast<uint32_t>(end - begin);
  for (uint32_t j = 0; j < n; ++j) {
    const NewMoments x = UpdateMoments<kAlgo, kFma>(g[j], S::Load(m[j]), S::Load(v[j]), c);
    m[j] = S::Store(x.m, Dither(base_m, j));
    v[j] = S::Store(x.v, Dither(base_v, j));
  }
}

template <int32_t kAlgo, int kKind>
void MomentsRangeBase(const Leaf& leaf, size_t begin, size_t end, const Coefficients& c) {
  MomentsBody<kAlgo, false, kKind>(leaf, begin, end, c);
}

#if JADAM_X86_DISPATCH
template <int32_t kAlgo, int kKind>
__attribute__((target("avx2,fma"))) void MomentsRangeAvx2(const Leaf& leaf, size_t begin,
                                                          size_t end, const Coefficients& c) {
  MomentsBody<kAlgo, true, kKind>(leaf, begin, end, c);
}

template <int32_t kAlgo, int kKind>  // 16-bit kinds (compute-bound rounding), see RangeAvx512
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")))
void MomentsRangeAvx512(const Leaf& leaf, size_t begin, size_t end, const Coefficients& c) {
  MomentsBody<kAlgo, true, kKind>(leaf, begin, end, c);
}
#endif

template <int32_t kAlgo, int kKind>
RangeFn SelectMomentsIsa() {
#if JADAM_X86_DISPATCH
  if (kKind != kF32 && HasAvx512()) return &MomentsRangeAvx512<kAlgo, kKind>;
  if (HasAvx2()) return &MomentsRangeAvx2<kAlgo, kKind>;
#endif
  return &MomentsRangeBase<kAlgo, kKind>;
}

template <int32_t kAlgo>
RangeFn SelectMomentsKind(int kind) {
  if (kind == kBF16) return SelectMomentsIsa<kAlgo, kBF16>();
  if (kind == kF16) return SelectMomentsIsa<kAlgo, kF16>();
  return SelectMomentsIsa<kAlgo, kF32>();
}

// NAdam's moments are Adam's (only its direction, XLA's here, differs).
RangeFn MomentsRange(int32_t algorithm, int kind) {
  return algorithm == kAdamax ? SelectMomentsKind<kAdamax>(kind) : SelectMomentsKind<kAdam>(kind);
}

// ------------------------------------------------------------------------------------------
// Work shared between the calling thread and XLA's intra-op pool: pieces of leaves (whole
// blocks for 8-bit leaves) grouped into chunks of about kChunk elements.

constexpr size_t kChunk = size_t{1} << 15;  // 32 Ki elements: 128 KiB per float32 array

struct Piece {
  uint32_t leaf;
  size_t begin, end;
};

// Held by shared_ptr so a helper that starts after the call has returned finds no chunk left.
struct Work {
  std::vector<Leaf> leaves;
  std::vector<Piece> pieces;
  std::vector<size_t> chunk_starts;  // chunk k = pieces [chunk_starts[k], chunk_starts[k+1])
  Coefficients coef;
  std::atomic<size_t> next{0};
  std::atomic<int> active{0};
  std::mutex mu;
  std::condition_variable done;

  size_t num_chunks() const { return chunk_starts.size() - 1; }

  void Cut() {
    size_t in_chunk = 0;
    chunk_starts.push_back(0);
    for (uint32_t l = 0; l < leaves.size(); ++l) {
      const size_t size = leaves[l].size, block = leaves[l].block;
      const size_t step = std::max(block, kChunk / block * block);
      for (size_t begin = 0; begin < size; begin += step) {
        const size_t end = std::min(size, begin + step);
        pieces.push_back({l, begin, end});
        in_chunk += end - begin;
        if (in_chunk >= kChunk) {
          chunk_starts.push_back(pieces.size());
          in_chunk = 0;
        }
      }
    }
    if (chunk_starts.back() != pieces.size()) chunk_starts.push_back(pieces.size());
  }

  void RunChunk(size_t k) const {
    for (size_t i = chunk_starts[k]; i < chunk_starts[k + 1]; ++i) {
      const Piece& piece = pieces[i];
      const Leaf& leaf = leaves[piece.leaf];
      leaf.fn(leaf, piece.begin, piece.end, coef);
    }
  }

  // Claims and runs chunks until none is left. `active` is raised before the first claim
  // so the caller, which waits for active == 0 after its own last claim, waits for us.
  void Drain() {
    active.fetch_add(1);
    const size_t n = num_chunks();
    for (size_t k = next.fetch_add(1); k < n; k = next.fetch_add(1)) RunChunk(k);
    if (active.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mu);
      done.notify_all();
    }
  }
};

ffi::Error Invalid(const char* what) {
  return ffi::Error::InvalidArgument(std::string("jadam fused adam: ") + what);
}

size_t ByteWidth(int kind) {
  switch (kind) {
    case kF32:
      return 4;
    case kBF16:
    case kF16:
      return 2;
    default:
      return 1;
  }
}

ffi::DataType StoredType(int kind) {
  switch (kind) {
    case kF32:
      return ffi::DataType::F32;
    case kBF16:
      return ffi::DataType::BF16;
    case kF16:
      return ffi::DataType::F16;
    default:
      return ffi::DataType::U8;
  }
}

// Bytes of the stored moment of a leaf of `size` values.
size_t StoredBytes(int kind, size_t size, size_t block) {
  if (kind >= kQ8) return std::max<size_t>(1, (size + block - 1) / block) * (block + 4);
  return size * ByteWidth(kind);
}

ffi::Error FusedAdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars,
                         ffi::RemainingArgs args, ffi::RemainingRets rets, int32_t algorithm,
                         int32_t apply, int32_t moments_only, int32_t safe_divide,
                         int32_t packed, int64_t offset, ffi::Span<const int64_t> leaf_info) {
  if (scalars.element_count() != kNumScalars) return Invalid("wrong number of scalars");
  if (algorithm < kAdam || algorithm > kNadam) return Invalid("unknown algorithm");
  if (leaf_info.size() % kInfoFields != 0) return Invalid("malformed leaf_info");
  const size_t n = leaf_info.size() / kInfoFields;
  bool any_decay = false;
  for (size_t i = 0; i < n; ++i) any_decay |= leaf_info[i * kInfoFields + 2] != 0;
  // Apply mode:      args = p[n], g[n], m, v            rets = p[n], m, v
  // Transform mode:  args = g[n], m, v [, p[n]]         rets = u[n] (aliasing g), m, v
  // Moments only:    args = g[n], m, v                  rets = m, v
  // where m and v are n buffers, or one each when packed.
  if (moments_only && (apply || any_decay)) return Invalid("moments_only writes m and v only");
  const size_t moments = packed ? 1 : n;
  const size_t leaf_kinds = apply ? 2 : (any_decay ? 2 : 1);
  const size_t written = moments_only ? 0 : n;  // results before m
  if (args.size() != leaf_kinds * n + 2 * moments || rets.size() != written + 2 * moments ||
      offset < 0) {
    return Invalid("operand counts do not match");
  }
  const size_t m_arg = apply ? 2 * n : n;  // first m operand
  const size_t g_arg = apply ? n : 0;
  const float* s = scalars.typed_data();
  auto work = std::make_shared<Work>();
  uint32_t count_bits;
  std::memcpy(&count_bits, &s[kCountBits], 4);
  work->coef = Coefficients{s[kB1],       s[kOneMinusB1], s[kB2],      s[kOneMinusB2],
                            s[kInvBiasCorr1], s[kInvBiasCorr2], s[kEps], s[kEpsRoot],
                            s[kNegLr],    s[kWeightDecay], s[kDivisor], s[kHalfFloor],
                            count_bits,  s[kInvBiasCorr1Next]};

  // An output that aliases its input (the normal case: XLA honours input_output_aliases)
  // is updated in place; otherwise the input is copied into it first.
  auto inout = [&](size_t arg, size_t ret, ffi::DataType type,
                   size_t bytes) -> ffi::ErrorOr<void*> {
    auto src = args.get<ffi::AnyBuffer>(arg);
    auto dst = rets.get<ffi::AnyBuffer>(ret);
    if (!src.has_value()) return ffi::Unexpected(src.error());
    if (!dst.has_value()) return ffi::Unexpected(dst.error());
    if (src->element_type() != type || (*dst)->element_type() != type ||
        src->size_bytes() != bytes || (*dst)->size_bytes() != bytes) {
      return ffi::Unexpected(Invalid("an operand's dtype or shape does not match"));
    }
    void* out = (*dst)->untyped_data();
    if (out != src->untyped_data() && bytes > 0) std::memcpy(out, src->untyped_data(), bytes);
    return out;
  };

#define JADAM_TRY(var, expr) \
  auto var = (expr);         \
  if (!var.has_value()) return var.error();
  uint8_t* packed_m = nullptr;
  uint8_t* packed_v = nullptr;
  size_t packed_bytes = 0;
  size_t width = 0;
  if (packed) {
    const int kind = static_cast<int>(leaf_info[0]);
    if (kind >= kQ8) return Invalid("8-bit moments cannot be packed");
    width = ByteWidth(kind);
    auto m_in = args.get<ffi::AnyBuffer>(m_arg);
    if (!m_in.has_value()) return m_in.error();
    packed_bytes = m_in->size_bytes();
    JADAM_TRY(m, inout(m_arg, written, StoredType(kind), packed_bytes));
    JADAM_TRY(v, inout(m_arg + 1, written + 1, StoredType(kind), packed_bytes));
    packed_m = static_cast<uint8_t*>(*m);
    packed_v = static_cast<uint8_t*>(*v);
  }
  size_t at = static_cast<size_t>(offset);  // packed: this leaf's first moment element
  work->leaves.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t* info = &leaf_info[i * kInfoFields];
    const int kind = static_cast<int>(info[0]);
    const size_t block = kind >= kQ8 ? static_cast<size_t>(info[1]) : 1;
    const bool decay = info[2] != 0;
    if (kind < kF32 || kind > kQ8Nearest || block == 0) return Invalid("malformed leaf_info");
    Leaf& leaf = work->leaves[i];
    auto g_in = args.get<ffi::AnyBuffer>(g_arg + i);
    if (!g_in.has_value()) return g_in.error();
    leaf.size = g_in->element_count();
    const size_t bytes = leaf.size * 4;
    if (moments_only) {
      if (kind >= kQ8 || g_in->element_type() != ffi::DataType::F32) {
        return Invalid("moments_only needs float32 or 16-bit moments and float32 gradients");
      }
      leaf.g = static_cast<float*>(const_cast<void*>(g_in->untyped_data()));  // read only
      leaf.p = nullptr;
    } else if (apply) {
      JADAM_TRY(p, inout(i, i, ffi::DataType::F32, bytes));
      if (g_in->element_type() != ffi::DataType::F32) {
        return Invalid("a gradient's dtype does not match");
      }
      leaf.p = static_cast<float*>(*p);
      leaf.g = static_cast<float*>(const_cast<void*>(g_in->untyped_data()));  // read only
    } else {
      JADAM_TRY(u, inout(i, i, ffi::DataType::F32, bytes));
      leaf.g = static_cast<float*>(*u);
      leaf.p = nullptr;
      if (any_decay) {
        auto p = args.get<ffi::AnyBuffer>(n + 2 * moments + i);
        if (!p.has_value()) return p.error();
        if (p->element_type() != ffi::DataType::F32 || p->element_count() != leaf.size) {
          return Invalid("a parameter's dtype or shape does not match");
        }
        leaf.p = static_cast<float*>(const_cast<void*>(p->untyped_data()));
      }
    }
    if (packed) {
      if (static_cast<int>(info[0]) != static_cast<int>(leaf_info[0])) {
        return Invalid("packed leaves must share one storage kind");
      }
      leaf.m = packed_m + at * width;
      leaf.v = packed_v + at * width;
      at += leaf.size;
      if (at * width > packed_bytes) return Invalid("leaves exceed the packed moments");
    } else {
      const size_t stored = StoredBytes(kind, leaf.size, block);
      JADAM_TRY(m, inout(m_arg + i, written + i, StoredType(kind), stored));
      JADAM_TRY(v, inout(m_arg + n + i, written + n + i, StoredType(kind), stored));
      leaf.m = *m;
      leaf.v = *v;
    }
    leaf.block = block;
    leaf.key_m = static_cast<uint32_t>(info[3]);
    leaf.key_v = static_cast<uint32_t>(info[4]);
    leaf.fn = moments_only ? MomentsRange(algorithm, kind)
                           : Select(algorithm, apply, decay, safe_divide, kind);
  }
#undef JADAM_TRY
  work->Cut();
  const size_t num_chunks = work->num_chunks();

  // Share chunks with XLA's intra-op pool; small trees are not worth a hand-off.
  const int64_t pool_threads = pool.num_threads();
  const size_t helpers = std::min<size_t>(pool_threads > 1 ? pool_threads - 1 : 0,
                                          num_chunks > 1 ? num_chunks - 1 : 0);
  for (size_t h = 0; h < helpers; ++h) pool.Schedule([work]() { work->Drain(); });
  work->Drain();
  std::unique_lock<std::mutex> lock(work->mu);
  work->done.wait(lock, [&] { return work->active.load() == 0; });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JadamFusedAdam, FusedAdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int32_t>("algorithm")
                                  .Attr<int32_t>("apply")
                                  .Attr<int32_t>("moments_only")
                                  .Attr<int32_t>("safe_divide")
                                  .Attr<int32_t>("packed")
                                  .Attr<int64_t>("offset")
                                  .Attr<ffi::Span<const int64_t>>("leaf_info"));
