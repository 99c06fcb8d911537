#include "packed_weight.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <mutex>
#include <unordered_map>

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

// Sparse buffers whose pointers and indices passed the O(nnz) checks, so later calls skip them: reading every
// index (472 KB for a 3072 x 768 80%-sparse (4,1) weight) on the calling thread while the others wait made a
// seq 128 x 1 forward on 2 threads 11.7 instead of 10.2 ms. An entry
// holds while the same storage (a weak reference: a freed buffer's address cannot pass for a checked one)
// has the same data pointer, size and version; every in-place torch write bumps the version. Inference
// tensors have no version, so they are checked on every call; so are buffers written behind torch's back
// (through `.data` or numpy), which is outside what torch tracks.
class CheckedBuffers {
 public:
  bool contains(const at::Tensor& packed) {
    if (packed.is_inference()) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = entries_.find(packed.data_ptr());
    if (it == entries_.end()) return false;
    const Entry& e = it->second;
    return e.size == packed.numel() && e.version == packed._version() &&
           e.storage.lock().get() == packed.storage().unsafeGetStorageImpl();
  }

  void add(const at::Tensor& packed) {
    if (packed.is_inference()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= kMaxEntries) {
      for (auto it = entries_.begin(); it != entries_.end();)
        it = it->second.storage.expired() ? entries_.erase(it) : std::next(it);
      if (entries_.size() >= kMaxEntries) entries_.clear();
    }
    entries_.insert_or_assign(packed.data_ptr(),
                              Entry{packed.storage().getWeakStorageImpl(), packed.numel(), packed._version()});
  }

 private:
  struct Entry {
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;
    int64_t size;
    int64_t version;
  };
  static constexpr size_t kMaxEntries = 4096;
  std::mutex mutex_;
  std::unordered_map<const void*, Entry> entries_;
};

CheckedBuffers& checked_buffers() {
  static CheckedBuffers buffers;
  return buffers;
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
  p.amx_tiles = nullptr;
  TORCH_CHECK(!(flags & kFlagAmxTiles) || (p.pattern == kDense && p.Kp >= 64), op,
              ": packed weight is corrupt (AMX tiles flagged on a weight that cannot have them)");
  if (p.pattern == kDense) {
    TORCH_CHECK(n_stored == p.Np * p.Kp / 4, op, ": packed weight is corrupt (dense size)");
    p.dense = reinterpret_cast<const int8_t*>(section(104, p.Np * p.Kp, "weights"));
    if (flags & kFlagAmxTiles) {
      const int64_t rows = (p.Np + kAmxBlockRows - 1) / kAmxBlockRows * kAmxBlockRows;
      p.amx_tiles = reinterpret_cast<const int8_t*>(section(112, rows * (p.Kp / 64 * 64), "amx tiles"));
    }
    return;
  }
  const int64_t nptr = p.pattern == k4x1 ? p.Np / 4 + 1 : p.Np + 1;
  p.ptr = reinterpret_cast<const int32_t*>(section(88, 4 * nptr, "pointers"));
  p.idx = reinterpret_cast<const int32_t*>(section(96, 4 * n_stored, "indices"));
  p.wq = reinterpret_cast<const int32_t*>(section(104, 4 * n_stored, "weights"));
  // Pointers and indices are checked before a buffer's first use (and again after any change: CheckedBuffers)
  // so a corrupt buffer can never make a kernel read out of bounds.
  const int64_t per = p.pattern == k4x1 ? 4 : 1;
  TORCH_CHECK(p.ptr[0] == 0 && int64_t(p.ptr[nptr - 1]) * per == n_stored, op, ": packed weight is corrupt (pointers)");
  if (checked_buffers().contains(packed)) return;
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
  checked_buffers().add(packed);
}

}  // namespace fastdistilbert
