"""The paper's recipe end to end: dense teacher -> sparse student (prune + distill) -> QAT + distill -> Fast INT8.

`run_recipe(RecipeConfig(...))` is what `fastdistilbert recipe` runs. It writes into `output`:
- the Fast INT8 checkpoint (safetensors, config with auto_map, shims) and the teacher's tokenizer,
- `recipe.json`: every argument and the training budget actually used (steps, seconds, threads),
- `metrics.json`: official SQuAD v1.1 EM/F1 on the evaluation set for the teacher (fp32), the sparse student
  (fp32, after stage 1) and the exported INT8 student (fast path), plus the student's measured sparsity.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, TrainingArguments

from .arguments import PruningArguments, QATArguments
from .qat import export_to_fast
from .stages import prune_and_distill, quantize_and_distill


@dataclass
class RecipeConfig:
    teacher: str
    train: str
    eval: str
    output: str
    sparsity: float = 0.8
    block_shape: str = "4,1"
    prune_epochs: float = 2.0
    qat_epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_seq_len: int = 384
    doc_stride: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    seed: int = 42
    overwrite: bool = False


def load_examples(source: str, split: str) -> list[dict]:
    """SQuAD-format JSON file, or a `datasets` name (needs a network) when no such file exists."""
    from fastdistilbert.squad import examples_from_rows, load_squad

    if Path(source).exists() or source.endswith(".json"):
        return load_squad(source)
    import datasets

    return examples_from_rows(datasets.load_dataset(source, split=split))


def _training_args(config: RecipeConfig, stage: str, epochs: float) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(Path(config.output) / f"trainer-{stage}"), num_train_epochs=epochs,
        learning_rate=config.learning_rate, per_device_train_batch_size=config.batch_size, seed=config.seed,
        logging_steps=10, save_strategy="no", report_to=[], train_sampling_strategy="group_by_length",
        remove_unused_columns=False, dataloader_pin_memory=False,
    )


def _steps(n_features: int, config: RecipeConfig, epochs: float) -> int:
    return max(1, int(-(-n_features // config.batch_size) * epochs))


def _evaluate(model, tokenizer, examples, config: RecipeConfig) -> dict:
    from fastdistilbert.squad import evaluate_squad

    result = evaluate_squad(model, tokenizer, examples, max_seq_len=config.max_seq_len, doc_stride=config.doc_stride)
    return {"exact_match": result["exact_match"], "f1": result["f1"], "n": result["n"]}


def run_recipe(config: RecipeConfig) -> dict:
    import fastdistilbert as fd
    from fastdistilbert.conversion import to_hf_distilbert
    from fastdistilbert.squad_features import QAFeatureDataset, prepare_train_features
    from transformers import AutoTokenizer

    output = Path(config.output)
    if output.exists() and any(output.iterdir()) and not config.overwrite:
        raise FileExistsError(f"{output} is not empty; pass --overwrite to write the recipe's results into it")
    torch.manual_seed(config.seed)
    fast_teacher = fd.FastDistilBertForQuestionAnswering.from_pretrained(config.teacher)
    if fast_teacher.config.is_quantized:
        raise ValueError("the teacher must be an fp32 model (DistilBERT, BERT-family or an fp32 Fast checkpoint)")
    teacher = to_hf_distilbert(fast_teacher)
    tokenizer = AutoTokenizer.from_pretrained(config.teacher)
    train_examples = load_examples(config.train, "train")[: config.max_train_examples]
    eval_examples = load_examples(config.eval, "validation")[: config.max_eval_examples]
    features = QAFeatureDataset(prepare_train_features(train_examples, tokenizer, config.max_seq_len, config.doc_stride))
    collator = DataCollatorWithPadding(tokenizer)

    prune_steps = _steps(len(features), config, config.prune_epochs)
    pruning = PruningArguments(target_sparsity=config.sparsity, pruning_end_step=max(1, int(0.7 * prune_steps)),
                               pruning_frequency=max(1, prune_steps // 20), pruning_block_shape=config.block_shape)
    started = time.time()
    stage1 = prune_and_distill(copy.deepcopy(teacher).train(), teacher, _training_args(config, "prune", config.prune_epochs),
                               features, pruning, data_collator=collator)
    stage1.train()
    sparse_fp32 = copy.deepcopy(stage1.model).eval()
    qat_steps = _steps(len(features), config, config.qat_epochs)
    qat = QATArguments(freeze_observers_step=max(1, qat_steps // 2))
    rows, cols = (int(v) for v in config.block_shape.split(","))
    stage2 = quantize_and_distill(stage1.model, teacher, _training_args(config, "qat", config.qat_epochs), features, qat,
                                  block_shape=(rows, cols), data_collator=collator)
    stage2.train()
    train_seconds = time.time() - started
    student = export_to_fast(stage2.model).eval()
    output.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(output, overwrite=config.overwrite)
    tokenizer.save_pretrained(output)
    budget = {"prune_steps": prune_steps, "qat_steps": qat_steps, "train_features": len(features),
              "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads()}
    (output / "recipe.json").write_text(json.dumps({**asdict(config), "budget": budget}, indent=2))
    report = student.kernel_report()
    metrics = {
        "teacher_fp32": _evaluate(teacher.eval(), tokenizer, eval_examples, config),
        "student_fp32": _evaluate(sparse_fp32, tokenizer, eval_examples, config),
        "student_int8": _evaluate(student, tokenizer, eval_examples, config),
        "kernel_formats": sorted({r["format"] for r in report}),
        "budget": budget,
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
