"""The INT8 fast path: same answers as the torch reference path, padding never computed, faithful on real weights."""
import pytest
import torch

import fastdistilbert as fd
from fastdistilbert.testing import padding_mask, prune_encoder_blocks, tiny_distilbert_qa

pytestmark = pytest.mark.skipif(not fd.ops_available.kernels_available(), reason="needs the C++ extension")


def _both_paths(model, **inputs):
    encoder = model.distilbert
    with torch.no_grad():
        fast = model(**inputs)
        encoder.use_int8_kernels = False
        try:
            reference = model(**inputs)
        finally:
            encoder.use_int8_kernels = True
    return fast, reference


@pytest.mark.parametrize("sparsity,block", [(0.0, (4, 1)), (0.8, (4, 1)), (0.8, (1, 4))], ids=["dense", "4x1", "1x4"])
@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
def test_fast_path_matches_reference_path(sparsity, block, left):
    hf = tiny_distilbert_qa(seed=5, dim=64, n_heads=4, hidden_dim=128, max_position_embeddings=64)
    prune_encoder_blocks(hf, sparsity, block)
    model = fd.convert_to_fast(hf, quantize=True).eval()
    expected_format = {0.0: "dense", 0.8: f"{block[0]}x{block[1]}"}[sparsity]
    assert {r["format"] for r in model.kernel_report()} == {expected_format}
    ids = torch.randint(0, 97, (3, 21), generator=torch.Generator().manual_seed(1))
    mask = padding_mask(3, 21, [21, 13, 4], left=left)
    fast, ref = _both_paths(model, input_ids=ids, attention_mask=mask)
    valid = mask.bool()
    # Same integer GEMMs; the fp32 parts (GELU approximation, LayerNorm, attention blocking) round differently,
    # which can move a dynamic activation code by one step: differences stay far below the logits' spread.
    assert (fast.start_logits - ref.start_logits)[valid].abs().max() < 2e-3
    assert (fast.end_logits - ref.end_logits)[valid].abs().max() < 2e-3


def test_packed_batch_equals_each_sequence_alone():
    model = fd.convert_to_fast(tiny_distilbert_qa(seed=2, dim=48, n_heads=4, hidden_dim=96), quantize=True).eval()
    ids = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(3))
    lengths = [17, 9, 2]
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=padding_mask(3, 17, lengths)).start_logits
        for row, n in enumerate(lengths):
            alone = model(input_ids=ids[row:row + 1, :n]).start_logits
            assert torch.allclose(batched[row, :n], alone[0], atol=1e-5, rtol=0)


def test_hidden_states_at_padding_are_zero_and_requests_for_extra_outputs_use_reference_path():
    model = fd.convert_to_fast(tiny_distilbert_qa(), quantize=True).eval()
    ids = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        out = model.distilbert(input_ids=ids, attention_mask=padding_mask(2, 9, [9, 5]))
        assert torch.count_nonzero(out.last_hidden_state[1, 5:]) == 0
        full = model.distilbert(input_ids=ids, output_hidden_states=True)
    assert len(full.hidden_states) == model.config.n_layers + 1


def test_round_trip_repacks_and_gives_bit_identical_outputs(tmp_path):
    hf = prune_encoder_blocks(tiny_distilbert_qa(seed=7, dim=64, n_heads=4, hidden_dim=128), 0.8)
    model = fd.convert_to_fast(hf, quantize=True).eval()
    ids = torch.randint(0, 97, (2, 15))
    with torch.no_grad():
        before = model(input_ids=ids).start_logits
    model.save_pretrained(tmp_path)
    loaded = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert loaded.kernel_report() == model.kernel_report()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).start_logits, before)


def test_weights_changed_in_place_are_repacked():
    model = fd.convert_to_fast(tiny_distilbert_qa(seed=1), quantize=True).eval()
    ids = torch.randint(0, 97, (1, 8))
    with torch.no_grad():
        before = model(input_ids=ids).start_logits
        model.distilbert.transformer.layer[0].ffn.lin1.weight.zero_()
        after = model(input_ids=ids).start_logits
        model.distilbert.use_int8_kernels = False
        reference = model(input_ids=ids).start_logits
    assert not torch.equal(before, after)
    assert torch.allclose(after, reference, atol=2e-3)


