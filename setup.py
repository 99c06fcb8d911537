"""Builds the C++ extension `fastdistilbert._C`.

Each kernel translation unit is compiled with its own ISA flags and nothing else gets them:
shared code (torch, the STL, the dispatcher) is compiled for baseline x86-64 so that importing
the extension can never raise SIGILL on a CPU that lacks AVX-512. Never -march=native.
"""
import os
import shutil
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

CSRC = Path("csrc")

# Per-translation-unit ISA flags, keyed by the file name's suffix: `csrc/<anything>_<isa>.cpp`
# is compiled with that ISA's flags and nothing else is. Such files must stay torch- and STL-free.
AVX512_VNNI = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c"]
ISA_FLAGS = {
    "_ref.cpp": [],
    "_avx2.cpp": ["-mavx2", "-mfma", "-mf16c"],
    "_avxvnni.cpp": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"],
    "_avx512vnni.cpp": AVX512_VNNI,
    # The 256-bit VNNI kernels again, with the EVEX vpdpbusd (runs where AVX-VNNI is missing).
    "_avx512vl256.cpp": AVX512_VNNI,
    # avx512vnni with the dense GEMMs on AMX-INT8 tiles.
    "_avx512amx.cpp": AVX512_VNNI + ["-mamx-tile", "-mamx-int8"],
}


def isa_flags(source: str) -> list[str]:
    for suffix, flags in ISA_FLAGS.items():
        if source.endswith(suffix):
            return flags
    return []

DEBUG = os.environ.get("FASTDISTILBERT_DEBUG_BUILD") == "1"
SANITIZE = os.environ.get("FASTDISTILBERT_SANITIZE", "")  # e.g. "address,undefined"

# -ffp-contract=off: no variant may fuse a*b+c into an FMA on its own, so the fp32 epilogues
# of every ISA round exactly like the scalar reference.
common = ["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-Wall", "-Wno-unused-function"]
link = ["-fopenmp"]
if DEBUG:
    common = ["-O1", "-g", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-fno-omit-frame-pointer"]
if SANITIZE:
    common += [f"-fsanitize={SANITIZE}", "-fno-sanitize-recover=all"]
    link += [f"-fsanitize={SANITIZE}"]


class IsaBuildExtension(BuildExtension):
    """BuildExtension that appends each kernel file's own ISA flags when that file is compiled."""

    def build_extension(self, ext):
        wrapped = self.compiler._compile

        def compile_with_isa_flags(obj, src, ext_, cc_args, extra_postargs, pp_opts):
            flags = isa_flags(Path(src).name)
            if flags:
                extra_postargs = dict(extra_postargs) if isinstance(extra_postargs, dict) else list(extra_postargs)
                if isinstance(extra_postargs, dict):
                    extra_postargs["cxx"] = list(extra_postargs["cxx"]) + flags
                else:
                    extra_postargs = extra_postargs + flags
            return wrapped(obj, src, ext_, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_with_isa_flags
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = wrapped

    def copy_file(self, infile, outfile, *args, **kwargs):
        """Replaces the in-place .so atomically (copy, then rename): a process that has the old
        library mapped keeps running instead of crashing on a file truncated under it."""
        if not str(outfile).endswith(".so"):
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = f"{outfile}.tmp{os.getpid()}"
        shutil.copyfile(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, 1


sources = sorted(str(p) for p in CSRC.glob("*.cpp"))
# Headers and the shared kernel sources (*.inc, included by several ISA files) trigger rebuilds too.
depends = sorted(str(p) for pattern in ("*.h", "*.inc") for p in CSRC.glob(pattern))

setup(
    ext_modules=[
        CppExtension(
            "fastdistilbert._C",
            sources,
            depends=depends,
            include_dirs=[str(CSRC.resolve())],
            extra_compile_args={"cxx": common},
            extra_link_args=link,
        )
    ],
    cmdclass={"build_ext": IsaBuildExtension.with_options(use_ninja=False)},
)
