// CPU feature detection with CPUID + XGETBV. Compiled without ISA flags.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace fastdistilbert {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avxvnni = false;       // AVX-VNNI (VEX-encoded vpdpbusd on ymm)
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
  bool amx_tile = false;       // also: the OS enables the tile state and granted this process its use
  bool amx_int8 = false;
  bool os_avx = false;        // XCR0 has XMM|YMM state enabled
  bool os_avx512 = false;     // XCR0 has opmask|ZMM_Hi256|Hi16_ZMM state enabled
  bool os_amx = false;        // XCR0 has XTILECFG|XTILEDATA state enabled
  std::string vendor;
  std::string brand;
};

// Every ISA feature flag by its name (the names Linux's /proc/cpuinfo uses), in a fixed order.
const std::vector<std::pair<const char*, bool CpuFeatures::*>>& cpu_feature_flags();

// Detected once, cached; thread-safe (function-local static). FASTDISTILBERT_HIDE_CPU_FEATURES (a comma-separated
// list of cpu_feature_flags() names) clears those flags first, so that the dispatcher behaves as on an older CPU:
// the fallback variants and the errors of a CPU lacking an ISA can be exercised on any machine. Throws, naming
// the known features, on an unknown name.
const CpuFeatures& cpu_features();

}  // namespace fastdistilbert
