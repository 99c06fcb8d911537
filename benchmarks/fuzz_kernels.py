"""Open-ended differential fuzzing of the kernel variants: random cases (tests/kernel_fuzzing.py) on every
available ISA against `ref`, exactly, until the time is up. Prints the case count; exits 1 on the first mismatch.

    .venv/bin/python benchmarks/fuzz_kernels.py --seconds 300 [--seed 1] [--max-dim 320]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import fastdistilbert  # noqa: E402
from kernel_fuzzing import ISAS_UNDER_TEST, check_case, random_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: from the clock, printed)")
    parser.add_argument("--max-dim", type=int, default=320, help="largest random N and K (T up to half of it)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    print(f"fuzzing {', '.join(ISAS_UNDER_TEST)} against ref for {args.seconds:g} s, seed {seed}, "
          f"cpu {fastdistilbert._extension.cpu_brand()}, threads {torch.get_num_threads()}", flush=True)
    deadline = time.monotonic() + args.seconds
    count = 0
    with tqdm(unit="case", mininterval=5) as progress:
        while time.monotonic() < deadline:
            case = random_case(rng, args.max_dim)
            mismatches = check_case(case)
            if mismatches:
                print("\n".join(mismatches), file=sys.stderr)
                print(f"MISMATCH after {count} cases (seed {seed})", file=sys.stderr)
                return 1
            count += 1
            progress.update()
    print(f"{count} cases, {count * len(ISAS_UNDER_TEST)} ISA comparisons, no mismatch (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
