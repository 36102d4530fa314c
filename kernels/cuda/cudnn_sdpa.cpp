#include "cudnn_sdpa.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "cudnn_engine_choice.h"
#include "flash_backward.h"
#include "kernels.h"
#include "lighthouse/backend.h"  // OutOfMemory

namespace lh::cuda {
namespace {

using Dims = CudnnGraph::Dims;

// Unique ids of the tensors bound at execution time.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kScale, kNegInf, kOne, kDO, kDQ, kDK, kDV, kSoftmaxSum, kDQAccum };

Dims dims4(int64_t b, int64_t h, int64_t s, int64_t d) { return {b, h, s, d}; }
Dims strides(const Strides4& s) { return {s[0], s[1], s[2], s[3]}; }
// The transposed view [b, h, d, s] of a [b, h, s, d] tensor: same memory, last two dims swapped.
Dims transposed(const Strides4& s) { return {s[0], s[1], s[3], s[2]}; }
Dims row_stats_strides(const SdpaShape& sh) { return strides(sh.stats); }

// Workspace above which a call is split into kv-head groups (and a single head's deterministic
// backward into key chunks): a quarter of the device's memory unless LH_CUDNN_WORKSPACE_LIMIT_MB
// (MiB) says otherwise. Smaller calls run one after another, which costs occupancy (6% at 64K for
// single heads); it is the price of fitting the deterministic backward at long lengths.
constexpr size_t kDeviceShareForWorkspace = 4;  // the limit is total memory / this
size_t default_workspace_limit() {
  if (const char* env = std::getenv("LH_CUDNN_WORKSPACE_LIMIT_MB")) {
    const int64_t mb = parse_int(env, "LH_CUDNN_WORKSPACE_LIMIT_MB");
    if (mb < 0) throw std::invalid_argument("LH_CUDNN_WORKSPACE_LIMIT_MB must be >= 0 (MiB), not " + std::string(env));
    return size_t(mb) << 20;
  }
  size_t free_bytes = 0, total_bytes = 0;
  LH_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return total_bytes / kDeviceShareForWorkspace;
}

// The [b, hq, s_q, s_kv] score tensor.
Dims score_dims(const SdpaShape& sh) { return dims4(sh.b, sh.hq, sh.s, sh.kv_len()); }

// The causal mask on the scores: keep (row >= col), else -inf (aligned top-left: query i sees
// keys 0..i of its call).
const CudnnDesc& causal_mask(CudnnGraph& g, const SdpaShape& sh, const CudnnDesc& scores) {
  const Dims ss = score_dims(sh);
  const CudnnDesc& row = g.virt(CUDNN_DATA_INT32, ss);
  const CudnnDesc& col = g.virt(CUDNN_DATA_INT32, ss);
  g.gen_index(scores, 2, row);
  g.gen_index(scores, 3, col);
  const CudnnDesc& keep = g.virt(CUDNN_DATA_BOOLEAN, ss);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, &col, keep);
  const CudnnDesc& masked = g.virt(CUDNN_DATA_FLOAT, ss);
  const CudnnDesc& neg_inf = g.scalar(kNegInf, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, scores, &neg_inf, masked, &keep);
  return masked;
}

std::unique_ptr<CudnnPlan> build_forward(cudnnHandle_t handle, const SdpaShape& sh) {
  CudnnGraph g;
  const auto bf = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const int64_t skv = sh.kv_len();
  const Dims ss = score_dims(sh), rows = dims4(sh.b, sh.hq, sh.s, 1);
  const CudnnDesc& q = g.tensor(kQ, bf, dims4(sh.b, sh.hq, sh.s, sh.d), strides(sh.q));
  const CudnnDesc& kt = g.tensor(kK, bf, dims4(sh.b, sh.hk, sh.d, skv), transposed(sh.k));
  const CudnnDesc& v = g.tensor(kV, bf, dims4(sh.b, sh.hk, skv, sh.d), strides(sh.v));
  const CudnnDesc& o = g.tensor(kO, bf, dims4(sh.b, sh.hq, sh.s, sh.d), strides(sh.o));
  const CudnnDesc& stats = g.tensor(kStats, f32, rows, row_stats_strides(sh));
  const CudnnDesc& scale = g.scalar(kScale, f32);

  const CudnnDesc& s0 = g.virt(f32, ss);
  g.matmul(q, kt, s0);
  const CudnnDesc& s1 = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, s0, &scale, s1);
  const CudnnDesc& s2 = causal_mask(g, sh, s1);
  const CudnnDesc& m = g.virt(f32, rows);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, s2, m);
  const CudnnDesc& centered = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_SUB, f32, s2, &m, centered);
  const CudnnDesc& e = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_EXP, f32, centered, nullptr, e);
  const CudnnDesc& z = g.virt(f32, rows);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
  const CudnnDesc& log_z = g.virt(f32, rows);
  g.pointwise(CUDNN_POINTWISE_LOG, f32, z, nullptr, log_z);
  g.pointwise(CUDNN_POINTWISE_ADD, f32, m, &log_z, stats);
  const CudnnDesc& p = g.virt(bf, ss);  // bf16: both matmul inputs must share a type
  g.pointwise(CUDNN_POINTWISE_DIV, f32, e, &z, p);
  g.matmul(p, v, o);
  return std::make_unique<CudnnPlan>(g.build(handle, "FORWARD"));
}

