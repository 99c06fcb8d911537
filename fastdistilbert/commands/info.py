"""`fastdistilbert info`: the CPU, its features as cpufeature and as our own CPUID see them, and the kernel ISAs."""
from __future__ import annotations

import json
import platform


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="CPU, features, available and active kernel ISAs, versions",
                              description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)


def collect() -> dict:
    import cpufeature
    import torch
    import transformers

    import fastdistilbert
    from fastdistilbert import _extension as ext
    from fastdistilbert.benchmarking.env import cpu_model

    flags = {k: v for k, v in cpufeature.CPUFeature.items() if isinstance(v, bool)}
    return {
        "cpu": ext.cpu_brand() if ext.EXTENSION_AVAILABLE else platform.processor(),
        "cpu_model": cpu_model(),
        "cores": cpufeature.CPUFeature.get("num_physical_cores"),
        "cpufeature": sorted(k for k, v in flags.items() if v and (k.startswith("AVX") or k in ("FMA3", "OS_AVX512"))),
        "cpuid": ext.cpu_features() if ext.EXTENSION_AVAILABLE else None,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "compiled_isas": fastdistilbert.compiled_isas() if ext.EXTENSION_AVAILABLE else [],
        "available_isas": fastdistilbert.available_isas() if ext.EXTENSION_AVAILABLE else [],
        "active_isa": fastdistilbert.active_isa() if ext.EXTENSION_AVAILABLE else None,
        "extension_error": ext.EXTENSION_ERROR,
        "threads": torch.get_num_threads(),
        "versions": {"fastdistilbert": fastdistilbert.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
    }


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    model = f"{info['cpu_model']}, " if info["cpu_model"] else ""
    print(f"CPU:                  {info['cpu']} ({model}{info['cores']} cores, torch uses {info['threads']} threads)")
    print(f"cpufeature reports:   {' '.join(info['cpufeature'])}")
    print("                      (cpufeature has no AVX-VNNI, AMX or BF16 keys; dispatch uses the CPUID line below)")
    print(f"extension CPUID:      {' '.join(info['cpuid'] or ['unavailable: ' + str(info['extension_error'])])}")
    print(f"torch CPU capability: {info['torch_cpu_capability']}")
    print(f"kernel ISAs compiled: {', '.join(info['compiled_isas'])}")
    print(f"kernel ISAs usable:   {', '.join(info['available_isas'])}")
    print(f"active ISA:           {info['active_isa']}  (FASTDISTILBERT_FORCE_ISA=<name> forces one)")
    print("versions:             " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    return 0
