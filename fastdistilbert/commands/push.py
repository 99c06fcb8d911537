"""`fastdistilbert push --model DIR --repo-id NAME`: publishes a Fast checkpoint (weights, config with auto_map, shim
modules, tokenizer, model card) on the Hugging Face Hub. Uses the token of `hf auth login` or HF_TOKEN, and the
endpoint in HF_ENDPOINT."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("push", help="publish a Fast checkpoint on the Hugging Face Hub", description=__doc__)
    p.add_argument("--model", required=True, type=Path, help="Fast checkpoint directory (see `convert`)")
    p.add_argument("--repo-id", required=True, help="namespace/name of the Hub repository")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--overwrite", action="store_true", help="replace a different model already in the repository")
    p.add_argument("--message", help="commit message")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..hub import push_to_hub

    if not args.model.is_dir():
        raise UserError(f"--model {args.model} is not a directory")
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError
    from httpx2 import TransportError

    try:
        url = push_to_hub(args.model, args.repo_id, private=True if args.private else None, overwrite=args.overwrite,
                          commit_message=args.message)
    except HfHubHTTPError as exc:  # a refusal by the Hub (no rights, bad token, ...): one line, not a traceback
        detail = exc.server_message or str(exc).strip().splitlines()[0]
        raise UserError(f"the Hub refused the push to {args.repo_id}: {detail}") from None
    except TransportError as exc:
        raise UserError(f"cannot reach the Hub at {constants.ENDPOINT}: {exc}") from None
    print(f"pushed {args.model} to {args.repo_id}: {url}")
    return 0
