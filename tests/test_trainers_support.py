"""Tiny models, data and arguments shared by the trainer tests (no tests here)."""
from __future__ import annotations

import torch
from transformers import DistilBertConfig, DistilBertForQuestionAnswering, TrainingArguments

SEQ_LEN = 16


def tiny_config(**overrides) -> DistilBertConfig:
    values = dict(vocab_size=64, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=SEQ_LEN,
                  dropout=0.0, attention_dropout=0.0, qa_dropout=0.0)
    values.update(overrides)
    return DistilBertConfig(**values)


def tiny_qa_model(seed: int = 0, **overrides) -> DistilBertForQuestionAnswering:
    torch.manual_seed(seed)
    return DistilBertForQuestionAnswering(tiny_config(**overrides)).eval()


def tiny_qa_dataset(n: int = 32, seed: int = 0, labels: bool = True) -> list[dict]:
    """Random token ids; the answer span is where token 7 sits, so the task is learnable."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(8, SEQ_LEN + 1, (1,), generator=g))
        ids = torch.randint(10, 64, (SEQ_LEN,), generator=g)
        start = int(torch.randint(1, length - 2, (1,), generator=g))
        ids[start] = 7
        ids[length:] = 0
        row = {"input_ids": ids.tolist(), "attention_mask": [1] * length + [0] * (SEQ_LEN - length)}
        if labels:
            row.update(start_positions=start, end_positions=start + 1)
        rows.append(row)
    return rows


def tiny_training_args(output_dir, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(output_dir), max_steps=12, per_device_train_batch_size=4, learning_rate=5e-3,
                  logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0, data_seed=0,
                  disable_tqdm=True, dataloader_num_workers=0)
    values.update(overrides)
    return TrainingArguments(**values)
