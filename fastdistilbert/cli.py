"""`fastdistilbert` console script: one sub-command per module in `fastdistilbert.commands`.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`. A user mistake (`UserError`, a
missing file) is printed as one line on stderr with exit code 2, not as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

COMMANDS = ("info", "demo", "eval", "convert", "bench", "card", "push", "recipe")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdistilbert", description="Fast DistilBERT question answering on CPUs.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).add_parser(subparsers)
    return parser


# How the extension's dispatcher (csrc/dispatch.cpp, csrc/cpu_features.cpp) starts its errors.
DISPATCH_ERROR_PREFIX = "fastdistilbert: "


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, FileNotFoundError, FileExistsError) as exc:
        print(f"fastdistilbert {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # The kernel dispatcher's own errors (a FASTDISTILBERT_FORCE_ISA or FASTDISTILBERT_HIDE_CPU_FEATURES this
        # CPU or build cannot honour) are the user's settings, not our bugs: one line too.
        if not str(exc).startswith(DISPATCH_ERROR_PREFIX):
            raise
        print(f"fastdistilbert {args.command}: error: {str(exc)[len(DISPATCH_ERROR_PREFIX):]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastdistilbert {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
