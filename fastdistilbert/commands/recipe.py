"""`fastdistilbert recipe`: dense teacher -> sparse student (block pruning + distillation) -> QAT + distillation ->
Fast INT8 checkpoint, evaluated with the official SQuAD v1.1 EM/F1 (metrics.json in the output directory)."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    from ..trainers.recipe import RecipeConfig

    p = subparsers.add_parser("recipe", help="teacher -> sparse INT8 student, with SQuAD EM/F1", description=__doc__)
    p.add_argument("--teacher", required=True, help="fp32 QA checkpoint directory (DistilBERT/BERT/Fast) with tokenizer")
    p.add_argument("--train", required=True, help="SQuAD v1.1 JSON file, or a datasets name where a network exists")
    p.add_argument("--eval", required=True, help="SQuAD v1.1 JSON file, or a datasets name where a network exists")
    p.add_argument("--output", required=True, help="output directory (must be empty unless --overwrite)")
    defaults = RecipeConfig(teacher="", train="", eval="", output="")
    p.add_argument("--sparsity", type=float, default=defaults.sparsity, help="target block sparsity (default 0.8)")
    p.add_argument("--block-shape", default=defaults.block_shape, help="'4,1' (default) or '1,4'")
    p.add_argument("--prune-epochs", type=float, default=defaults.prune_epochs)
    p.add_argument("--qat-epochs", type=float, default=defaults.qat_epochs)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--max-seq-len", type=int, default=defaults.max_seq_len)
    p.add_argument("--doc-stride", type=int, default=defaults.doc_stride)
    p.add_argument("--max-train-examples", type=int, default=None)
    p.add_argument("--max-eval-examples", type=int, default=None)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    import json

    from ..errors import UserError
    from ..trainers.recipe import RecipeConfig, run_recipe

    if not 0.0 <= args.sparsity < 1.0:
        raise UserError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.block_shape not in ("4,1", "1,4"):
        raise UserError(f"--block-shape must be '4,1' or '1,4', got {args.block_shape!r}")
    names = ("teacher", "train", "eval", "output", "sparsity", "block_shape", "prune_epochs", "qat_epochs",
             "learning_rate", "batch_size", "max_seq_len", "doc_stride", "max_train_examples", "max_eval_examples",
             "seed", "overwrite")
    metrics = run_recipe(RecipeConfig(**{n: getattr(args, n) for n in names}))
    print(json.dumps({k: v for k, v in metrics.items() if k != "budget"}, indent=2))
    print(f"wrote the Fast INT8 checkpoint, recipe.json and metrics.json to {args.output}")
    return 0
