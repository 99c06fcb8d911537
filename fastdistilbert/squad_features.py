"""Training features for extractive QA, as transformers' run_qa example builds them.

Each (question, context) becomes one or more windows of `max_length` tokens (`doc_stride` overlap); a window's
labels are the token positions of the answer, or the [CLS] position (0) when the answer is not inside it.
"""
from __future__ import annotations

import torch


def _token_span(offsets, sequence_ids, start_char: int, end_char: int) -> tuple[int, int]:
    """(start, end) token indices of the character span inside the context part of one window, or (0, 0)."""
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def prepare_train_features(examples: list[dict], tokenizer, max_length: int = 384, doc_stride: int = 128) -> list[dict]:
    """Tokenized windows with `start_positions` / `end_positions` labels (lists of ints, unpadded), from examples
    as `fastdistilbert.squad.load_squad` returns them."""
    pad_right = tokenizer.padding_side == "right"
    enc = tokenizer(
        [e["question"].lstrip() for e in examples], [e["context"] for e in examples],
        truncation="only_second" if pad_right else "only_first", max_length=max_length, stride=doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=False,
    )
    features = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = examples[enc["overflow_to_sample_mapping"][i]]
        start_char = example["answer_starts"][0]  # SQuAD v1.1 training questions have one answer
        end_char = start_char + len(example["answers"][0])
        start, end = _token_span(offsets, enc.sequence_ids(i), start_char, end_char)
        features.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "start_positions": start, "end_positions": end})
    return features


class QAFeatureDataset(torch.utils.data.Dataset):
    """A list of feature dicts as a Dataset (Trainer pads them per batch with DataCollatorWithPadding)."""

    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]
