"""Third-party block-sparse SQuAD checkpoints (synthesized, see third_party_checkpoints.py) load through
`from_pretrained`, run on the sparse kernel of their pattern, and compute what their fp32 model computes.

Tolerance: INT8 logits are compared with the fp32 checkpoint's logits (real tokens only) by relative L2 error,
bound 5%. Why: an 8-bit code is off by at most half a step, 1/254 of its row's absolute maximum, i.e. a uniform
error of about 0.1% of that maximum RMS; rows of real activations and weights have a maximum 3-5x their RMS, so
each GEMM adds roughly 0.5% relative noise to its output, and the 24 GEMMs of a 6-layer encoder add up in
quadrature (x5): about 2.5%, measured 2.4% on the 80%-sparse MiniLM below. 5% is twice that estimate; a wrong
scale, a transposed block or a lost zero gives errors of order 1.
"""
import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForQuestionAnswering

import fastdistilbert as fd
from fastdistilbert.model_card import render_card
from fastdistilbert.ops_available import kernels_available
from fastdistilbert.testing import tiny_distilbert_qa

import third_party_checkpoints as tp

INT8_TOLERANCE = 0.05
QUESTIONS = ["What is the capital of France?", "Who designed the tower?"]
CONTEXTS = ["Paris is the capital and most populous city of France, on the Seine.",
            "The Eiffel Tower in Paris was designed by the engineering company of Gustave Eiffel in 1889."]


@pytest.fixture(scope="module")
def minilm_batch(minilm_qa):
    _, tokenizer = minilm_qa
    return tokenizer(QUESTIONS, CONTEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)


def _fresh_minilm():
    from fastdistilbert.testing import minilm_qa_model

    return minilm_qa_model(seed=0)[0]


def _start_end(model, batch) -> torch.Tensor:
    """Start and end logits of the real tokens (the Fast runtime never computes padding positions)."""
    with torch.no_grad():
        out = model(**batch)
    real = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
    return torch.cat([out.start_logits[real], out.end_logits[real]])


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _assert_int8_matches_fp32(int8_model, fp32_model, batch) -> None:
    assert _relative_error(_start_end(int8_model, batch), _start_end(fp32_model, batch)) <= INT8_TOLERANCE


def _assert_report(model, patterns: tuple[str, ...], max_density: float, activations: str = "dynamic") -> None:
    report = model.kernel_report()
    assert len(report) == 4 * model.config.n_layers
    for row in report:
        assert row["format"] in patterns, row
        assert row["block_density"] <= max_density, row
        assert row["activations"] == activations
        assert row["isa"] == fd.active_isa()


pytestmark = pytest.mark.skipif(not kernels_available(), reason="the C++ kernels are needed to report kernel patterns")

# (4, 1) zeros at 80% also leave ~45% of the (1, 4) blocks empty, so both sparse kernels qualify; the 4x1 kernel,
# at block density 0.2, must win.
INTEL_PATTERNS = ("4x1",)
INTEL_MAX_DENSITY = 0.2 + 1e-3


def test_intel_style_4x1_checkpoint_runs_on_the_4x1_kernel(tmp_path, minilm_batch):
    hf = _fresh_minilm()
    tp.write_intel_style(hf, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["pruning_config"]["pattern"] == "1x4" and config["torch_dtype"] == "float32"

    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert [row["format"] for row in model.kernel_report()] == ["fp32"] * 24
    assert torch.equal(_start_end(model, minilm_batch), _start_end(hf, minilm_batch))  # fp32: bit-identical
    fd.quantize_model(model)
    _assert_report(model, INTEL_PATTERNS, max_density=INTEL_MAX_DENSITY)
    _assert_int8_matches_fp32(model, hf, minilm_batch)


def test_neural_magic_style_1x4_bert_checkpoint_runs_on_the_1x4_kernel(tmp_path):
    torch.manual_seed(4)
    config = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40)
    bert = BertForQuestionAnswering(config).eval()
    tp.write_neural_magic_style(bert, tmp_path)
    ids = torch.randint(1, 97, (2, 11), generator=torch.Generator().manual_seed(6))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    fd.quantize_model(model)
    _assert_report(model, ("1x4",), max_density=0.2 + 1e-3)
    _assert_int8_matches_fp32(model, bert, batch)


