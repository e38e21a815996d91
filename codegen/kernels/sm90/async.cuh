// Hopper (sm_90a) asynchronous primitives as inline PTX, for the warp-specialized families:
// mbarriers (arrive / expect-tx / parity wait), TMA tile loads into shared memory, the
// fences between the generic and async proxies, and register reallocation between producer
// and consumer warpgroups. Compile for sm_90a.
// Needs: prelude.cuh (plx_u32, plx_smem_addr).

// ---- sm90: tensor maps, mbarriers, TMA ---------------------------------------------------
// A CUtensorMap (cuTensorMapEncodeTiled on the host), passed by value as a __grid_constant__
// kernel parameter so the TMA unit reads it from parameter memory. Generated kernels get it
// from the launch ABI (kernel_abi.h); the standalone probes (tests/runtime) from here.
#ifndef PARALLAX_KERNEL_ABI_H_
struct __align__(64) PlxTensorMap {
  unsigned long long opaque[16];
};
#endif
typedef unsigned long long plx_u64;

__device__ __forceinline__ void plx_mbar_init(plx_u64* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(plx_smem_addr(bar)), "r"(arrivals) : "memory");
}
// Makes the initialised barriers visible to the async proxy (TMA) and the other threads.
__device__ __forceinline__ void plx_mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
// One arrival that also announces `bytes` of TMA traffic the phase must wait for.
__device__ __forceinline__ void plx_mbar_arrive_expect_tx(plx_u64* bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
               :: "r"(plx_smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void plx_mbar_arrive(plx_u64* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(plx_smem_addr(bar)) : "memory");
}
__device__ __forceinline__ bool plx_mbar_try_wait(plx_u64* bar, int parity) {
  plx_u32 done;
  asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
               : "=r"(done) : "r"(plx_smem_addr(bar)), "r"(parity) : "memory");
  return done != 0;
}
// Blocks until the barrier's phase with this parity has completed.
__device__ __forceinline__ void plx_mbar_wait(plx_u64* bar, int parity) {
  while (!plx_mbar_try_wait(bar, parity)) {
  }
}

// An arrival on `bar` once every cp.async this thread issued so far has landed, without the
// pending count going up first (noinc): the barrier's expected count must include these
// arrivals -- a producer's threads each end a ring slot's copies with one, nobody waits on
// its own copies.
__device__ __forceinline__ void plx_cp_async_mbar_arrive_noinc(plx_u64* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(plx_smem_addr(bar)) : "memory");
}

// TMA: the box at (c0 = innermost coordinate, c1) of `map` into shared memory at `dst`
// (1024-byte aligned for the 128-byte swizzle); completion counts `bar`'s tx bytes down.
__device__ __forceinline__ void plx_tma_load_2d(void* dst, const PlxTensorMap* map, plx_u64* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
      :: "r"(plx_smem_addr(dst)), "l"(reinterpret_cast<plx_u64>(map)), "r"(plx_smem_addr(bar)), "r"(c0), "r"(c1)
      : "memory");
}
// The 4-D box at (c0 innermost, c1, c2, c3): the prefill maps {D, heads, tokens, batch}.
__device__ __forceinline__ void plx_tma_load_4d(void* dst, const PlxTensorMap* map, plx_u64* bar, int c0, int c1,
                                                int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];"
      :: "r"(plx_smem_addr(dst)), "l"(reinterpret_cast<plx_u64>(map)), "r"(plx_smem_addr(bar)), "r"(c0), "r"(c1),
         "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void plx_tma_prefetch_map(const PlxTensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" :: "l"(reinterpret_cast<plx_u64>(map)) : "memory");
}
// Orders this thread's generic-proxy shared-memory writes before async-proxy reads of them
// (wgmma operands written with plain stores, TMA stores).
__device__ __forceinline__ void plx_fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// Named barriers (ids 1..15; 0 is __syncthreads) over `threads` threads: sync waits for the
// count, arrive counts without waiting -- one warpgroup hands a turn to another.
__device__ __forceinline__ void plx_named_bar_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void plx_named_bar_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(threads) : "memory");
}

// Register reallocation between warpgroups (setmaxnreg): producers give registers up,
// consumers take them. N is a multiple of 8 in 24..256, the same for the whole warpgroup.
template <int N>
__device__ __forceinline__ void plx_regs_release() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(N));
}
template <int N>
__device__ __forceinline__ void plx_regs_acquire() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(N));
}

// ---- sm90: bulk copies and thread-block clusters ----------------------------------------
// A bulk copy of `bytes` contiguous bytes (a multiple of 16, both addresses 16-byte aligned)
// from global memory into this CTA's shared memory; completion counts `bar`'s tx bytes down.
// No tensor map: the decode family copies whole K/V rows whose addresses it computes.
__device__ __forceinline__ void plx_bulk_load(void* dst, const void* src, int bytes, plx_u64* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               :: "r"(plx_smem_addr(dst)), "l"(src), "r"(bytes), "r"(plx_smem_addr(bar)) : "memory");
}

// This CTA's rank in its cluster and the cluster's size (1 and 0 without a cluster launch).
__device__ __forceinline__ plx_u32 plx_cluster_rank() {
  plx_u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
// Every thread of every CTA of the cluster arrives, then waits for the rest: release/acquire,
// so shared-memory writes before it are visible to peers' distributed reads after it.
__device__ __forceinline__ void plx_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// The two halves of that barrier, apart: arrive early without ordering anything (relaxed),
// wait later for everyone's arrival. An mbarrier initialised (and fenced with
// plx_mbar_init_fence) before the arrive may be used by peers after the wait.
__device__ __forceinline__ void plx_cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void plx_cluster_wait() {
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
}
// The shared::cluster address of `p` (an address in this CTA's shared memory) in CTA `rank`.
__device__ __forceinline__ plx_u32 plx_cluster_addr(const void* p, plx_u32 rank) {
  plx_u32 r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(plx_smem_addr(p)), "r"(rank));
  return r;
}
// A float from distributed shared memory (an address from plx_cluster_addr).
__device__ __forceinline__ float plx_ld_cluster_f32(plx_u32 addr) {
  float x;
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(x) : "r"(addr) : "memory");
  return x;
}
// A bulk copy of `bytes` (a multiple of 16, both ends 16-byte aligned) from this CTA's shared
// memory to a peer's (`dst` and `bar` are shared::cluster addresses from plx_cluster_addr),
// completing on the peer's mbarrier. The issuing thread's bulk group (commit_group, then
// wait_group.read) tells when the source may be reused.
__device__ __forceinline__ void plx_bulk_copy_to_cluster(plx_u32 dst, const void* src, int bytes, plx_u32 bar) {
  asm volatile("cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               :: "r"(dst), "r"(plx_smem_addr(src)), "r"(bytes), "r"(bar) : "memory");
}