# Changes to the second layer's first feed-forward Linear that an in-place write check would miss.
def _replace_weight(block):
    block.ffn.lin1.weight = torch.flip(block.ffn.lin1.weight, dims=[0])


def _new_storage(block):
    block.ffn.lin1.weight.data = torch.flip(block.ffn.lin1.weight, dims=[0])  # no version bump


def _replace_module(block):
    lin = block.ffn.lin1
    block.ffn.lin1 = fd.modules.QuantizedLinear.from_linear(torch.nn.Linear(lin.in_features, lin.out_features))


def _add_static_input(block):
    block.ffn.lin1.set_static_activation(0.05, 128)  # registers two buffers


@pytest.mark.parametrize("change", [_replace_weight, _new_storage, _replace_module, _add_static_input],
                         ids=["weight-replaced", "new-storage", "module-replaced", "static-input-added"])
def test_any_change_of_the_weights_is_seen_by_the_next_forward(change):
    """Beside in-place writes (above): a tensor or module replaced, a tensor given new storage, tensors added; each
    makes the next forward repack, and the fast path keeps matching the reference path."""
    model = fd.convert_to_fast(tiny_distilbert_qa(seed=2), quantize=True).eval()
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(input_ids=ids).start_logits
        change(model.distilbert.transformer.layer[1])
    fast, reference = _both_paths(model, input_ids=ids)
    assert not torch.equal(fast.start_logits, before)
    assert torch.allclose(fast.start_logits, reference.start_logits, atol=2e-3)


def _cosine_per_token(a, b, mask):
    return torch.nn.functional.cosine_similarity(a[mask.bool()], b[mask.bool()], dim=-1)


@pytest.fixture(scope="module")
def xquad_batch(minilm_qa, xquad_questions):
    _, tok = minilm_qa
    chosen = xquad_questions[:24:3]
    return tok([q for _, q, _, _ in chosen], [c for _, _, c, _ in chosen], truncation="only_second", max_length=384,
               padding=True, return_tensors="pt", return_token_type_ids=False)


def _fidelity(hf, fast, batch):
    with torch.no_grad():
        ref_hidden = hf.distilbert(**batch).last_hidden_state
        got_hidden = fast.distilbert(**batch).last_hidden_state
        ref, got = hf(**batch), fast(**batch)
    cos = _cosine_per_token(ref_hidden, got_hidden, batch["attention_mask"]).mean().item()
    agree = ((ref.start_logits.argmax(1) == got.start_logits.argmax(1)).float().mean().item(),
             (ref.end_logits.argmax(1) == got.end_logits.argmax(1)).float().mean().item())
    return cos, agree


def test_real_encoder_int8_dense_fidelity(minilm_qa, xquad_batch):
    """The conversion default: INT8 Linears and INT8 attention."""
    hf, _ = minilm_qa
    fast = fd.convert_to_fast(hf, quantize=True).eval()
    assert fast.distilbert.int8_attention
    cos, agree = _fidelity(hf, fast, xquad_batch)
    print(f"INT8 dense (INT8 attention) vs fp32: mean per-token cosine {cos:.5f}, start/end argmax agreement {agree}")
    assert cos >= 0.99


def test_real_encoder_int8_sparse_fidelity(minilm_qa, xquad_batch):
    import copy

    hf, _ = minilm_qa
    pruned = prune_encoder_blocks(copy.deepcopy(hf), 0.8, (4, 1))
    fast = fd.convert_to_fast(pruned, quantize=True).eval()
    assert {r["format"] for r in fast.kernel_report()} == {"4x1"}
    cos, agree = _fidelity(pruned, fast, xquad_batch)
    print(f"INT8 80% 4x1 sparse vs fp32 on the same pruned weights: cosine {cos:.5f}, argmax agreement {agree}")
    assert cos >= 0.99