// dK / dV of every query head, summed over each GQA group when hq > hk.
void grouped_matmul(CudnnGraph& g, const SdpaShape& sh, const CudnnDesc& a, const CudnnDesc& b,
                    const CudnnDesc& out) {
  if (sh.hq == sh.hk) {
    g.matmul(a, b, out);
    return;
  }
  const CudnnDesc& per_head = g.virt(CUDNN_DATA_BFLOAT16, dims4(sh.b, sh.hq, sh.kv_len(), sh.d));
  g.matmul(a, b, per_head);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, per_head, out);
}

std::unique_ptr<CudnnPlan> build_backward(cudnnHandle_t handle, const SdpaShape& sh, bool deterministic) {
  CudnnGraph g;
  const auto bf = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  const int64_t sq = sh.s, skv = sh.kv_len();
  const Dims ss = score_dims(sh), rows = dims4(sh.b, sh.hq, sq, 1);
  const Dims qd = dims4(sh.b, sh.hq, sq, sh.d), kd = dims4(sh.b, sh.hk, skv, sh.d);
  const CudnnDesc& q = g.tensor(kQ, bf, qd, strides(sh.q));
  const CudnnDesc& kt = g.tensor(kK, bf, dims4(sh.b, sh.hk, sh.d, skv), transposed(sh.k));
  const CudnnDesc& vt = g.tensor(kV, bf, dims4(sh.b, sh.hk, sh.d, skv), transposed(sh.v));
  const CudnnDesc& o = g.tensor(kO, bf, qd, strides(sh.o));
  const CudnnDesc& dout = g.tensor(kDO, bf, qd, strides(sh.o));
  const CudnnDesc& stats = g.tensor(kStats, f32, rows, row_stats_strides(sh));
  const CudnnDesc& dq = g.tensor(kDQ, bf, qd, strides(sh.dq_strides()));
  const CudnnDesc& dk = g.tensor(kDK, bf, kd, strides(sh.k));
  const CudnnDesc& dv = g.tensor(kDV, bf, kd, strides(sh.v));
  const CudnnDesc& scale = g.scalar(kScale, f32);
  const CudnnDesc& one = g.scalar(kOne, f32);

  // softmax_sum = rowsum(dO * O): the "D" term of the softmax backward, kept in fp32 scratch.
  const CudnnDesc& d_o = g.virt(f32, qd);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, dout, &o, d_o);
  const CudnnDesc& rowsum = g.virt(f32, rows);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, d_o, rowsum);
  const CudnnDesc& softmax_sum = g.tensor(kSoftmaxSum, f32, rows, CudnnGraph::contiguous_strides(rows));
  g.pointwise(CUDNN_POINTWISE_MUL, f32, rowsum, &one, softmax_sum);

  // P recomputed from the saved log-sum-exp.
  const CudnnDesc& s0 = g.virt(f32, ss);
  g.matmul(q, kt, s0);
  const CudnnDesc& s1 = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, s0, &scale, s1);
  const CudnnDesc& s2 = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_SUB, f32, s1, &stats, s2);
  const CudnnDesc& s3 = causal_mask(g, sh, s2);
  const CudnnDesc& p = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_EXP, f32, s3, nullptr, p);

  // dV = P^T dO
  const Dims ss_t = {sh.hq * sq * skv, sq * skv, 1, skv};  // [b, hq, s_kv, s_q] view strides
  const CudnnDesc& p_t = g.virt(bf, dims4(sh.b, sh.hq, skv, sq), ss_t);
  g.reshape(p, p_t);
  grouped_matmul(g, sh, p_t, dout, dv);

  // dS = P * (dO V^T - softmax_sum) * scale
  const CudnnDesc& dp = g.virt(f32, ss);
  g.matmul(dout, vt, dp);
  const CudnnDesc& dp_c = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_SUB, f32, dp, &softmax_sum, dp_c);
  const CudnnDesc& ds0 = g.virt(f32, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, dp_c, &p, ds0);
  const CudnnDesc& ds = g.virt(bf, ss);
  g.pointwise(CUDNN_POINTWISE_MUL, f32, ds0, &scale, ds);

  // dK = dS^T Q;  dQ = dS K. Deterministic: dQ written directly (cuDNN's workspace then grows
  // with s^2). Otherwise accumulated with fp32 atomics into a
  // zeroed [b, hq, s, d] buffer and converted by an IDENTITY op.
  const CudnnDesc& ds_t = g.virt(bf, dims4(sh.b, sh.hq, skv, sq), ss_t);
  g.reshape(ds, ds_t);
  grouped_matmul(g, sh, ds_t, q, dk);
  const CudnnDesc& k = g.virt(bf, kd, strides(sh.k));
  g.reshape(kt, k);
  if (deterministic) {
    g.matmul(ds, k, dq);
  } else {
    const CudnnDesc& accum = g.tensor(kDQAccum, f32, qd, CudnnGraph::contiguous_strides(qd));
    g.matmul(ds, k, accum);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, f32, accum, nullptr, dq);
  }
  return std::make_unique<CudnnPlan>(g.build(handle, "BACKWARD"));
}

}  // namespace

