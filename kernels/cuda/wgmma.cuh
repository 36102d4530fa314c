// Hopper (sm_90a) building blocks for tensor-core kernels: warpgroup matrix multiplies
// (wgmma.mma_async), their shared-memory descriptors, the 128-byte swizzle those read, and
// cp.async copies into it. Only what the flash-attention backward uses; shapes are the PTX ones.
//
// Layout: a bf16 tile of R rows x 128 columns lives in shared memory as two "panels" (columns
// 0-63 and 64-127), each R rows of 128 bytes, 1024-byte aligned. Inside a panel the 16-byte chunk
// c of row r sits at chunk position c ^ (r % 8) (the 128-byte swizzle), so that the 8 rows a
// tensor-core read or a warp's store touches fall in distinct banks. One panel of 8 rows is a
// "swizzle atom". The same panel serves as either operand form:
//   K-major (the reduction runs along the 128-byte rows): atoms of 8 rows stacked every 1024 bytes
//     along M/N; a k16 step is 32 bytes further along the row.
//   MN-major (the reduction runs down the rows; M/N along the row): atoms of 8 rows stacked every
//     1024 bytes along K (the "stride" offset), the next 64 columns one panel further (the
//     "leading" offset); a k16 step is 16 rows = 2048 bytes further.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace lh::cuda::wgmma {

constexpr int kPanelCols = 64;      // bf16 columns per 128-byte panel row
constexpr uint32_t kRowBytes = 128;
constexpr uint32_t kAtomBytes = 1024;  // 8 rows

// Byte offset of 16-byte chunk `chunk` (0-7) of row `row` inside a panel.
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return uint32_t(row) * kRowBytes + (uint32_t((chunk ^ row) & 7) << 4);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// The 64-bit matrix descriptor: start address, leading and stride byte offsets (all in units of
// 16 bytes), 128-byte swizzle. K-major operands ignore the leading offset (PTX: "assumed 1").
__device__ __forceinline__ uint64_t descriptor(uint32_t addr, uint32_t leading_bytes, uint32_t stride_bytes) {
  constexpr uint64_t kSwizzle128 = uint64_t(1) << 62;
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((leading_bytes & 0x3FFFF) >> 4) << 16) |
         (uint64_t((stride_bytes & 0x3FFFF) >> 4) << 32) | kSwizzle128;
}
// K-major operand starting at row 0 of `panel` (8-row atoms every 1024 bytes); its k16 step k
// (0-3 within the panel) is advance(k_major(panel), 32 * k).
__device__ __forceinline__ uint64_t k_major(uint32_t panel) { return descriptor(panel, 16, kAtomBytes); }
// MN-major operand starting at `panel`, whose next 64 M/N columns are `panel_bytes` further; its
// k16 step k is advance(mn_major(...), k * 16 * kRowBytes).
__device__ __forceinline__ uint64_t mn_major(uint32_t panel, uint32_t panel_bytes) {
  return descriptor(panel, panel_bytes, kAtomBytes);
}
// The descriptor of the same operand `bytes` further on. Only the start address changes, in the
// low 14 bits of the low word (16-byte units); shared memory ends below the 256 KB those span, so
// the add never carries into the other fields. A loop of k16 steps costs one add per product this
// way, where building each descriptor from its address cost a dozen instructions. `bytes` is a
// multiple of 16, like every operand address.
__device__ __forceinline__ uint64_t advance(uint64_t desc, uint32_t bytes) {
  const uint32_t lo = uint32_t(desc) + (bytes >> 4), hi = uint32_t(desc >> 32);
  return (uint64_t(hi) << 32) | lo;
}

__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending> __device__ __forceinline__ void wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Orders this thread's generic-proxy shared-memory writes (plain stores, cp.async) before later
// async-proxy reads (wgmma operands, bulk copies). Needed before the barrier that publishes a tile.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Keeps the compiler from moving accumulator accesses across an asynchronous multiply.
template <int N> __device__ __forceinline__ void fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// Keeps the compiler from reusing an A operand's registers while a multiply may still read them.
template <int N> __device__ __forceinline__ void fence_operands(uint32_t (&a)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(a[i])::"memory");
}

// Accumulator layout of an m64nN result (the mma.sync m16n8 layout, warp w of the warpgroup
// taking rows 16w..16w+15): element 4j + e of a thread (lane l) is row 16w + l/4 + 8*(e/2),
// column 8j + 2*(l%4) + e%2.

