"""`fastdistilbert eval`: official SQuAD v1.1 exact match / F1 of a question-answering checkpoint."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="SQuAD v1.1 exact match / F1 of a question-answering model",
        description=(
            "Evaluate a question-answering checkpoint (ours or any AutoModelForQuestionAnswering directory) on a "
            "SQuAD v1.1 JSON file, or on a `datasets` name when the path does not exist and a network is available. "
            "Long contexts are read in doc_stride windows; answers are post-processed over the n best spans."
        ),
    )
    parser.add_argument("--model", required=True, help="checkpoint directory (model + tokenizer)")
    parser.add_argument("--data", required=True, help="SQuAD v1.1 JSON file, or a datasets name (validation split)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N questions")
    parser.add_argument("--output", type=Path, default=None, help="write metrics and predictions to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    parser.add_argument("--max-seq-len", type=int, default=384, help="tokens per window (default 384)")
    parser.add_argument("--doc-stride", type=int, default=128, help="overlap of consecutive windows (default 128)")
    parser.add_argument("--n-best", type=int, default=20, help="candidate spans kept per window (default 20)")
    parser.add_argument("--max-answer-len", type=int, default=30, help="longest answer in tokens (default 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    from ..errors import UserError
    from ..squad import evaluate_squad

    for name in ("limit", "batch_size", "max_seq_len", "n_best", "max_answer_len"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
    if args.doc_stride < 0:
        raise UserError(f"--doc-stride must be >= 0 (got {args.doc_stride})")
    if args.output is not None and args.output.exists() and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    examples = _load_examples(args.data)
    if args.limit is not None:
        examples = examples[: args.limit]
    model, tokenizer = _load_model(args.model)
    try:
        result = evaluate_squad(
            model,
            tokenizer,
            examples,
            max_seq_len=args.max_seq_len,
            doc_stride=args.doc_stride,
            n_best=args.n_best,
            max_answer_len=args.max_answer_len,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except ValueError as exc:  # settings that do not fit the model or the data
        raise UserError(str(exc)) from None
    print(f"exact_match {result['exact_match']:.2f}  f1 {result['f1']:.2f}  ({result['n']} questions, {result['n_windows']} windows)")
    if args.output is not None:
        settings = {name: getattr(args, name) for name in ("max_seq_len", "doc_stride", "n_best", "max_answer_len", "limit")}
        report = {"model": str(args.model), "data": str(args.data), "settings": settings, **result}
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def _load_examples(data: str) -> list[dict]:
    from ..errors import UserError
    from ..squad import examples_from_rows, load_squad

    path = Path(data)
    # A name like "rajpurkar/squad" goes to `datasets`; what can only be a file gets a clear "not found".
    if path.exists() or path.suffix == ".json" or path.is_absolute() or data.startswith((".", "~")):
        return load_squad(path.expanduser())
    try:
        import datasets

        rows = datasets.load_dataset(data, split="validation")
    except Exception as exc:  # offline, unknown name, no validation split: all user-facing
        raise UserError(f"{data}: no such file, and loading it as a `datasets` name failed ({type(exc).__name__}: {exc})") from None
    try:
        return examples_from_rows(rows)
    except (KeyError, TypeError) as exc:
        raise UserError(f"dataset {data} is not in SQuAD layout (missing or bad field {exc})") from None


def _load_model(model_dir: str):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from ..errors import UserError

    path = Path(model_dir)
    if not path.is_dir():
        raise UserError(f"model directory not found: {path}")
    try:
        model = AutoModelForQuestionAnswering.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load a question-answering model and tokenizer from {path}: {exc}") from None
    return model, tokenizer
