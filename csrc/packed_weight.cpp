#include "packed_weight.h"

#include <algorithm>
#include <cstring>

namespace fastdistilbert {
namespace {

uint32_t fnv1a(const uint8_t* data, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ data[i]) * 16777619u;
  return h;
}

template <typename T>
T field(const uint8_t* base, int64_t offset) {
  T v;
  std::memcpy(&v, base + offset, sizeof(T));
  return v;
}

}  // namespace

void parse_packed_weight(const at::Tensor& packed, GemmParams& p, const char* op) {
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.dim() == 1,
              op, ": packed weight must be a 1-D uint8 tensor from fastdistilbert.ops.pack_weight, got ",
              packed.scalar_type(), " with shape ", packed.sizes());
  TORCH_CHECK(packed.is_contiguous(), op, ": packed weight must be contiguous");
  const int64_t size = packed.numel();
  TORCH_CHECK(size >= kPackedHeaderBytes, op, ": packed weight is corrupt (", size, " bytes, shorter than its header)");
  const uint8_t* b = packed.data_ptr<uint8_t>();
  TORCH_CHECK(std::memcmp(b, "FDBWPACK", 8) == 0, op, ": packed weight is corrupt (bad magic; not a packed weight?)");
  const uint32_t version = field<uint32_t>(b, 8);
  TORCH_CHECK(version == kPackedVersion, op, ": packed weight has format version ", version,
              " but this build reads version ", kPackedVersion, "; re-pack the weight");
  TORCH_CHECK(field<uint32_t>(b, 124) == fnv1a(b, 124), op, ": packed weight is corrupt (header checksum mismatch)");
  p.pattern = int32_t(field<uint32_t>(b, 12));
  p.N = field<int64_t>(b, 16);
  p.K = field<int64_t>(b, 24);
  const int64_t n_stored = field<int64_t>(b, 40);
  const int64_t flags = field<int64_t>(b, 48);
  TORCH_CHECK(p.pattern >= kDense && p.pattern <= k1x4, op, ": packed weight is corrupt (unknown pattern ", p.pattern, ")");
  TORCH_CHECK(p.N > 0 && p.K > 0 && n_stored >= 0, op, ": packed weight is corrupt (bad shape)");
  TORCH_CHECK(field<int64_t>(b, 56) == size, op, ": packed weight is corrupt (header says ", field<int64_t>(b, 56),
              " bytes, buffer has ", size, ")");
  p.Np = (p.N + 3) / 4 * 4;
  p.Kp = (p.K + 3) / 4 * 4;
  auto section = [&](int64_t header_offset, int64_t bytes, const char* name) -> const uint8_t* {
    const int64_t off = field<int64_t>(b, header_offset);
    TORCH_CHECK(off >= kPackedHeaderBytes && off % 64 == 0 && bytes >= 0 && off + bytes <= size, op,
                ": packed weight is corrupt (section ", name, " out of bounds)");
    return b + off;
  };
  p.w_scale = reinterpret_cast<const float*>(section(64, 4 * p.Np, "scale"));
  p.bias = (flags & 1) ? reinterpret_cast<const float*>(section(72, 4 * p.Np, "bias")) : nullptr;
  p.wsum = reinterpret_cast<const int32_t*>(section(80, 4 * p.Np, "wsum"));
  p.dense = nullptr;
  p.ptr = p.idx = p.wq = nullptr;
  if (p.pattern == kDense) {
    TORCH_CHECK(n_stored == p.Np * p.Kp / 4, op, ": packed weight is corrupt (dense size)");
    p.dense = reinterpret_cast<const int8_t*>(section(104, p.Np * p.Kp, "weights"));
    return;
  }
  const int64_t nptr = p.pattern == k4x1 ? p.Np / 4 + 1 : p.Np + 1;
  p.ptr = reinterpret_cast<const int32_t*>(section(88, 4 * nptr, "pointers"));
  p.idx = reinterpret_cast<const int32_t*>(section(96, 4 * n_stored, "indices"));
  p.wq = reinterpret_cast<const int32_t*>(section(104, 4 * n_stored, "weights"));
  // Indices are checked on every call (O(nnz), negligible next to the O(nnz * T) product) so a
  // corrupt buffer can never make a kernel read out of bounds.
  const int64_t per = p.pattern == k4x1 ? 4 : 1;
  TORCH_CHECK(p.ptr[0] == 0 && int64_t(p.ptr[nptr - 1]) * per == n_stored, op, ": packed weight is corrupt (pointers)");
  // Branch-free reductions (they vectorize): a few microseconds even for the largest weights.
  int32_t descending = 0;
  for (int64_t i = 0; i + 1 < nptr; ++i) descending |= int32_t(p.ptr[i] > p.ptr[i + 1]);
  TORCH_CHECK(!descending, op, ": packed weight is corrupt (pointers not monotonic)");
  const int32_t limit = int32_t(p.pattern == k4x1 ? p.K : p.Kp / 4);
  int32_t lo = 0, hi = 0;
  for (int64_t i = 0; i < n_stored; ++i) {
    lo = std::min(lo, p.idx[i]);
    hi = std::max(hi, p.idx[i]);
  }
  TORCH_CHECK(lo >= 0 && (n_stored == 0 || hi < limit), op, ": packed weight is corrupt (index out of range)");
}

}  // namespace fastdistilbert
