#include "cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace fastdistilbert {
namespace {

void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
}

// Linux (5.16+) gives a process the AMX tile-data state only once it asks (arch_prctl ARCH_REQ_XCOMP_PERM for
// XFEATURE_XTILEDATA); a tile instruction before that raises SIGILL. Asked once, at detection: true when granted.
bool request_amx_tile_data() {
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

uint64_t xgetbv0() {
  uint32_t eax, edx;
  // xgetbv with ecx=0; encoded as bytes so no -mxsave flag is needed for this TU.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  uint32_t r[4];
  cpuid(0, 0, r);
  const uint32_t max_leaf = r[0];
  char vendor[13];
  std::memcpy(vendor + 0, &r[1], 4);
  std::memcpy(vendor + 4, &r[3], 4);
  std::memcpy(vendor + 8, &r[2], 4);
  vendor[12] = 0;
  f.vendor = vendor;

  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49];
    for (uint32_t i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(brand + 16 * i, r, 16);
    }
    brand[48] = 0;
    f.brand = brand;
    // trim spaces
    auto b = f.brand.find_first_not_of(' ');
    auto e = f.brand.find_last_not_of(' ');
    f.brand = b == std::string::npos ? "" : f.brand.substr(b, e - b + 1);
  }

  if (max_leaf < 1) return f;
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1;
  const bool avx = (r[2] >> 28) & 1;
  f.fma = (r[2] >> 12) & 1;
  if (osxsave && avx) {
    const uint64_t xcr0 = xgetbv0();
    f.os_avx = (xcr0 & 0x6) == 0x6;
    f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;
    f.os_amx = (xcr0 & 0x60000) == 0x60000;  // XTILECFG | XTILEDATA
  }
  if (max_leaf < 7) return f;
  cpuid(7, 0, r);
  const uint32_t ebx = r[1], ecx = r[2], edx = r[3];
  f.avx2 = f.os_avx && ((ebx >> 5) & 1);
  f.fma = f.os_avx && f.fma;
  f.avx512f = f.os_avx512 && ((ebx >> 16) & 1);
  f.avx512dq = f.os_avx512 && ((ebx >> 17) & 1);
  f.avx512bw = f.os_avx512 && ((ebx >> 30) & 1);
  f.avx512vl = f.os_avx512 && ((ebx >> 31) & 1);
  f.avx512vnni = f.os_avx512 && ((ecx >> 11) & 1);
  f.amx_tile = f.os_amx && ((edx >> 24) & 1) && request_amx_tile_data();
  f.amx_int8 = f.amx_tile && ((edx >> 25) & 1);
  cpuid(7, 1, r);
  f.avxvnni = f.os_avx && ((r[0] >> 4) & 1);
  f.avx512bf16 = f.os_avx512 && ((r[0] >> 5) & 1);
  return f;
}

// Clears the flags FASTDISTILBERT_HIDE_CPU_FEATURES names.
void hide_features(CpuFeatures& f) {
  const char* hidden = std::getenv("FASTDISTILBERT_HIDE_CPU_FEATURES");
  if (hidden == nullptr) return;
  std::stringstream names(hidden);
  for (std::string name; std::getline(names, name, ',');) {
    if (name.empty()) continue;
    bool known = false;
    for (const auto& [flag, member] : cpu_feature_flags())
      if (name == flag) f.*member = false, known = true;
    if (known) continue;
    std::string all;
    for (const auto& entry : cpu_feature_flags()) all += (all.empty() ? "" : ", ") + std::string(entry.first);
    throw std::runtime_error("fastdistilbert: FASTDISTILBERT_HIDE_CPU_FEATURES names an unknown feature '" + name +
                             "' (known: " + all + ")");
  }
}

CpuFeatures detect_visible() {
  CpuFeatures f = detect();
  hide_features(f);
  return f;
}

}  // namespace

const std::vector<std::pair<const char*, bool CpuFeatures::*>>& cpu_feature_flags() {
  static const std::vector<std::pair<const char*, bool CpuFeatures::*>> flags = {
      {"avx2", &CpuFeatures::avx2},
      {"fma", &CpuFeatures::fma},
      {"avx_vnni", &CpuFeatures::avxvnni},
      {"avx512f", &CpuFeatures::avx512f},
      {"avx512bw", &CpuFeatures::avx512bw},
      {"avx512vl", &CpuFeatures::avx512vl},
      {"avx512dq", &CpuFeatures::avx512dq},
      {"avx512_vnni", &CpuFeatures::avx512vnni},
      {"avx512_bf16", &CpuFeatures::avx512bf16},
      {"amx_tile", &CpuFeatures::amx_tile},
      {"amx_int8", &CpuFeatures::amx_int8},
  };
  return flags;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect_visible();
  return features;
}

}  // namespace fastdistilbert
