// Runtime choice of the kernel variant: an ordered list, first runnable wins, result cached.
#pragma once
#include <string>
#include <vector>

#include "kernels.h"

namespace fastdistilbert {

// Names of the variants this CPU (and OS) can run, fastest first. "ref" is always last.
std::vector<std::string> available_isas();
// Every variant compiled into the extension, fastest first.
std::vector<std::string> compiled_isas();
// The table in use. Honours FASTDISTILBERT_FORCE_ISA on first call; throws if it names a variant
// that does not exist or that this CPU cannot run.
const KernelTable& active_kernels();
// Forces a variant for the rest of the process ("" or "auto" returns to automatic choice).
void set_isa(const std::string& name);
// Table of a named variant (for tests comparing variants); throws if unavailable.
const KernelTable& kernels_for(const std::string& name);

}  // namespace fastdistilbert
