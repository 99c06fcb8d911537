"""INT8 attention as a property of the model: the conversion default, recorded in config.json, the same arithmetic
on the kernel path and the torch reference path, and version 1 checkpoints still computing fp32 attention."""
import json

import pytest
import torch

import fastdistilbert as fd
from fastdistilbert.testing import padding_mask, prune_encoder_blocks, tiny_distilbert_qa


def _model(attention="int8"):
    hf = prune_encoder_blocks(tiny_distilbert_qa(seed=5, dim=64, n_heads=4, hidden_dim=128, max_position_embeddings=64),
                              0.8, (4, 1))
    return fd.convert_to_fast(hf, quantize=True, attention=attention).eval()


def _batch(left=False):
    ids = torch.randint(0, 97, (3, 21), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": padding_mask(3, 21, [21, 13, 4], left)}


def _logits(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return torch.stack([out.start_logits, out.end_logits])


def test_conversion_default_is_int8_attention_and_fp32_is_a_choice():
    model = _model()
    assert model.config.quantization["attention"] == "int8"
    assert model.config.quantization["format_version"] == 2
    assert model.distilbert.int8_attention
    assert {r["attention"] for r in model.kernel_report()} == {"int8"}
    fp32 = _model("fp32")
    assert not fp32.distilbert.int8_attention
    assert {r["attention"] for r in fp32.kernel_report()} == {"fp32"}


def test_unknown_attention_is_refused_before_anything_changes():
    fast = fd.convert_to_fast(tiny_distilbert_qa())
    with pytest.raises(ValueError, match="attention must be one of"):
        fd.quantize_model(fast, attention="int4")
    assert not fast.config.is_quantized
    assert type(fast.distilbert.transformer.layer[0].ffn.lin1) is torch.nn.Linear


def test_fp32_model_has_no_int8_attention_switch():
    fast = fd.convert_to_fast(tiny_distilbert_qa())
    assert not fast.distilbert.int8_attention
    with pytest.raises(ValueError, match="needs an INT8 model"):
        fast.distilbert.int8_attention = True


def _hidden(model, batch, kernels=True):
    model.distilbert.use_int8_kernels = kernels
    try:
        with torch.no_grad():
            return model.distilbert(**batch).last_hidden_state
    finally:
        model.distilbert.use_int8_kernels = True


@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_reference_path_computes_the_int8_attention_of_the_kernels(left, implementation):
    """The torch path (HF's modules with the INT8 attention's reference steps) against the kernel path, with the
    attention mask in both formats HF hands to attention modules. The same model with fp32 attention computes
    30x further away, so the comparison would catch a path that ignored the setting."""
    model = _model()
    model.config._attn_implementation = implementation
    batch = _batch(left)
    valid = batch["attention_mask"].bool()
    fast, reference = _hidden(model, batch)[valid], _hidden(model, batch, kernels=False)[valid]
    assert (fast - reference).abs().max() < 5e-6  # measured 4.8e-7
    model.distilbert.int8_attention = False
    fp32_attention = _hidden(model, batch, kernels=False)[valid]
    assert (fp32_attention - reference).abs().max() > 5e-5  # measured 1.6e-4


def test_a_row_of_padding_only_attends_to_nothing_on_both_paths():
    model = _model()
    batch = _batch()
    batch["attention_mask"][2] = 0
    valid = batch["attention_mask"].bool()
    fast, reference = _hidden(model, batch), _hidden(model, batch, kernels=False)
    assert (fast - reference)[valid].abs().max() < 5e-6
    assert torch.count_nonzero(fast[2]) == 0


def test_attention_precision_survives_save_and_load(tmp_path):
    model = _model()
    batch = _batch()
    before = _logits(model, batch)
    model.save_pretrained(tmp_path / "int8")
    model.distilbert.int8_attention = False
    fp32_before = _logits(model, batch)
    model.save_pretrained(tmp_path / "fp32")
    int8 = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path / "int8").eval()
    fp32 = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path / "fp32").eval()
    assert int8.distilbert.int8_attention and not fp32.distilbert.int8_attention
    assert torch.equal(_logits(int8, batch), before)
    assert torch.equal(_logits(fp32, batch), fp32_before)
    assert not torch.equal(before, fp32_before)


def test_version_1_checkpoint_keeps_fp32_attention(tmp_path):
    """A checkpoint written before INT8 attention existed has no `attention` field and must compute as it did."""
    model = _model("fp32")
    batch = _batch()
    expected = _logits(model, batch)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization"]["format_version"] = 1
    del config["quantization"]["attention"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert not loaded.distilbert.int8_attention
    assert torch.equal(_logits(loaded, batch), expected)


def test_unknown_attention_in_config_json_is_a_checkpoint_error(tmp_path):
    _model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization"]["attention"] = "bf16"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(fd.CheckpointError, match="config.quantization.attention must be one of .* got 'bf16'"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_output_attentions_are_the_int8_probabilities():
    """Asking for attentions takes the torch path: it returns the INT8 softmax's probabilities (codes / their sum),
    zero on padding keys, rows summing to 1."""
    model = _model()
    batch = _batch()
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    valid = batch["attention_mask"].bool()
    assert len(out.attentions) == model.config.n_layers
    for probs in out.attentions:
        assert probs.shape == (3, 4, 21, 21)
        assert torch.count_nonzero(probs.masked_select(~valid[:, None, None, :])) == 0
        sums = probs.sum(dim=-1).permute(0, 2, 1)[valid]  # [valid queries, heads]
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
        # Probabilities are codes / sum, the largest code 255: every row is a multiple of its maximum / 255.
        rows = probs.permute(0, 2, 1, 3)[valid]  # [valid queries, heads, keys]
        steps = rows / rows.amax(dim=-1, keepdim=True) * 255
        assert (steps - steps.round()).abs().max() < 1e-3


def test_training_runs_the_fp32_attention():
    """In training the INT8 steps (rounding, no gradient) are skipped: an INT8-attention model trains like the same
    model with fp32 attention."""
    int8, fp32 = _model(), _model("fp32")
    batch = _batch()
    for model in (int8, fp32):
        model.train()
        model.config.attention_dropout = 0.0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    assert torch.equal(int8(**batch).start_logits, fp32(**batch).start_logits)
