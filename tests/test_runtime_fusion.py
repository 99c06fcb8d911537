"""The runtime's fused ops (the whole encoder in one op, self-attention, feed-forward, and the static path's
requantizing epilogue) give the same bits as running each Linear as its own kernel, for dynamic and calibrated
(static) models, dense and sparse."""
import pytest
import torch

import fastdistilbert as fd
from fastdistilbert import ops, runtime
from fastdistilbert.testing import prune_encoder_blocks, tiny_distilbert_qa
from test_kernels_support import threads

pytestmark = pytest.mark.skipif(not ops.EXTENSION_AVAILABLE, reason="C++ extension not built")


def unfused_self_attention(self, h, h_codes, lengths, n_heads, scaling):
    return ops.attention_fm(self.qkv(h, x_codes=h_codes), lengths, n_heads, scaling)


def unfused_attention_block(self, h, h_codes, norm, lengths, n_heads, scaling):
    ctx = ops.attention_fm(self.qkv(h, x_codes=h_codes), lengths, n_heads, scaling)
    return runtime.layer_norm_feature_major(self.out(ctx, residual=h), norm, self.lin1)


def unfused_feed_forward(self, h1, h1_codes):
    return self.lin2(self.lin1(h1, gelu=True, x_codes=h1_codes), residual=h1)


def unfused_feed_forward_block(self, h1, h1_codes, norm, consumer):
    return runtime.layer_norm_feature_major(unfused_feed_forward(self, h1, h1_codes), norm, consumer)


def model_and_batch(static: bool, sparse: bool, attention: str = "int8"):
    from fastdistilbert.calibration import calibrate

    hf = tiny_distilbert_qa(seed=5, dim=64, n_heads=4, hidden_dim=128, max_position_embeddings=140)
    if sparse:
        hf = prune_encoder_blocks(hf, 0.75, (4, 1))
    model = fd.convert_to_fast(hf, quantize=True, attention=attention).eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 97, (5, 130), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 70:] = 0  # unequal lengths, one sequence across the 64-token blocks
    mask[3, 9:] = 0
    if static:
        model = calibrate(model, [{"input_ids": ids, "attention_mask": mask}])
    return model, {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("attention", ["int8", "fp32"])
def test_fused_runtime_is_the_unfused_kernels_exactly(static, sparse, n_threads, attention, monkeypatch):
    model, batch = model_and_batch(static, sparse, attention)
    assert {r["activations"] for r in model.kernel_report()} == {"static" if static else "dynamic"}
    with threads(n_threads), torch.inference_mode():
        fused = model(**batch)
        monkeypatch.setattr(runtime, "cached_whole_encoder_arguments", lambda model, kernels: None)
        monkeypatch.setattr(runtime.LayerKernels, "attention_block", unfused_attention_block)
        monkeypatch.setattr(runtime.LayerKernels, "self_attention", unfused_self_attention)
        monkeypatch.setattr(runtime.LayerKernels, "feed_forward", unfused_feed_forward)
        monkeypatch.setattr(runtime.LayerKernels, "feed_forward_block", unfused_feed_forward_block)
        unfused = model(**batch)
    assert torch.equal(fused.start_logits, unfused.start_logits)
    assert torch.equal(fused.end_logits, unfused.end_logits)


@pytest.mark.parametrize("static", [False, True])
def test_models_run_the_whole_encoder_as_one_op(static, monkeypatch):
    """Per-token (dynamic) and calibrated (static) models run ops.encoder_fm, with INT8 or fp32 attention; the static
    one passes each Linear's input scale and zero point."""
    model, batch = model_and_batch(static, sparse=True)
    calls = []
    real = ops.encoder_fm
    monkeypatch.setattr(ops, "encoder_fm", lambda *args: calls.append(args) or real(*args))
    with torch.inference_mode():
        model(**batch)
        model.distilbert.int8_attention = False
        model(**batch)
    assert [(len(args[1]), args[7]) for args in calls] == [(4 * model.config.n_layers, True),
                                                          (4 * model.config.n_layers, False)]
    params = calls[0][8]
    if not static:
        assert params is None
        return
    linears = [m for block in model.distilbert.transformer.layer
               for m in (block.attention.q_lin, block.attention.out_lin, block.ffn.lin1, block.ffn.lin2)]
    assert torch.equal(params, torch.tensor([[float(m.input_scale), float(m.input_zero_point)] for m in linears]))


def test_mixed_static_and_dynamic_linears_run_layer_by_layer(monkeypatch):
    model, batch = model_and_batch(static=True, sparse=True)
    lin2 = model.distilbert.transformer.layer[1].ffn.lin2
    lin2.input_scale, lin2.input_zero_point = None, None  # this Linear now quantizes its input per token
    monkeypatch.setattr(ops, "encoder_fm", lambda *args: pytest.fail("encoder_fm called for a mixed model"))
    with torch.inference_mode():
        assert model(**batch).start_logits.isfinite().all()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_int8_attention_model_is_the_layer_path_exactly(n_threads, monkeypatch):
    model, batch = model_and_batch(static=False, sparse=True)
    assert model.distilbert.int8_attention
    with threads(n_threads), torch.inference_mode():
        whole = model(**batch)
        monkeypatch.setattr(runtime, "cached_whole_encoder_arguments", lambda model, kernels: None)
        layers = model(**batch)
    assert torch.equal(whole.start_logits, layers.start_logits)
    assert torch.equal(whole.end_logits, layers.end_logits)


def test_whole_encoder_arguments_are_made_once_and_follow_layer_norm_changes(monkeypatch):
    """The op's argument lists are cached with the packed kernels; a LayerNorm changed in place, replaced, or given
    another eps is seen by the next forward (the kernels and their cached arguments are rebuilt)."""
    model, batch = model_and_batch(static=False, sparse=True)
    made = []
    real = runtime.whole_encoder_arguments
    monkeypatch.setattr(runtime, "whole_encoder_arguments", lambda *args: made.append(1) or real(*args))

    def forward():
        with torch.inference_mode():
            return model(**batch).start_logits

    first = forward()
    assert torch.equal(forward(), first) and len(made) == 1
    norm = model.distilbert.transformer.layer[1].output_layer_norm
    with torch.no_grad():
        norm.weight.mul_(1.5)
    assert not torch.equal(forward(), first)
    norm.weight = torch.nn.Parameter(norm.weight.detach() / 1.5)
    rebuilt = len(made)
    assert torch.equal(forward(), first) and len(made) == rebuilt + 1
    norm.eps = 0.5
    assert not torch.equal(forward(), first) and len(made) == rebuilt + 2
    model.distilbert.use_int8_kernels = False
    with torch.inference_mode():
        reference = model(**batch).start_logits
    model.distilbert.use_int8_kernels = True
    valid = batch["attention_mask"].bool()
    assert (forward() - reference)[valid].abs().max() < 2e-3
