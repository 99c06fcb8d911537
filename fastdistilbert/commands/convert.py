"""`fastdistilbert convert SRC DST`: any DistilBERT / BERT QA checkpoint -> a Fast checkpoint (INT8 by default)."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert a DistilBERT/BERT QA checkpoint into a Fast checkpoint",
                              description=__doc__)
    p.add_argument("src", help="checkpoint directory (distilbert, bert or fast_distilbert)")
    p.add_argument("dst", help="output directory (must not hold a checkpoint unless --overwrite)")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights (no quantization)")
    p.add_argument("--calibrate", metavar="DATA", help="SQuAD v1.1 JSON file: store static activation scales "
                   "measured on its first questions (default: dynamic per-token scales, no data needed)")
    p.add_argument("--calibration-samples", type=int, default=64, help="questions used by --calibrate (default 64)")
    p.add_argument("--attention", choices=("int8", "fp32"), help="precision of the attention matmuls of the INT8 "
                   "model (default: int8 for a new conversion, unchanged for a Fast INT8 checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in DST")
    p.set_defaults(run=run)


def run(args) -> int:
    import fastdistilbert as fd

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_dir():
        raise UserError(f"source checkpoint {src} is not a directory")
    if src.resolve() == dst.resolve():
        raise UserError("source and destination are the same directory; choose another DST")
    if args.fp32 and args.attention:
        raise UserError("--attention sets the INT8 model's attention; it cannot be combined with --fp32")
    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(src)
    if args.calibrate:
        if args.fp32:
            raise UserError("--calibrate makes an INT8 model; it cannot be combined with --fp32")
        _calibrate(model, src, args.calibrate, args.calibration_samples)
    elif not args.fp32 and not model.config.is_quantized:
        fd.quantize_model(model)
    if args.attention:
        model.distilbert.int8_attention = args.attention == "int8"
    copied = [name for name in TOKENIZER_FILES if (src / name).exists()]
    clobbered = [name for name in copied if (dst / name).exists()]
    if clobbered and not args.overwrite:  # checked before anything is written: DST stays as it was
        raise UserError(f"{dst} already holds {', '.join(clobbered)}; pass --overwrite to replace")
    model.save_pretrained(dst, overwrite=args.overwrite)
    for name in copied:
        shutil.copyfile(src / name, dst / name)
    attention = "int8" if model.config.int8_attention else "fp32"
    mode = "fp32" if not model.config.is_quantized else \
        f"INT8 ({model.config.quantization['activation']} activations, {attention} attention)"
    print(f"wrote {mode} Fast checkpoint to {dst}" + (f" with tokenizer files {', '.join(copied)}" if copied else ""))
    return 0


def _calibrate(model, src: Path, data: str, samples: int) -> None:
    from transformers import AutoTokenizer

    from ..calibration import calibrate
    from ..squad import load_squad

    if samples < 1:
        raise UserError(f"--calibration-samples must be >= 1 (got {samples})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as exc:
        raise UserError(f"--calibrate needs the tokenizer saved in {src}: {exc}") from None
    examples = load_squad(data)[:samples]
    batches = []
    for first in range(0, len(examples), 8):
        chunk = examples[first:first + 8]
        batches.append(tokenizer([e["question"] for e in chunk], [e["context"] for e in chunk], truncation="only_second",
                                 max_length=min(384, model.config.max_position_embeddings), padding=True,
                                 return_tensors="pt", return_token_type_ids=False))
    calibrate(model, batches)
