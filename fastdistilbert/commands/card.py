"""`fastdistilbert card --model DIR`: writes the model card (README.md) of a Fast checkpoint from measured data only."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("card", help="write the README.md model card of a Fast checkpoint", description=__doc__)
    p.add_argument("--model", required=True, type=Path, help="Fast checkpoint directory")
    p.add_argument("--eval", type=Path, metavar="JSON", help="results of `fastdistilbert eval --output JSON`")
    p.add_argument("--bench", type=Path, metavar="JSON", help="results of `benchmarks/bench_model.py --json JSON`")
    p.add_argument("--plot", metavar="PNG", help="benchmark plot to show, as a path relative to the card")
    p.add_argument("--repo-id", help="Hub repository id used in the card's title and usage (default: directory name)")
    p.add_argument("--base-model", help="Hub id of the model this checkpoint was made from")
    p.add_argument("--license", default="apache-2.0", help="license identifier for the metadata (default apache-2.0)")
    p.add_argument("--output", type=Path, help="where to write the card (default: MODEL/README.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing card")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..model_card import load_json, render_card

    if not args.model.is_dir():
        raise UserError(f"--model {args.model} is not a directory")
    output = args.output or args.model / "README.md"
    if output.exists() and not args.overwrite:
        raise UserError(f"{output} exists; pass --overwrite to replace it")
    eval_result = load_json(args.eval, "--eval file") if args.eval else None
    bench = load_json(args.bench, "--bench file") if args.bench else None
    text = render_card(args.model, eval_result, bench, repo_id=args.repo_id, base_model=args.base_model,
                       license=args.license, plot=args.plot)
    output.write_text(text, encoding="utf-8")
    print(f"wrote model card {output}")
    return 0