SdpaShape fused_qkv_shape(int B, int T, int H, int Hkv, int D) {
  const int64_t row = int64_t(H + 2 * Hkv) * D;  // elements per token of the fused qkv
  SdpaShape s;
  s.b = B, s.hq = H, s.hk = Hkv, s.s = T, s.d = D;
  s.q = {T * row, D, row, 1};
  s.k = s.q;
  s.v = s.q;
  s.o = {int64_t(T) * H * D, D, int64_t(H) * D, 1};
  s.stats = {int64_t(H) * T, T, 1, 1};
  return s;
}

SdpaShape kv_group_shape(const SdpaShape& s, int64_t kv_heads) {
  SdpaShape g = s;
  g.hq = s.hq / s.hk * kv_heads;
  g.hk = kv_heads;
  return g;
}

const CudnnPlan& CudnnSdpa::plan(bool backward, const SdpaShape& sh) {
  auto& slot = (backward ? bwd_plans_ : fwd_plans_)[sh];
  if (!slot) {
    slot = backward ? build_backward(handle_, sh, deterministic_) : build_forward(handle_, sh);
    if (verbose_)
      std::fprintf(stderr, "cuDNN %s plan b=%lld hq=%lld hk=%lld s=%lld skv=%lld d=%lld%s: workspace %.1f MiB\n",
                   backward ? "backward" : "forward", (long long)sh.b, (long long)sh.hq, (long long)sh.hk,
                   (long long)sh.s, (long long)sh.kv_len(), (long long)sh.d,
                   backward && !deterministic_ ? " (non-deterministic)" : "", slot->workspace_bytes / 1048576.0);
  }
  return *slot;
}