def test_intel_style_int8_qdq_export_loads_exactly(tmp_path, minilm_batch):
    hf = _fresh_minilm()
    for linear in tp.encoder_linears(hf).values():
        tp.block_prune_(linear.weight, (4, 1))
    exported = tp.write_qdq_int8(hf, tmp_path)

    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert model.config.is_quantized and model.config.quantization["imported_from"]["format"] == "qdq"
    assert not hasattr(model.config, "quantization_config")
    for name, linear in model.quantized_linears().items():  # the exported integers, untouched
        assert torch.equal(linear.weight, exported[f"{name}.weight_quantized"])
        assert torch.equal(linear.weight_scale, exported[f"{name}.weight_scale"])
    _assert_report(model, INTEL_PATTERNS, max_density=INTEL_MAX_DENSITY)
    _assert_int8_matches_fp32(model, hf, minilm_batch)

    resaved = tmp_path / "fast"
    model.save_pretrained(resaved)
    reloaded = fd.FastDistilBertForQuestionAnswering.from_pretrained(resaved).eval()
    assert torch.equal(_start_end(reloaded, minilm_batch), _start_end(model, minilm_batch))
    card = render_card(resaved)
    assert "Imported from a third-party QDQ INT8 export." in card and "block-sparse-4x1" in card


def test_bert_qdq_export_converts_to_the_distilbert_layout(tmp_path):
    torch.manual_seed(8)
    config = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40)
    bert = BertForQuestionAnswering(config).eval()
    linears = tp.bert_encoder_linears(bert)
    for linear in linears.values():
        tp.block_prune_(linear.weight, (4, 1))
    exported = tp.write_qdq_int8(bert, tmp_path, linears=linears)

    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert model.config.quantization["imported_from"]["quantization_config"]["quant_method"] == "qdq"
    q_lin = model.get_submodule("distilbert.transformer.layer.1.attention.q_lin")
    assert torch.equal(q_lin.weight, exported["bert.encoder.layer.1.attention.self.query.weight_quantized"])
    _assert_report(model, ("4x1",), max_density=0.2 + 1e-3)
    ids = torch.randint(1, 97, (2, 11), generator=torch.Generator().manual_seed(6))
    _assert_int8_matches_fp32(model, bert, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})


def test_qdq_per_tensor_scales_and_static_activations(tmp_path):
    hf = tiny_distilbert_qa(seed=7, dim=32, hidden_dim=64, n_heads=4)
    for linear in tp.encoder_linears(hf).values():
        tp.block_prune_(linear.weight, (1, 4))
    exported = tp.write_qdq_int8(hf, tmp_path, per_channel=False, input_params=(0.02, 128))

    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert model.config.static_activations
    for name, linear in model.quantized_linears().items():
        assert torch.equal(linear.weight_scale, exported[f"{name}.weight_scale"].expand(linear.out_features))
        assert float(linear.input_scale) == pytest.approx(0.02) and int(linear.input_zero_point) == 128
    _assert_report(model, ("1x4",), max_density=0.2 + 1e-3, activations="static")
    ids = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(1))
    with_kernels = _start_end(model, {"input_ids": ids})
    model.distilbert.use_int8_kernels = False  # torch reference of the same integer math
    assert torch.allclose(with_kernels, _start_end(model, {"input_ids": ids}), atol=1e-5)


def _rewrite(path, key, value):
    state = load_file(str(path))
    state[key] = value
    save_file(state, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("key_suffix, value, message", [
    ("weight_zero_point", torch.full((32,), 3, dtype=torch.int8), "asymmetric weight quantization"),
    ("weight_scale", -torch.ones(32), "positive floating-point scales"),
    ("weight_scale", torch.ones(5), "expected [] (per tensor) or [32]"),
    ("weight_quantized", torch.zeros(32, 32, dtype=torch.float32), "must be a 2-D int8 tensor"),
    ("weight_quantized", torch.zeros(32, 16, dtype=torch.int8), "does not match its config.json"),
])
def test_qdq_bad_tensors_fail_with_the_reason(tmp_path, key_suffix, value, message):
    tp.write_qdq_int8(tiny_distilbert_qa(seed=7, dim=32, hidden_dim=64, n_heads=4), tmp_path)
    _rewrite(tmp_path / "model.safetensors", f"distilbert.transformer.layer.1.attention.q_lin.{key_suffix}", value)
    with pytest.raises(fd.CheckpointError, match=re.escape(message)):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_qdq_code_minus_128_is_requantized_with_a_warning(tmp_path):
    exported = tp.write_qdq_int8(tiny_distilbert_qa(seed=7, dim=32, hidden_dim=64, n_heads=4), tmp_path)
    key = "distilbert.transformer.layer.0.ffn.lin1.weight_quantized"
    weight = exported[key].clone()
    weight[3, 0] = -128
    _rewrite(tmp_path / "model.safetensors", key, weight)
    with pytest.warns(UserWarning, match="1 output channels use the int8 code -128"):
        model = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)
    loaded = model.get_submodule("distilbert.transformer.layer.0.ffn.lin1")
    assert int(loaded.weight.min()) >= -127
    assert torch.equal(loaded.weight[4:], weight[4:])  # untouched channels stay bit-exact
    scale = exported[key.replace("_quantized", "_scale")]
    assert torch.allclose(loaded.dequantized_weight()[3], weight[3].float() * scale[3], atol=float(scale[3]))
