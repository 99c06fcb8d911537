#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "cpu_features.h"

namespace fastdistilbert {
namespace {

struct Variant {
  const KernelTable* table;
  bool (*runnable)(const CpuFeatures&);
};

bool avx512_vnni(const CpuFeatures& f) {
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni && f.avx2 && f.fma;
}

// Ordered fastest first; the first runnable one is the default.
const Variant kVariants[] = {
    // avx512vnni with the dense GEMMs on AMX-INT8 tiles.
    {&avx512amx::kTable, [](const CpuFeatures& f) { return avx512_vnni(f) && f.amx_tile && f.amx_int8; }},
    {&avx512vnni::kTable, avx512_vnni},
    // The 256-bit kernels of avxvnni with the EVEX vpdpbusd: the same code path on CPUs without AVX-VNNI.
    {&avx512vnni_256::kTable, avx512_vnni},
    {&avxvnni::kTable, [](const CpuFeatures& f) { return f.avxvnni && f.avx2 && f.fma; }},
    {&avx2::kTable, [](const CpuFeatures& f) { return f.avx2 && f.fma; }},
    {&ref::kTable, [](const CpuFeatures&) { return true; }},
};

std::string known_names() {
  std::string s;
  for (const auto& v : kVariants) s += (s.empty() ? "" : ", ") + std::string(v.table->name);
  return s;
}

const KernelTable* lookup(const std::string& name) {
  for (const auto& v : kVariants) {
    if (name == v.table->name) {
      if (!v.runnable(cpu_features())) {
        throw std::runtime_error("fastdistilbert: ISA '" + name +
                                 "' is not supported by this CPU (available: " +
                                 [] {
                                   std::string s;
                                   for (auto& n : available_isas()) s += (s.empty() ? "" : ", ") + n;
                                   return s;
                                 }() +
                                 ")");
      }
      return v.table;
    }
  }
  throw std::runtime_error("fastdistilbert: unknown ISA '" + name + "' (known: " + known_names() + ")");
}

const KernelTable* automatic() {
  const char* forced = std::getenv("FASTDISTILBERT_FORCE_ISA");
  if (forced && *forced && std::string(forced) != "auto") return lookup(forced);
  for (const auto& v : kVariants)
    if (v.runnable(cpu_features())) return v.table;
  return &ref::kTable;
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const auto& v : kVariants)
    if (v.runnable(cpu_features())) out.push_back(v.table->name);
  return out;
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const auto& v : kVariants) out.push_back(v.table->name);
  return out;
}

const KernelTable& active_kernels() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  if (!t) {
    t = automatic();  // throws on a bad FASTDISTILBERT_FORCE_ISA; nothing is cached then
    g_active.store(t, std::memory_order_release);
  }
  return *t;
}

void set_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    g_active.store(nullptr, std::memory_order_release);
    active_kernels();
    return;
  }
  g_active.store(lookup(name), std::memory_order_release);
}

const KernelTable& kernels_for(const std::string& name) { return *lookup(name); }

}  // namespace fastdistilbert
