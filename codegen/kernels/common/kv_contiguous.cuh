// Where key rows live when K/V are contiguous per sequence: row `key` of this kv head is at
// k + key * k_tok. The family sets the base pointers (see its make_kv_source / sequence).
// Needs: prelude.cuh.

// Contiguous KV rows of one kv head, with explicit strides.
struct KvSource {
  const plx_e16* k;  // already offset to this sequence and kv head
  const plx_e16* v;
  long long k_tok, v_tok;
  struct Pages {};  // nothing to look up ahead
  __device__ __forceinline__ void fetch(Pages&, int, int) const {}
  __device__ __forceinline__ void rows(const Pages&, int, int key, const plx_e16*& kr,
                                       const plx_e16*& vr) const {
    kr = k + key * k_tok;
    vr = v + key * v_tok;
  }
};
