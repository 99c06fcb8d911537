// Scalar reference kernels: the exactness oracle for every other ISA. No ISA flags.
#include "kernels.h"

namespace fastdistilbert {
namespace ref {

static int32_t dot_u8s8(const uint8_t* a, const int8_t* b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t(a[i]) * int32_t(b[i]);
  return acc;
}

const KernelTable kTable = {"ref", dot_u8s8};

}  // namespace ref
}  // namespace fastdistilbert