int64_t CudnnSdpa::kv_heads_per_call(bool backward, const SdpaShape& sh) {
  auto fits = [&](const SdpaShape& g) {
    return (backward ? backward_scratch(g) : 0) + size_t(plan(backward, g).workspace_bytes) <= workspace_limit_;
  };
  for (int64_t kv = sh.hk; kv > 1; --kv)  // the largest group that fits: fewer, fuller calls
    if (sh.hk % kv == 0 && fits(kv_group_shape(sh, kv))) return kv;
  return 1;
}

CudnnSdpa::CudnnSdpa() : workspace_limit_(default_workspace_limit()) { LH_CUDNN_CHECK(cudnnCreate(&handle_)); }

bool CudnnSdpa::use_flash(const SdpaShape& sh) const {
  return flash_backward_ && deterministic_ && sh.s >= flash_min_length_ && flash_backward_supported(sh);
}

// LH_CUDNN_VERBOSE, once per shape: which deterministic backward a call got while ours is enabled.
void CudnnSdpa::report_flash_choice(const SdpaShape& sh, bool taken) {
  if (!verbose_ || !flash_reported_.insert(sh).second) return;
  std::fprintf(stderr, "attention backward b=%lld hq=%lld hk=%lld s=%lld d=%lld: ", (long long)sh.b, (long long)sh.hq,
               (long long)sh.hk, (long long)sh.s, (long long)sh.d);
  if (taken)
    std::fprintf(stderr, "our flash kernel, scratch %.1f MiB\n", flash_backward_workspace(sh) / 1048576.0);
  else if (sh.s < flash_min_length_)
    std::fprintf(stderr, "cuDNN (shorter than %lld, the flash backward's minimum length)\n",
                 (long long)flash_min_length_);
  else
    std::fprintf(stderr, "cuDNN (the flash kernel does not take this shape, device or alignment)\n");
}

CudnnSdpa::~CudnnSdpa() {
  if (workspace_) cudaFree(workspace_);
  if (handle_) cudnnDestroy(handle_);
}

void CudnnSdpa::fill_workspace(void* ws, size_t bytes, cudaStream_t stream) const {
  if (workspace_fill_ >= 0 && bytes) LH_CUDA_CHECK(cudaMemsetAsync(ws, workspace_fill_, bytes, stream));
}

void CudnnSdpa::set_memory_cap(const MemoryCap& cap) {
  cap_ = cap;
  size_t free_bytes = 0, total_bytes = 0;
  cap_.info(&free_bytes, &total_bytes);
  if (!std::getenv("LH_CUDNN_WORKSPACE_LIMIT_MB")) set_workspace_limit(total_bytes / kDeviceShareForWorkspace);
}

void CudnnSdpa::release_workspace() {
  if (workspace_) LH_CUDA_CHECK(cudaFree(workspace_));
  workspace_ = nullptr;
  workspace_bytes_ = 0;
}

void* CudnnSdpa::workspace(size_t bytes) {
  if (bytes > workspace_bytes_) {
    if (workspace_) LH_CUDA_CHECK(cudaFree(workspace_));
    workspace_ = nullptr;
    workspace_bytes_ = 0;
    cap_.check(bytes, "cuDNN attention workspace (LH_CUDNN_WORKSPACE_LIMIT_MB makes its calls smaller)");
    if (cudaMalloc(&workspace_, bytes) != cudaSuccess) {
      cudaGetLastError();
      workspace_ = nullptr;
      workspace_bytes_ = 0;
      throw OutOfMemory("cuDNN attention: cannot allocate its workspace of " + std::to_string(bytes >> 20) +
                               " MiB (out of device memory)" +
                               (deterministic_ ? "; the deterministic backward's workspace grows with seq_len^2: "
                                                 "set training.recompute to auto (or full) to leave it room, "
                                                 "lower LH_CUDNN_WORKSPACE_LIMIT_MB (smaller calls), or set "
                                                 "training.deterministic to false"
                                               : "; set training.recompute to auto (or full) to leave it room"));
    }
    workspace_bytes_ = bytes;
  }
  return workspace_;
}

