// One-pass multi-tensor Adam / AdamW / AdaMax step for XLA on CPU (jadam's `fused=True`).
//
// A single XLA FFI custom call updates every leaf of a parameter tree: it reads the
// gradient g, first moment m, second moment v (AdaMax: infinity norm u) and, when needed,
// the parameter p of each leaf once, and writes m, v and either the new parameter (apply
// mode) or the update (transform mode) once: 28 bytes per fp32 parameter, the least any
// Adam step can move. Outputs are aliased to inputs (`input_output_aliases` on donated
// buffers), so the step runs in place. The work is split into fixed-size chunks across
// leaves and shared with XLA's intra-op thread pool.
//
// The arithmetic mirrors jadam's pure-JAX path operation by operation (no FMA contraction,
// exact division and square root), so both paths agree bit for bit. Scalars that depend on
// the step count (bias corrections, learning rate) arrive in a small f32 buffer computed
// by JAX with the same expressions as the pure path.
//
// Operands: scalars f32[kNumScalars], then n leaves of each array kind (see FusedAdamImpl).
// With `packed`, m and v are not n leaves but one flat buffer each holding every leaf's
// moments in tree order (jadam's packed fused state); this call's leaves start at element
// `offset` of them. Fewer buffers make a many-leaf step much cheaper for XLA to compile.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

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

// Indices into the scalar buffer. Keep in sync with `_SCALARS` in jadam/_fused.py.
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
  kNumScalars,
};

enum Algorithm : int32_t { kAdam = 0, kAdamax = 1 };

struct Coefficients {
  float b1, omb1, b2, omb2, ibc1, ibc2, eps, eps_root, neg_lr, wd;
};

// Pointers of one leaf. m, v and p are updated in place (outputs alias inputs); `p` is
// null when the parameter is not needed and `u` (the update) is null in apply mode.
struct Leaf {
  const float* g;
  float* m;
  float* v;
  float* p;
  float* u;
};

// NaN-propagating maximum, like XLA's `max` on CPU.
inline float NanMax(float a, float b) { return (a > b || a != a) ? a : b; }

// x·y + z, contracted into one rounding exactly where XLA's CPU backend contracts it
// (LLVM fuses a multiply into the add that consumes it when the CPU has FMA).
template <bool kFma>
JADAM_ALWAYS_INLINE inline float MulAdd(float x, float y, float z) {
  if constexpr (kFma) {
    return __builtin_fmaf(x, y, z);
  } else {
    return x * y + z;
  }
}

// One leaf, elements [begin, end). The order of operations is that of the pure-JAX path
// after XLA's rewrites: a division by a broadcast scalar becomes a multiplication by its
// reciprocal (so the bias corrections arrive inverted) and a·b + c·d contracts to
// fma(a, b, c·d).
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe, bool kFma>
JADAM_ALWAYS_INLINE inline void UpdateBody(const Leaf& leaf, size_t begin, size_t end,
                                          const Coefficients c) {
  const float* __restrict g = leaf.g;
  float* __restrict m = leaf.m;
  float* __restrict v = leaf.v;
  float* __restrict p = leaf.p;
  float* __restrict u = leaf.u;
  for (size_t i = begin; i < end; ++i) {
    const float gi = g[i];
    const float mi = MulAdd<kFma>(m[i], c.b1, gi * c.omb1);
    float vi;
    float denom;
    if constexpr (kAlgo == kAdam) {
      vi = MulAdd<kFma>(v[i], c.b2, (gi * gi) * c.omb2);
      denom = std::sqrt(MulAdd<kFma>(vi, c.ibc2, c.eps_root)) + c.eps;
    } else {
      vi = NanMax(v[i] * c.b2, std::fabs(gi));
      denom = vi + c.eps;
    }
    const float q = (mi * c.ibc1) / denom;
    float di = q;
    if constexpr (kSafe) di = (denom != 0.0f) ? q : 0.0f;
    if constexpr (kDecay) di = MulAdd<kFma>(p[i], c.wd, di);
    m[i] = mi;
    v[i] = vi;
    if constexpr (kApply) {
      p[i] = MulAdd<kFma>(di, c.neg_lr, p[i]);
    } else {
      u[i] = di * c.neg_lr;
    }
  }
}

// The loop compiled for the baseline ISA and, on x86-64 with AVX2 and FMA, for 8 lanes
// with fused multiply-adds (what XLA emits on such a CPU); chosen at run time.
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe>
void UpdateRangeBase(const Leaf& leaf, size_t begin, size_t end, const Coefficients c) {
  UpdateBody<kAlgo, kApply, kDecay, kSafe, false>(leaf, begin, end, c);
}

#if JADAM_X86_DISPATCH
template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe>
__attribute__((target("avx2,fma"))) void UpdateRangeAvx2(const Leaf& leaf, size_t begin,
                                                         size_t end, const Coefficients c) {
  UpdateBody<kAlgo, kApply, kDecay, kSafe, true>(leaf, begin, end, c);
}
#endif

