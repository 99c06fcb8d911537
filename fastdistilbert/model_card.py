"""Model cards (README.md) for Fast checkpoints, rendered from `model_cards/template.md`.

Every number in a card is read from the checkpoint (config, weights, recorded recipe) or from the measurement files
given (`fastdistilbert eval --output`, `benchmarks/bench_model.py --json`). A section without data says so; nothing
is filled in by default. The YAML metadata keeps `model-index` for SQuAD-style results (huggingface_hub 2.4 calls
it legacy, but its `.eval_results` format needs benchmarks registered on the Hub, PITFALLS 27).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .configuration_fast_distilbert import encoder_is_quantized, has_compact_embeddings
from .errors import UserError

TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "template.md"
RECIPE_FILES = ("recipe.json", "train_args.json")
# Written by `fastdistilbert recipe` beside the checkpoint: EM/F1 of the exported INT8 student (this checkpoint) and,
# for comparison, of the sparse fp32 student and the dense teacher, measured in the same run.
RECIPE_METRICS = "metrics.json"
RECIPE_ROWS = (("student_int8", "this checkpoint (INT8, fast path)"), ("student_fp32", "sparse student before QAT (fp32)"),
               ("teacher_fp32", "dense teacher (fp32)"))
LINEARS = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "ffn.lin1", "ffn.lin2")
# Evaluation files named after a known dataset get its Hub id in model-index; others keep their file name.
KNOWN_DATASETS = (
    ("xquad", {"name": "XQuAD (en)", "type": "google/xquad", "config": "xquad.en", "split": "validation"}),
    ("dev-v1.1", {"name": "SQuAD v1.1", "type": "rajpurkar/squad", "split": "validation"}),
    ("squad", {"name": "SQuAD v1.1", "type": "rajpurkar/squad", "split": "validation"}),
)


def render_card(model_dir, eval_result: dict | None = None, bench: dict | None = None, *, repo_id: str | None = None,
                base_model: str | None = None, license: str = "apache-2.0", plot: str | None = None,
                tags: list[str] | None = None) -> str:
    """The README.md text of the checkpoint in `model_dir`."""
    from jinja2 import Environment, StrictUndefined

    model_dir = Path(model_dir)
    config = _read_json(model_dir / "config.json", "config.json of the model")
    if config.get("model_type") != "fast_distilbert":
        raise UserError(f"{model_dir} is not a Fast checkpoint (model_type {config.get('model_type')!r})")
    name = repo_id or model_dir.resolve().name
    sparsity = sparsity_table(model_dir, config)
    recipe_file, recipe = _recipe(model_dir)
    if eval_result is None and (model_dir / RECIPE_METRICS).is_file():
        eval_result = _read_json(model_dir / RECIPE_METRICS, RECIPE_METRICS)
    evaluation = _evaluation(eval_result, dict(recipe)) if eval_result is not None else None
    values = {
        "name": name, "repo_id": repo_id or f"<namespace>/{name}", "base_model": base_model,
        "arch": {k: config.get(k) for k in ("n_layers", "dim", "n_heads", "hidden_dim", "vocab_size",
                                           "max_position_embeddings")},
        "precision_summary": _precision_summary(config), "quantization_text": _quantization_text(config),
        "sparsity": sparsity, "sparsity_summary": _sparsity_summary(sparsity),
        "recipe_file": recipe_file, "recipe": recipe, "evaluation": evaluation,
        "benchmark": _benchmark(bench, plot) if bench is not None else None,
    }
    metadata = card_metadata(config, sparsity, evaluation, name, base_model, license, recipe)
    metadata["tags"] += [tag for tag in tags or () if tag not in metadata["tags"]]
    values["metadata_yaml"] = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    if not TEMPLATE.is_file():
        raise UserError(f"model card template not found ({TEMPLATE.name} in the source tree's model_cards/)")
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(**values)


def card_metadata(config: dict, sparsity: list[dict], evaluation: dict | None, name: str, base_model: str | None,
                  license: str, recipe: list) -> dict:
    """The YAML front matter of the card."""
    quantized = encoder_is_quantized(config.get("quantization"))
    tags = ["question-answering", "distilbert", "fastdistilbert", "int8" if quantized else "fp32", "cpu"]
    patterns = sorted({row["pattern"] for row in sparsity} - {"dense"})
    tags += ["sparse"] + [f"block-sparse-{p}" for p in patterns] if patterns else []
    meta: dict = {"license": license, "library_name": "transformers", "pipeline_tag": "question-answering",
                  "language": ["en"], "tags": tags}
    if base_model:
        meta["base_model"] = base_model
    datasets = [_dataset_meta(str(value)).get("type", value) for key, value in recipe
                if key in ("dataset", "dataset_name", "train_dataset", "train")]
    if evaluation is not None and evaluation["dataset"].get("type"):
        datasets.append(evaluation["dataset"]["type"])
    if datasets:
        meta["datasets"] = sorted(set(map(str, datasets)))
    if evaluation is not None:
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": "question-answering", "name": "Question Answering"},
            "dataset": evaluation["dataset"],
            "metrics": [{"type": "exact_match", "value": evaluation["exact_match"], "name": "Exact Match"},
                        {"type": "f1", "value": evaluation["f1"], "name": "F1"}],
        }]}]
    return meta


def sparsity_table(model_dir: Path, config: dict) -> list[dict]:
    """Per encoder Linear: shape, fraction of zero weights, the block pattern its zeros select and its density."""
    from safetensors import safe_open

    from .checkpoint import resolve_weight_files
    from .ops import detect_pattern

    tensors = {}
    for file in resolve_weight_files(model_dir):
        with safe_open(file, framework="pt") as f:
            tensors.update({key: file for key in f.keys()})
    prefix = "distilbert." if "distilbert.embeddings.word_embeddings.weight" in tensors else ""
    rows = []
    for layer in range(config["n_layers"]):
        for linear in LINEARS:
            key = f"{prefix}transformer.layer.{layer}.{linear}.weight"
            if key not in tensors:
                raise UserError(f"weight {key} not found in the checkpoint")
            with safe_open(tensors[key], framework="pt") as f:
                weight = f.get_tensor(key)
            # The vector kernels' choice, the same on every machine (the amx variant runs dense tiles up to a
            # lower density: ops.SPARSE_CROSSOVER_AMX).
            info = detect_pattern(weight, isa="avx512vnni")
            rows.append({"layer": layer, "linear": linear.split(".")[1], "shape": "x".join(map(str, weight.shape)),
                         "zeros_value": float(weight.eq(0).float().mean()),
                         "zeros": f"{100 * float(weight.eq(0).float().mean()):.1f}%", "pattern": info.pattern,
                         "block_density": f"{info.block_density:.3f}"})
    return rows


def _sparsity_summary(rows: list[dict]) -> str:
    patterns = sorted({row["pattern"] for row in rows})
    mean = sum(row["zeros_value"] for row in rows) / len(rows)
    return (f"Encoder Linear layers: {100 * mean:.1f}% zero weights on average (unweighted mean over layers); "
            f"kernel patterns: {', '.join(patterns)}. Computed from the stored weights.")


def _precision_summary(config: dict) -> str:
    q = config.get("quantization")
    embeddings = "; word embeddings stored int8 per row" if has_compact_embeddings(q) else ""
    if not encoder_is_quantized(q):
        return f"fp32 weights{embeddings}; quantize with `fastdistilbert convert` for the INT8 kernels"
    return f"INT8 weights, {q.get('activation')} INT8 activations{embeddings}"


def _quantization_text(config: dict) -> str:
    q = config.get("quantization")
    compact = ("- Word embeddings: stored as int8 codes with one fp32 scale per row (symmetric, -127..127), loaded "
               "as fp32 codes x scale.") if has_compact_embeddings(q) else None
    if not encoder_is_quantized(q):
        text = "None: fp32 weights and activations (the model computes exactly what DistilBERT computes)."
        return text if compact is None else "fp32 encoder weights and activations.\n" + compact
    activation = {"dynamic": "uint8 asymmetric, scale and zero point computed per token at run time (no calibration)",
                  "static": "uint8 asymmetric, one stored scale and zero point per Linear input (calibrated or "
                            "learned in quantization-aware training)"}.get(q.get("activation"), q.get("activation"))
    lines = [f"- Format version {q.get('format_version')} of fastdistilbert's quantization section.",
             "- Weights of the encoder Linear layers: int8, symmetric, per output channel (range -127..127), stored "
             "dense with zeros where pruned.",
             f"- Activations: {activation}.",
             "- Attention matmuls: " + ("INT8 (Q uint8 per token, K and V int8 symmetric per row, the softmax "
                                        "probabilities as 8-bit codes over their exact integer sum)."
                                        if q.get("attention", "fp32") == "int8" else "fp32."),
             "- Embeddings, LayerNorms, softmax, GELU and the QA head: fp32." if compact is None else
             "- Position embeddings, LayerNorms, softmax, GELU and the QA head: fp32."]
    if compact:
        lines.append(compact)
    imported = q.get("imported_from")
    if imported:
        lines.append(f"- Imported from a third-party {imported.get('format', '').upper()} INT8 export.")
    return "\n".join(lines)


def _recipe(model_dir: Path) -> tuple[str | None, list]:
    for name in RECIPE_FILES:
        path = model_dir / name
        if path.is_file():
            recipe = _read_json(path, f"recipe file {name}")
            if not isinstance(recipe, dict):
                raise UserError(f"{path} must hold a JSON object of recipe arguments")
            return name, [(key, _card_value(value)) for key, value in _flatten(recipe)]
    return None, []


def _card_value(value):
    """A recipe value as the card shows it: absolute paths shortened to their last component (a card is public and
    must not carry the training machine's directories)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        return Path(value).name
    return value


def _flatten(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _evaluation(result: dict, recipe: dict) -> dict:
    """Evaluation data of the card from `fastdistilbert eval --output` results or a recipe's metrics.json."""
    if isinstance(result.get("student_int8"), dict):  # metrics.json of `fastdistilbert recipe`
        rows = [(label, result[key]) for key, label in RECIPE_ROWS if isinstance(result.get(key), dict)]
        data = recipe.get("eval", "unknown")
        settings = {k: recipe[k] for k in ("max_seq_len", "doc_stride") if k in recipe}
    else:
        rows, data, settings = [("this checkpoint", result)], result.get("data", "unknown"), result.get("settings")
    for label, row in rows:
        missing = [k for k in ("exact_match", "f1") if not isinstance(row.get(k), (int, float))]
        if missing:
            raise UserError(f"the evaluation JSON has no numeric {', '.join(missing)} for {label} (expected "
                            "`fastdistilbert eval --output` results or a recipe's metrics.json)")
    dataset = _dataset_meta(str(data))
    table = [{"label": label, "n": row.get("n", "not recorded"), "exact_match": round(float(row["exact_match"]), 2),
              "f1": round(float(row["f1"]), 2)} for label, row in rows]
    return {"dataset": dataset, "dataset_name": dataset["name"], "rows": table, "exact_match": table[0]["exact_match"],
            "f1": table[0]["f1"], "settings": ", ".join(f"{k}={v}" for k, v in (settings or {}).items())
            or "not recorded"}


def _dataset_meta(data: str) -> dict:
    """model-index `dataset` of an evaluation/training file: a known Hub dataset, else just the file name (never a
    local path in a card)."""
    name = Path(data).name
    return next((dict(meta) for key, meta in KNOWN_DATASETS if key in name.lower()), {"name": name})


def _benchmark(bench: dict, plot: str | None) -> dict:
    records = bench.get("records") if isinstance(bench, dict) else None
    if not records:
        raise UserError("the benchmark JSON has no records (expected `benchmarks/bench_model.py --json` output)")
    env = bench.get("environment") or records[0]
    rows = [{"runtime": r["runtime"], "variant": r["variant"], "seq": r["seq"], "batch": r["batch"],
             "seq_per_s": f"{r['seq_per_s']:.1f}", "p50_ms": f"{r['p50_ms']:.1f}", "p90_ms": f"{r['p90_ms']:.1f}"}
            for r in records]
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items()) or "versions not recorded"
    return {"cpu": env.get("cpu", "CPU not recorded"), "isa": env.get("isa", "not recorded"),
            "threads": env.get("threads", "not recorded"), "versions": versions, "records": rows, "plot": plot}


def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except ValueError as exc:
        raise UserError(f"{what} at {path} is not valid JSON: {exc}") from None


def load_json(path, what: str):
    """A measurement file for the card, with a one-line error when missing or malformed."""
    return _read_json(Path(path), what)
