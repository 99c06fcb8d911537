"""Turns a recipe output (the 80% (4,1) INT8 student) into the checkpoint embedded in the package as the default of
`fastdistilbert demo`: word embeddings stored as int8 per row (compact_embeddings), tokenizer and the recipe's
provenance files (recipe.json, metrics.json) beside it.

    python benchmarks/make_demo_model.py --student runs/s80 [--output fastdistilbert/data/demo_model] [--overwrite]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from transformers import AutoTokenizer

import fastdistilbert as fd

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "fastdistilbert" / "data" / "demo_model"
PROVENANCE = ("recipe.json", "metrics.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="output directory of `fastdistilbert recipe`")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT))
    p.add_argument("--overwrite", action="store_true", help="replace an existing embedded checkpoint")
    args = p.parse_args()
    student, output = Path(args.student), Path(args.output)
    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(student)
    if not model.config.is_quantized:
        raise SystemExit(f"{student} is not an INT8 Fast checkpoint; the demo embeds the recipe's INT8 student")
    model.save_pretrained(output, compact_embeddings=True, overwrite=args.overwrite)
    AutoTokenizer.from_pretrained(student).save_pretrained(output)
    for name in PROVENANCE:
        if (student / name).exists():
            shutil.copyfile(student / name, output / name)
    size = sum(f.stat().st_size for f in output.iterdir() if f.is_file())
    print(f"wrote {output}: {size / 1e6:.1f} MB ({(output / 'model.safetensors').stat().st_size / 1e6:.1f} MB weights)")


if __name__ == "__main__":
    main()