using RangeFn = void (*)(const Leaf&, size_t, size_t, Coefficients);

template <int32_t kAlgo, bool kApply, bool kDecay, bool kSafe>
RangeFn SelectIsa() {
#if JADAM_X86_DISPATCH
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (has_avx2) return &UpdateRangeAvx2<kAlgo, kApply, kDecay, kSafe>;
#endif
  return &UpdateRangeBase<kAlgo, kApply, kDecay, kSafe>;
}

template <int32_t kAlgo, bool kApply>
RangeFn Select(bool decay, bool safe) {
  if (decay) {
    return safe ? SelectIsa<kAlgo, kApply, true, true>() : SelectIsa<kAlgo, kApply, true, false>();
  }
  return safe ? SelectIsa<kAlgo, kApply, false, true>() : SelectIsa<kAlgo, kApply, false, false>();
}

// Work shared between the calling thread and pool helpers. Held by shared_ptr so a helper
// that starts after the call has returned finds no chunk left and touches nothing else.
struct Work {
  std::vector<Leaf> leaves;
  std::vector<size_t> offsets;  // offsets[i] = first global element of leaf i; back() = total
  RangeFn fn;
  Coefficients coef;
  size_t chunk;
  size_t num_chunks;
  std::atomic<size_t> next{0};
  std::atomic<int> active{0};
  std::mutex mu;
  std::condition_variable done;

  void RunChunk(size_t k) const {
    const size_t start = k * chunk;
    const size_t stop = std::min(offsets.back(), start + chunk);
    size_t leaf = std::upper_bound(offsets.begin(), offsets.end(), start) - offsets.begin() - 1;
    size_t pos = start;
    while (pos < stop) {
      const size_t leaf_end = offsets[leaf + 1];
      const size_t end = std::min(stop, leaf_end);
      if (end > pos) fn(leaves[leaf], pos - offsets[leaf], end - offsets[leaf], coef);
      pos = end;
      ++leaf;
    }
  }

  // Claims and runs chunks until none is left. `active` is raised before the first claim
  // so the caller, which waits for active == 0 after its own last claim, waits for us.
  void Drain() {
    active.fetch_add(1);
    for (size_t k = next.fetch_add(1); k < num_chunks; k = next.fetch_add(1)) RunChunk(k);
    if (active.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mu);
      done.notify_all();
    }
  }
};

constexpr size_t kChunk = size_t{1} << 15;  // 32 Ki elements: 128 KiB per array