size_t CudnnSdpa::forward_workspace(const SdpaShape& sh) {
  const int64_t kv = kv_heads_per_call(false, sh);
  return kv < sh.hk ? forward_workspace(kv_group_shape(sh, kv)) : size_t(plan(false, sh).workspace_bytes);
}

size_t CudnnSdpa::softmax_sum_bytes(const SdpaShape& sh) {
  return round_up_scratch(size_t(sizeof(float)) * sh.b * sh.hq * sh.s);
}

size_t CudnnSdpa::backward_scratch(const SdpaShape& sh) const {
  const size_t accum_bytes =
      deterministic_ ? 0 : round_up_scratch(size_t(sizeof(float)) * sh.b * sh.hq * sh.s * sh.d);
  return softmax_sum_bytes(sh) + accum_bytes;
}

size_t CudnnSdpa::backward_workspace(const SdpaShape& sh) {
  if (use_flash(sh)) return flash_backward_workspace(sh);
  if (const int64_t kv = kv_heads_per_call(true, sh); kv < sh.hk) return backward_workspace(kv_group_shape(sh, kv));
  if (const int64_t w = kv_chunk_width(sh)) return kv_chunked_workspace(sh, w);
  return backward_scratch(sh) + size_t(plan(true, sh).workspace_bytes);
}

size_t CudnnSdpa::prepare(const SdpaShape& sh) {
  const size_t bytes = std::max(forward_workspace(sh), backward_workspace(sh));
  workspace(bytes);
  return bytes;
}

// ---- key chunks ----
// cuDNN's deterministic backward needs a workspace that grows with the area of the score matrix:
// about 2 bytes per score of the s x s matrix per head (8 GiB per head at 64K, 18 GiB at 98K,
// 128 GiB at 256K; LH_CUDNN_VERBOSE=1 prints it). Key chunk [k0, k0 + w) against queries [k0, s) is a
// rectangle of at most s x w, causal at its top-left corner, so the same graph (top-left mask)
// computes it; the full-row log-sum-exp and rowsum(dO * O) make its P and dS exact. Its dK and
// dV rows are complete; dQ rows get one partial per chunk that reaches them, rounded to bf16 by
// cuDNN and summed here in fp32, in chunk order: deterministic, one bf16 rounding per chunk more
// than the single call.

SdpaShape CudnnSdpa::kv_chunk_shape(const SdpaShape& sh, int64_t k0, int64_t width) {
  SdpaShape c = sh;
  c.s = sh.s - k0;
  c.skv = width;
  // dQ partials go to a compact [b, s, hq, d] buffer, at row k0 of the whole shape's rows.
  c.dq = {sh.s * sh.hq * sh.d, sh.d, sh.hq * sh.d, 1};
  return c;
}

namespace {
constexpr int64_t kKeyTile = 128;  // chunk widths are multiples of cuDNN's key tile
size_t dq_rows_elems(const SdpaShape& sh) { return size_t(sh.b) * sh.s * sh.hq * sh.d; }
}  // namespace

size_t CudnnSdpa::kv_chunked_workspace(const SdpaShape& sh, int64_t width, bool first_chunk_only) {
  size_t call = 0;  // the largest chunk call's scratch and plan workspace
  for (int64_t k0 = 0; k0 < sh.s && (k0 == 0 || !first_chunk_only); k0 += width) {
    const SdpaShape c = kv_chunk_shape(sh, k0, std::min(width, sh.s - k0));
    call = std::max(call, backward_scratch(c) + size_t(plan(true, c).workspace_bytes));
  }
  return round_up_scratch(dq_rows_elems(sh) * sizeof(__nv_bfloat16)) +
         round_up_scratch(dq_rows_elems(sh) * sizeof(float)) + call;
}

