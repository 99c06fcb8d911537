"""Bad-input catalogue, model API: each case is a clear error naming the problem, or a documented correct result.

Runs on the INT8 fast path, the INT8 torch-reference path and the fp32 path where they differ.
(tests/test_bad_input.py holds the earlier cases: position limit via input_ids, float ids, out-of-vocabulary ids,
mask shape.)"""
import os
import subprocess
import sys

import pytest
import torch

import fastdistilbert as fd
from fastdistilbert.testing import padding_mask, tiny_distilbert_qa

DIM, VOCAB, MAX_POSITIONS = 21, 97, 40  # tiny_distilbert_qa's sizes


@pytest.fixture(scope="module")
def int8_model():
    return fd.convert_to_fast(tiny_distilbert_qa(seed=4), quantize=True).eval()


@pytest.fixture(scope="module")
def fp32_model():
    return fd.convert_to_fast(tiny_distilbert_qa(seed=4)).eval()


@pytest.fixture(params=["int8-kernels", "int8-reference", "fp32"])
def any_path(request, int8_model, fp32_model):
    """The same model object through each forward implementation."""
    if request.param == "fp32":
        yield fp32_model
        return
    int8_model.distilbert.use_int8_kernels = request.param == "int8-kernels"
    try:
        yield int8_model
    finally:
        int8_model.distilbert.use_int8_kernels = True


def ids(batch, seq, seed=0):
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_empty_batch_gives_empty_logits_on_every_path(any_path):
    """Documented: a batch of 0 sequences (a serving batcher with no requests) returns [0, seq] logits."""
    with torch.no_grad():
        out = any_path(input_ids=ids(0, 7), attention_mask=torch.ones(0, 7, dtype=torch.long))
    assert out.start_logits.shape == (0, 7) and out.end_logits.shape == (0, 7)


def test_zero_length_sequence_is_refused(any_path):
    with pytest.raises(ValueError, match=r"zero-length sequences \(shape \(2, 0\)\)"):
        any_path(input_ids=ids(2, 0))


def test_inputs_embeds_over_the_position_limit(fp32_model):
    with pytest.raises(ValueError, match=f"sequence length 41 exceeds max_position_embeddings={MAX_POSITIONS}"):
        fp32_model(inputs_embeds=torch.zeros(1, MAX_POSITIONS + 1, DIM))


def test_meta_input_ids_name_the_device(any_path):
    with pytest.raises(ValueError, match="input_ids is on device meta but the model is on cpu"):
        any_path(input_ids=torch.zeros(1, 5, dtype=torch.long, device="meta"))


def test_attention_mask_on_another_device_names_the_device(any_path):
    with pytest.raises(ValueError, match="attention_mask is on device meta but the model is on cpu"):
        any_path(input_ids=ids(1, 5), attention_mask=torch.ones(1, 5, device="meta"))


def test_uint8_input_ids_are_refused(any_path):
    """uint8 ids would index the embedding table as a boolean mask."""
    with pytest.raises(TypeError, match="input_ids must be int64 \\(or int32\\) token ids, got dtype torch.uint8"):
        any_path(input_ids=ids(1, 5).to(torch.uint8))


def test_int32_input_ids_give_the_int64_result(any_path):
    """Documented: int32 token ids are accepted and give exactly the int64 result."""
    with torch.no_grad():
        want = any_path(input_ids=ids(2, 9)).start_logits
        got = any_path(input_ids=ids(2, 9).to(torch.int32)).start_logits
    assert torch.equal(got, want)


def test_neither_input_ids_nor_inputs_embeds(any_path):
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds \\(got neither\\)"):
        any_path(attention_mask=torch.ones(1, 5))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_embeds_are_refused(any_path, value):
    embeds = torch.randn(2, 6, DIM, generator=torch.Generator().manual_seed(1))
    embeds[1, 3, 5] = value
    with pytest.raises(ValueError, match="inputs_embeds contains 1 NaN or Inf values"):
        any_path(inputs_embeds=embeds)