ffi::Error FusedAdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars,
                         ffi::RemainingArgs args, ffi::RemainingRets rets, int32_t algorithm,
                         int32_t apply, int32_t decay, int32_t safe_divide, int32_t packed,
                         int64_t offset) {
  if (scalars.element_count() != kNumScalars) {
    return ffi::Error::InvalidArgument("jadam fused adam: wrong number of scalars");
  }
  if (algorithm != kAdam && algorithm != kAdamax) {
    return ffi::Error::InvalidArgument("jadam fused adam: unknown algorithm");
  }
  // Apply mode:      args = p, g, m, v           rets = p, m, v
  // Transform mode:  args = g, m, v [, p]        rets = u, m, v
  // (each letter n buffers, one leaf each; packed: m and v one buffer each)
  const size_t num_leaf_kinds = apply ? 2 : (decay ? 2 : 1);  // kinds with n buffers
  size_t n;
  if (packed) {
    if (args.size() < 2 || rets.size() < 2 || (args.size() - 2) % num_leaf_kinds != 0 ||
        (args.size() - 2) / num_leaf_kinds != rets.size() - 2 || offset < 0) {
      return ffi::Error::InvalidArgument("jadam fused adam: operand counts do not match");
    }
    n = rets.size() - 2;
  } else {
    const size_t num_arg_kinds = num_leaf_kinds + 2;
    if (args.size() % num_arg_kinds != 0 || rets.size() % 3 != 0 ||
        args.size() / num_arg_kinds != rets.size() / 3) {
      return ffi::Error::InvalidArgument("jadam fused adam: operand counts do not match");
    }
    n = rets.size() / 3;
  }
  const float* s = scalars.typed_data();
  auto work = std::make_shared<Work>();
  work->coef = Coefficients{s[kB1],       s[kOneMinusB1], s[kB2],       s[kOneMinusB2],
                            s[kInvBiasCorr1], s[kInvBiasCorr2],  s[kEps],      s[kEpsRoot],
                            s[kNegLr],     s[kWeightDecay]};
  work->leaves.resize(n);
  work->offsets.resize(n + 1);
  work->offsets[0] = 0;

  // Index of leaf i of operand kind `kind` (in the order of the comment above); in packed
  // mode the moment kinds hold a single buffer.
  const size_t moment_in = apply ? 2 : 1;  // first moment kind among the args
  auto arg_index = [&](size_t kind, size_t i) -> size_t {
    if (!packed) return kind * n + i;
    if (kind < moment_in) return kind * n + i;
    if (kind < moment_in + 2) return moment_in * n + (kind - moment_in);
    return (kind - 2) * n + 2 + i;
  };
  auto ret_index = [&](size_t kind, size_t i) -> size_t {
    if (!packed) return kind * n + i;
    return kind == 0 ? i : n + kind - 1;
  };
  auto in = [&](size_t kind, size_t i, size_t count) -> ffi::ErrorOr<const float*> {
    auto b = args.get<ffi::Buffer<ffi::F32>>(arg_index(kind, i));
    if (!b.has_value()) return ffi::Unexpected(b.error());
    if (b->element_count() != count) {
      return ffi::Unexpected(ffi::Error::InvalidArgument("jadam fused adam: shape mismatch"));
    }
    return b->typed_data();
  };
  // An output that aliases its input (the normal case: XLA honours input_output_aliases)
  // is updated in place; otherwise the input is copied into it first.
  auto inout = [&](size_t in_kind, size_t out_kind, size_t i,
                   size_t count) -> ffi::ErrorOr<float*> {
    auto src = in(in_kind, i, count);
    if (!src.has_value()) return ffi::Unexpected(src.error());
    auto b = rets.get<ffi::Buffer<ffi::F32>>(ret_index(out_kind, i));
    if (!b.has_value()) return ffi::Unexpected(b.error());
    if ((*b)->element_count() != count) {
      return ffi::Unexpected(ffi::Error::InvalidArgument("jadam fused adam: shape mismatch"));
    }
    float* dst = (*b)->typed_data();
    if (dst != *src && count > 0) std::memcpy(dst, *src, count * sizeof(float));
    return dst;
  };

#define JADAM_TRY(var, expr) \
  auto var = (expr);         \
  if (!var.has_value()) return var.error();
  // Packed moments: one flat buffer each, updated in place from element `offset` on.
  float* packed_m = nullptr;
  float* packed_v = nullptr;
  size_t packed_size = 0;
  if (packed) {
    auto m_in = args.get<ffi::Buffer<ffi::F32>>(arg_index(moment_in, 0));
    if (!m_in.has_value()) return m_in.error();
    packed_size = m_in->element_count();
    JADAM_TRY(m, inout(moment_in, 1, 0, packed_size));
    JADAM_TRY(v, inout(moment_in + 1, 2, 0, packed_size));
    packed_m = *m;
    packed_v = *v;
  }
  const size_t start = static_cast<size_t>(offset);

  for (size_t i = 0; i < n; ++i) {
    auto first = rets.get<ffi::Buffer<ffi::F32>>(i);
    if (!first.has_value()) return first.error();
    const size_t count = (*first)->element_count();
    const size_t at = start + work->offsets[i];  // packed: this leaf's first moment element
    float* m = packed_m + at;
    float* v = packed_v + at;
    if (!packed) {
      JADAM_TRY(mm, inout(moment_in, 1, i, count));
      JADAM_TRY(vv, inout(moment_in + 1, 2, i, count));
      m = *mm;
      v = *vv;
    }
    if (apply) {
      JADAM_TRY(p, inout(0, 0, i, count));
      JADAM_TRY(g, in(1, i, count));
      work->leaves[i] = Leaf{*g, m, v, *p, nullptr};
    } else {
      JADAM_TRY(g, in(0, i, count));
      auto u = rets.get<ffi::Buffer<ffi::F32>>(i);
      float* p = nullptr;
      if (decay) {
        JADAM_TRY(pp, in(3, i, count));
        p = const_cast<float*>(*pp);  // read only in transform mode
      }
      work->leaves[i] = Leaf{*g, m, v, p, (*u)->typed_data()};
    }
    work->offsets[i + 1] = work->offsets[i] + count;
  }
#undef JADAM_TRY
  if (packed && start + work->offsets.back() > packed_size) {
    return ffi::Error::InvalidArgument("jadam fused adam: leaves exceed the packed moments");
  }

  if (algorithm == kAdam) {
    work->fn = apply ? Select<kAdam, true>(decay, safe_divide) : Select<kAdam, false>(decay, safe_divide);
  } else {
    work->fn = apply ? Select<kAdamax, true>(decay, safe_divide) : Select<kAdamax, false>(decay, safe_divide);
  }
  const size_t total = work->offsets.back();
  work->chunk = kChunk;
  work->num_chunks = (total + kChunk - 1) / kChunk;

  // Share chunks with XLA's intra-op pool; small trees are not worth a hand-off.
  const int64_t pool_threads = pool.num_threads();
  const size_t helpers =
      std::min<size_t>(pool_threads > 1 ? static_cast<size_t>(pool_threads - 1) : 0,
                       work->num_chunks > 1 ? work->num_chunks - 1 : 0);
  for (size_t h = 0; h < helpers; ++h) {
    pool.Schedule([work]() { work->Drain(); });
  }
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
                                  .Attr<int32_t>("decay")
                                  .Attr<int32_t>("safe_divide")
                                  .Attr<int32_t>("packed")
                                  .Attr<int64_t>("offset"));