int64_t CudnnSdpa::kv_chunk_width(const SdpaShape& sh) {
  if (!deterministic_ || sh.skv) return 0;
  const auto found = kv_chunk_widths_.find(sh);
  if (found != kv_chunk_widths_.end()) return found->second;
  int64_t width = 0;
  if (backward_scratch(sh) + size_t(plan(true, sh).workspace_bytes) > workspace_limit_) {
    // Halve the width until the largest call (the first chunk: every query row, the full width)
    // fits the limit, or a single key tile is left. Only that chunk's plan is built per trial.
    width = (sh.s + kKeyTile - 1) / kKeyTile * kKeyTile;
    do {
      width = std::max(kKeyTile, (width / 2 + kKeyTile - 1) / kKeyTile * kKeyTile);
    } while (width > kKeyTile && kv_chunked_workspace(sh, width, true) > workspace_limit_);
    if (verbose_)
      std::fprintf(stderr, "cuDNN backward s=%lld over the workspace limit: %lld key chunks of %lld\n",
                   (long long)sh.s, (long long)((sh.s + width - 1) / width), (long long)width);
  }
  kv_chunk_widths_[sh] = width;
  return width;
}

void CudnnSdpa::backward_kv_chunks(const SdpaShape& sh, int64_t width, const __nv_bfloat16* q,
                                   const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* o,
                                   const __nv_bfloat16* dout, const float* stats, __nv_bfloat16* dq,
                                   __nv_bfloat16* dk, __nv_bfloat16* dv, float scale, cudaStream_t stream) {
  const size_t elems = dq_rows_elems(sh), part_bytes = round_up_scratch(elems * sizeof(__nv_bfloat16));
  char* ws = static_cast<char*>(workspace(kv_chunked_workspace(sh, width)));
  auto* part = reinterpret_cast<__nv_bfloat16*>(ws);
  auto* acc = reinterpret_cast<float*>(ws + part_bytes);
  char* call_ws = ws + part_bytes + round_up_scratch(elems * sizeof(float));
  const int64_t row = sh.hq * sh.d, batch = sh.s * row;  // of the dQ partials
  for (int64_t k0 = 0; k0 < sh.s; k0 += width) {
    const SdpaShape c = kv_chunk_shape(sh, k0, std::min(width, sh.s - k0));
    execute_backward(c, q + k0 * sh.q[2], k + k0 * sh.k[2], v + k0 * sh.v[2], o + k0 * sh.o[2],
                     dout + k0 * sh.o[2], stats + k0 * sh.stats[2], part + k0 * row, dk + k0 * sh.k[2],
                     dv + k0 * sh.v[2], scale, call_ws, stream);
    if (k0 == 0) {
      convert_bf16_to_f32(acc, part, elems, stream);  // the first chunk reaches every row
      continue;
    }
    for (int64_t b = 0; b < sh.b; ++b)
      accumulate_f32(acc + b * batch + k0 * row, part + b * batch + k0 * row, size_t(sh.s - k0) * row, stream);
  }
  const Strides4& qs = sh.q;
  convert_f32_to_bf16_strided(dq, acc, int(sh.b), sh.s, int(sh.hq), int(sh.d), qs[0], qs[1], qs[2], stream);
}

// ---- calls ----

void CudnnSdpa::forward(const SdpaShape& sh, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                        __nv_bfloat16* o, float* stats, float scale, cudaStream_t stream) {
  if (const int64_t kv = kv_heads_per_call(false, sh); kv < sh.hk) {  // kv-head groups within the limit
    const SdpaShape g = kv_group_shape(sh, kv);
    const int64_t group = sh.hq / sh.hk;  // query heads per kv head
    for (int64_t i = 0; i < sh.hk; i += kv)
      forward(g, q + i * group * sh.q[1], k + i * sh.k[1], v + i * sh.v[1], o + i * group * sh.o[1],
              stats + i * group * sh.stats[1], scale, stream);
    return;
  }
  const CudnnPlan& plan = this->plan(false, sh);
  LH_CUDNN_CHECK(cudnnSetStream(handle_, stream));
  float neg_inf = -std::numeric_limits<float>::infinity();
  void* ws = workspace(size_t(plan.workspace_bytes));
  fill_workspace(ws, size_t(plan.workspace_bytes), stream);
  cudnn_execute(handle_, plan, {kQ, kK, kV, kO, kStats, kScale, kNegInf},
                {const_cast<__nv_bfloat16*>(q), const_cast<__nv_bfloat16*>(k), const_cast<__nv_bfloat16*>(v), o,
                 stats, &scale, &neg_inf},
                ws);
}