def test_inputs_embeds_of_the_wrong_hidden_size(any_path):
    with pytest.raises(ValueError, match=f"inputs_embeds must have shape \\[batch, sequence, {DIM}\\], got \\(1, 5, 20\\)"):
        any_path(inputs_embeds=torch.zeros(1, 5, DIM - 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_inputs_embeds_of_the_wrong_dtype(any_path, dtype):
    with pytest.raises(TypeError, match=f"inputs_embeds must have the model's dtype torch.float32, got {dtype}"):
        any_path(inputs_embeds=torch.zeros(1, 5, DIM, dtype=dtype))


@pytest.mark.parametrize("mask,found", [([[1, 1, 2, 0, 0]], r"\[2\]"), ([[1, -1, 1, 0, 0]], r"\[-1\]"),
                                        ([[1.0, 0.5, 1.0, 0.0, 0.0]], r"\[0\.5\]")], ids=["2", "negative", "0.5"])
def test_attention_mask_values_other_than_0_and_1_are_refused(any_path, mask, found):
    """The fast path reads any nonzero as a token and HF's path uses the value: only 0/1 mean the same to both."""
    with pytest.raises(ValueError, match=r"attention_mask must contain only 0 \(padding\) and 1 \(token\), found " + found):
        any_path(input_ids=ids(1, 5), attention_mask=torch.tensor(mask))


def test_float_and_bool_masks_equal_the_integer_mask(any_path):
    """Documented: a 0/1 mask may be int, float or bool; the logits are the same."""
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        want = any_path(input_ids=ids(2, 6), attention_mask=mask).start_logits
        for other in (mask.float(), mask.bool()):
            assert torch.equal(any_path(input_ids=ids(2, 6), attention_mask=other).start_logits, want)


@pytest.mark.parametrize("left_padding", [False, True], ids=["right-pad", "left-pad"])
def test_mixed_length_batch_equals_per_sequence_runs(any_path, left_padding):
    """Documented: every real token's logits in a padded mixed-length batch equal that sequence run alone
    (to fp32 rounding: batched attention sums in another order)."""
    seq, lengths = 19, [19, 11, 3, 1]
    batch_ids = ids(len(lengths), seq, seed=6)
    mask = padding_mask(len(lengths), seq, lengths, left_padding)
    with torch.no_grad():
        batched = any_path(input_ids=batch_ids, attention_mask=mask)
        for row, n in enumerate(lengths):
            real = mask[row].bool()
            # Alone, the sequence sits at the same positions (HF position ids are padded-input columns).
            alone = any_path(input_ids=batch_ids[row:row + 1], attention_mask=mask[row:row + 1])
            assert torch.allclose(batched.start_logits[row, real], alone.start_logits[0, real], atol=1e-5, rtol=0)
            assert torch.allclose(batched.end_logits[row, real], alone.end_logits[0, real], atol=1e-5, rtol=0)
            if not left_padding:  # right-padded: also equal to the unpadded sequence
                unpadded = any_path(input_ids=batch_ids[row:row + 1, :n])
                assert torch.allclose(batched.start_logits[row, :n], unpadded.start_logits[0], atol=1e-5, rtol=0)


def test_forcing_an_isa_the_cpu_lacks_fails_the_forward_clearly():
    """A model forward with FASTDISTILBERT_FORCE_ISA naming a variant this CPU cannot run: a clear error, never
    SIGILL (in a child process, so a crash fails the test instead of the run). AVX-512 VNNI is hidden from the
    dispatcher (FASTDISTILBERT_HIDE_CPU_FEATURES), so this runs on CPUs that have it too."""
    code = ("import torch, fastdistilbert as fd\nfrom fastdistilbert.testing import tiny_distilbert_qa\n"
            "m = fd.convert_to_fast(tiny_distilbert_qa(), quantize=True).eval()\n"
            "m(input_ids=torch.ones(1, 5, dtype=torch.long))\n")
    env = {**os.environ, "FASTDISTILBERT_FORCE_ISA": "avx512vnni", "FASTDISTILBERT_HIDE_CPU_FEATURES": "avx512_vnni"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, f"exit {result.returncode} (negative = killed by a signal): {result.stderr[-500:]}"
    assert "ISA 'avx512vnni' is not supported by this CPU" in result.stderr