// Operand lists of the wrappers below: the accumulator registers of an m64n64 (32 floats per
// thread) or m64n128 (64) result as asm text ("{%0, ..., %31}") and as in-out operands.
#define LH_WGMMA_REGS32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define LH_WGMMA_REGS64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define LH_WGMMA_ACC8(d) "+f"((d)[0]), "+f"((d)[1]), "+f"((d)[2]), "+f"((d)[3]), "+f"((d)[4]), "+f"((d)[5]), \
  "+f"((d)[6]), "+f"((d)[7])
#define LH_WGMMA_ACC32(d) LH_WGMMA_ACC8(d), LH_WGMMA_ACC8((d) + 8), LH_WGMMA_ACC8((d) + 16), LH_WGMMA_ACC8((d) + 24)
#define LH_WGMMA_ACC64(d) LH_WGMMA_ACC32(d), LH_WGMMA_ACC32((d) + 32)

// d[32] (+)= A (m64 x k16, shared memory) * B (k16 x n64, shared memory).
template <int kTransA, int kTransB>
__device__ __forceinline__ void mma_ss_n64(float (&d)[32], uint64_t a, uint64_t b, bool accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LH_WGMMA_REGS32 ", %32, %33, p, 1, 1, %35, %36;\n}\n"
               : LH_WGMMA_ACC32(d)
               : "l"(a), "l"(b), "r"(int(accumulate)), "n"(kTransA), "n"(kTransB));
}

// d[64] += A (m64 x k16, registers) * B (k16 x n128, shared memory). Warp w holds rows 16w..16w+15
// of A in four registers of bf16 pairs (lane l): a[0] row 16w + l/4, columns 2*(l%4) + 0, 1; a[1]
// the same columns 8 rows further down; a[2] and a[3] those of a[0] and a[1], 8 columns further
// on. That is the accumulator layout: an m64nN result's elements 8k..8k+7, packed in pairs, are
// the A operand of its k16 slice k. (A register operand is always K-major: only B can be
// transposed.)
template <int kTransB>
__device__ __forceinline__ void mma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " LH_WGMMA_REGS64
               ", {%64, %65, %66, %67}, %68, p, 1, 1, %69;\n}\n"
               : LH_WGMMA_ACC64(d)
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(kTransB));
}
#undef LH_WGMMA_REGS32
#undef LH_WGMMA_REGS64
#undef LH_WGMMA_ACC8
#undef LH_WGMMA_ACC32
#undef LH_WGMMA_ACC64

// Stores four 8x8 bf16 matrices of a warp in one instruction: register k of every lane holds its
// pair of matrix k (row lane / 4, columns 2 * (lane % 4) + 0, 1: an accumulator block's layout),
// and lane l gives the shared address of row l % 8 of matrix l / 8 (16 contiguous bytes).
__device__ __forceinline__ void stmatrix_x4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
}

// 8-byte shared-memory load and store by shared address (a generic pointer into shared memory
// would cost the compiler's generic-to-shared checks on every access).
__device__ __forceinline__ float2 ld_shared_f2(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
  return v;
}
__device__ __forceinline__ void st_shared_f2(uint32_t addr, float x, float y) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y) : "memory");
}

// 16-byte global -> shared copy that bypasses L1; zero-fills when `valid` is false.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Bulk copies from shared to global memory (the TMA unit, no tensor map: `bytes` contiguous bytes,
// 16-byte aligned), in bulk groups that the issuing thread commits and waits for. Reading global
// memory that another block wrote through them needs fence_proxy_async first.
__device__ __forceinline__ void bulk_store(void* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst), "r"(src), "r"(bytes)
               : "memory");
}
// dst[i] += src[i] for `bytes` / 4 floats, each add done once at the L2.
__device__ __forceinline__ void bulk_reduce_add(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst), "r"(src),
               "r"(bytes)
               : "memory");
}
// Starts fetching `bytes` (a multiple of 16) at `src` (16-byte aligned) into the L2 cache, without
// waiting.
__device__ __forceinline__ void bulk_prefetch_l2(const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Waits until at most kPending of the committed bulk groups (the newest) are unfinished; the
// finished ones' global writes included.
template <int kPending> __device__ __forceinline__ void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(kPending) : "memory");
}
// Orders generic-proxy memory accesses against async-proxy ones (bulk copies), all state spaces.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async;\n" ::: "memory"); }

}  // namespace lh::cuda::wgmma