void CudnnSdpa::backward(const SdpaShape& sh, const __nv_bfloat16* q, const __nv_bfloat16* k,
                         const __nv_bfloat16* v, const __nv_bfloat16* o, const __nv_bfloat16* dout,
                         const float* stats, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float scale,
                         cudaStream_t stream) {
  const bool flash = use_flash(sh) && flash_backward_aligned({q, k, v, o, dout, dq, dk, dv});
  if (flash_backward_ && deterministic_) report_flash_choice(sh, flash);
  if (flash) {
    const size_t bytes = flash_backward_workspace(sh);
    void* ws = workspace(bytes);
    fill_workspace(ws, bytes, stream);
    flash_backward(sh, q, k, v, o, dout, stats, dq, dk, dv, scale, ws, stream);
    return;
  }
  if (const int64_t kv = kv_heads_per_call(true, sh); kv < sh.hk) {
    const SdpaShape g = kv_group_shape(sh, kv);
    const int64_t group = sh.hq / sh.hk;  // query heads per kv head
    for (int64_t i = 0; i < sh.hk; i += kv) {
      const int64_t qo = i * group * sh.q[1], ko = i * sh.k[1], vo = i * sh.v[1], oo = i * group * sh.o[1];
      backward(g, q + qo, k + ko, v + vo, o + oo, dout + oo, stats + i * group * sh.stats[1], dq + qo, dk + ko,
               dv + vo, scale, stream);
    }
    return;
  }
  if (const int64_t w = kv_chunk_width(sh)) {
    backward_kv_chunks(sh, w, q, k, v, o, dout, stats, dq, dk, dv, scale, stream);
    return;
  }
  char* ws = static_cast<char*>(workspace(backward_scratch(sh) + size_t(plan(true, sh).workspace_bytes)));
  execute_backward(sh, q, k, v, o, dout, stats, dq, dk, dv, scale, ws, stream);
}

void CudnnSdpa::execute_backward(const SdpaShape& sh, const __nv_bfloat16* q, const __nv_bfloat16* k,
                                 const __nv_bfloat16* v, const __nv_bfloat16* o, const __nv_bfloat16* dout,
                                 const float* stats, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                                 float scale, char* ws, cudaStream_t stream) {
  const CudnnPlan& plan = this->plan(true, sh);
  LH_CUDNN_CHECK(cudnnSetStream(handle_, stream));
  const size_t sum_bytes = softmax_sum_bytes(sh), scratch = backward_scratch(sh);
  const size_t accum_bytes = scratch - sum_bytes;
  fill_workspace(ws, scratch + size_t(plan.workspace_bytes), stream);
  if (accum_bytes) LH_CUDA_CHECK(cudaMemsetAsync(ws + sum_bytes, 0, accum_bytes, stream));
  float neg_inf = -std::numeric_limits<float>::infinity(), one = 1.0f;
  auto cv = [](const __nv_bfloat16* p) { return static_cast<void*>(const_cast<__nv_bfloat16*>(p)); };
  std::vector<int64_t> uids = {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kScale, kOne, kNegInf, kSoftmaxSum};
  std::vector<void*> ptrs = {cv(q), cv(k), cv(v), cv(o), cv(dout), const_cast<float*>(stats), dq, dk, dv, &scale,
                             &one, &neg_inf, ws};
  if (accum_bytes) uids.push_back(kDQAccum), ptrs.push_back(ws + sum_bytes);
  cudnn_execute(handle_, plan, uids, ptrs, ws + scratch);
}

}  // namespace lh::cuda
