"""Throughput mode: pinned workers sharing memory-mapped weights give the same logits as the model in-process."""
import numpy as np
import torch

import fastdistilbert as fd
from fastdistilbert.shared_weights import load_kernel_cache, map_safetensors, save_kernel_cache, share_checkpoint_tensors
from fastdistilbert.testing import prune_encoder_blocks, tiny_distilbert_qa
from fastdistilbert.throughput import ThroughputPool


def _saved_sparse_model(path):
    hf = prune_encoder_blocks(tiny_distilbert_qa(seed=4, dim=64, n_heads=4, hidden_dim=128), 0.8)
    model = fd.convert_to_fast(hf, quantize=True).eval()
    model.save_pretrained(path)
    return model


def test_mapped_weights_and_kernel_cache_reproduce_the_model(tmp_path):
    model = _saved_sparse_model(tmp_path / "ckpt")
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=ids).start_logits
    save_kernel_cache(model.distilbert, tmp_path / "kernels.bin")
    clone = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path / "ckpt").eval()
    mapped = map_safetensors(tmp_path / "ckpt" / "model.safetensors")
    assert share_checkpoint_tensors(clone, tmp_path / "ckpt" / "model.safetensors") == len(mapped)
    weight = clone.distilbert.embeddings.word_embeddings.weight
    # A view of the whole mapped file, not a private copy of the table.
    assert weight.untyped_storage().nbytes() == (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    assert torch.equal(weight, mapped["distilbert.embeddings.word_embeddings.weight"])
    load_kernel_cache(clone.distilbert, tmp_path / "kernels.bin")
    with torch.no_grad():
        assert torch.equal(clone(input_ids=ids).start_logits, expected)


def test_pool_of_pinned_workers_matches_in_process_results(tmp_path):
    model = _saved_sparse_model(tmp_path)
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 97, (2, 9), generator=g)} for _ in range(5)]
    with ThroughputPool(tmp_path, workers=2, threads_per_worker=1) as pool:
        outputs = pool.run(batches)
    for batch, (start, end) in zip(batches, outputs):
        with torch.no_grad():
            expected = model(**batch)
        np.testing.assert_array_equal(start, expected.start_logits.numpy())
        np.testing.assert_array_equal(end, expected.end_logits.numpy())