def test_static_activation_fast_path_matches_reference_path():
    from fastdistilbert.calibration import calibrate

    hf = tiny_distilbert_qa(seed=8, dim=64, n_heads=4, hidden_dim=128)
    g = torch.Generator().manual_seed(2)
    batches = [{"input_ids": torch.randint(0, 97, (4, 16), generator=g)} for _ in range(2)]
    model = calibrate(fd.convert_to_fast(hf, quantize=True).eval(), batches)
    assert {r["activations"] for r in model.kernel_report()} == {"static"}
    fast, ref = _both_paths(model, **batches[0])
    assert (fast.start_logits - ref.start_logits).abs().max() < 2e-3


def test_real_encoder_fp32_attention_fidelity(minilm_qa, xquad_batch):
    """INT8 Linears with the attention matmuls kept in fp32 (`attention="fp32"`), the other choice."""
    hf, _ = minilm_qa
    fast = fd.convert_to_fast(hf, quantize=True, attention="fp32").eval()
    cos, agree = _fidelity(hf, fast, xquad_batch)
    print(f"INT8 dense (fp32 attention) vs fp32: mean per-token cosine {cos:.5f}, start/end argmax agreement {agree}")
    assert cos >= 0.99


@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
def test_qa_head_on_feature_major_states_matches_hf_head(left, monkeypatch):
    from transformers import DistilBertForQuestionAnswering

    from fastdistilbert import runtime

    hf = prune_encoder_blocks(tiny_distilbert_qa(seed=4, dim=64, n_heads=4, hidden_dim=128), 0.8)
    model = fd.convert_to_fast(hf, quantize=True).eval()
    ids = torch.randint(0, 97, (3, 19), generator=torch.Generator().manual_seed(2))
    mask = padding_mask(3, 19, [19, 11, 3], left=left)
    calls = []
    fm_head = runtime.question_answering_logits
    monkeypatch.setattr(runtime, "question_answering_logits", lambda *a: calls.append(1) or fm_head(*a))
    with torch.no_grad():
        fast = model(input_ids=ids, attention_mask=mask)
        as_tuple = model(input_ids=ids, attention_mask=mask, return_dict=False)
        # HF's own head on the [batch, seq, dim] hidden states of the same INT8 encoder
        hf_head = DistilBertForQuestionAnswering.forward(model, input_ids=ids, attention_mask=mask)
        with_loss = model(input_ids=ids, attention_mask=mask, start_positions=torch.tensor([1, 2, 0]),
                          end_positions=torch.tensor([3, 4, 1]))
    assert len(calls) == 2  # the two inference calls; the one with labels took HF's forward
    for name in ("start_logits", "end_logits"):
        torch.testing.assert_close(getattr(fast, name), getattr(hf_head, name), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(getattr(with_loss, name), getattr(hf_head, name), rtol=1e-5, atol=1e-5)
    bias = model.qa_outputs.bias.detach()
    assert bool((fast.start_logits[~mask.bool()] == bias[0]).all() and (fast.end_logits[~mask.bool()] == bias[1]).all())
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert torch.equal(as_tuple[0], fast.start_logits) and torch.equal(as_tuple[1], fast.end_logits)
    assert with_loss.loss is not None and torch.isfinite(with_loss.loss)


@pytest.mark.parametrize("isa", [i for i in ("amx", "avx512vnni") if i in fd.available_isas()] or ["ref"])
def test_packed_formats_follow_the_running_variants_crossover(isa):
    # (4,1) block density 0.375: sparse for the vector kernels, dense for the amx variant's tiles.
    from fastdistilbert import ops
    from test_kernels_support import forced_isa

    hf = prune_encoder_blocks(tiny_distilbert_qa(seed=6, dim=64, n_heads=4, hidden_dim=128), 0.625)
    with forced_isa(isa):
        model = fd.convert_to_fast(hf, quantize=True).eval()
        model.prepare_kernels()
        report = model.kernel_report()
    lin1 = model.distilbert.transformer.layer[0].ffn.lin1.weight
    assert ops.detect_pattern(lin1, isa).densities["4x1"] == 0.375
    assert {r["format"] for r in report} == {"dense" if isa == "amx" else "4x1"}
    assert {r["isa"] for r in report} == {isa}
