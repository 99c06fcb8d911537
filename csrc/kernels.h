// The interface every ISA variant implements. Torch-free: kernel translation units include only
// this header, <cstdint>/<cstddef> and <immintrin.h>, so that nothing inline (STL, torch) is ever
// compiled with ISA flags (a shared inline instantiated with AVX-512 flags could be picked by the
// linker for all callers and SIGILL on CPUs without it).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastdistilbert {

struct KernelTable {
  const char* name;
  // Exactness probe: int32 sum of u8 x s8 products over n elements.
  int32_t (*dot_u8s8)(const uint8_t* a, const int8_t* b, int64_t n);
};

// One table per ISA, each defined in its own translation unit (kernels_<isa>.cpp).
namespace ref { extern const KernelTable kTable; }
namespace avx2 { extern const KernelTable kTable; }
namespace avxvnni { extern const KernelTable kTable; }
namespace avx512vnni { extern const KernelTable kTable; }

}  // namespace fastdistilbert
