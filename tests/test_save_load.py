"""save_pretrained / from_pretrained: safetensors only, identical logits, Auto classes, remote-code shims."""
import json

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, BertConfig, BertForQuestionAnswering

import fastdistilbert as fd
from fastdistilbert.testing import tiny_distilbert_qa
from remote_code_support import assert_remote_code_reload_is_identical

IDS = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(5))


def _logits(model):
    with torch.no_grad():
        out = model(input_ids=IDS)
    return out.start_logits, out.end_logits


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_round_trip_gives_identical_logits_and_safetensors_only(tmp_path, quantize):
    model = fd.convert_to_fast(tiny_distilbert_qa(seed=2), quantize=quantize).eval()
    model.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl", ".pth"))]
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert type(loaded) is fd.FastDistilBertForQuestionAnswering
    for a, b in zip(_logits(model), _logits(loaded)):
        assert torch.equal(a, b)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "fast_distilbert"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForQuestionAnswering"}
    assert (config["quantization"] is not None) == quantize


def test_int8_checkpoint_stores_int8_weights_and_scales(tmp_path):
    from safetensors import safe_open

    fd.convert_to_fast(tiny_distilbert_qa(), quantize=True).save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        key = "distilbert.transformer.layer.0.ffn.lin1"
        assert f.get_tensor(f"{key}.weight").dtype == torch.int8
        assert f.get_tensor(f"{key}.weight_scale").dtype == torch.float32
        assert f.get_tensor("qa_outputs.weight").dtype == torch.float32  # not quantized


def test_vanilla_distilbert_checkpoint_loads_into_fast_class(tmp_path):
    hf = tiny_distilbert_qa(seed=4)
    hf.save_pretrained(tmp_path)
    fast = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert fast.config.model_type == "fast_distilbert"
    for a, b in zip(_logits(hf), _logits(fast)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_bert_checkpoint_converts_on_load(tmp_path):
    torch.manual_seed(0)
    bert = BertForQuestionAnswering(BertConfig(vocab_size=97, hidden_size=24, num_hidden_layers=2,
                                               num_attention_heads=4, intermediate_size=40,
                                               max_position_embeddings=32)).eval()
    bert.save_pretrained(tmp_path)
    fast = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = bert(input_ids=IDS, token_type_ids=torch.zeros_like(IDS))
    got = _logits(fast)
    assert torch.allclose(expected.start_logits, got[0], atol=1e-5, rtol=0)
    assert torch.allclose(expected.end_logits, got[1], atol=1e-5, rtol=0)


def test_remote_code_loads_in_a_process_that_never_imported_fastdistilbert(tmp_path):
    model = fd.convert_to_fast(tiny_distilbert_qa(seed=6), quantize=True).eval()
    model.save_pretrained(tmp_path)
    assert_remote_code_reload_is_identical(tmp_path, model, tmp_path)


def test_resave_after_remote_code_load_keeps_shims(tmp_path):
    """PITFALLS 8: remote-code loading must not make the next save copy internal modules instead of the shims."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    fd.convert_to_fast(tiny_distilbert_qa()).save_pretrained(src)
    loaded = AutoModelForQuestionAnswering.from_pretrained(src, trust_remote_code=True)
    loaded.save_pretrained(dst)
    assert sorted(p.name for p in dst.glob("*.py")) == ["configuration_fast_distilbert.py", "modeling_fast_distilbert.py"]
    assert "from fastdistilbert" in (dst / "modeling_fast_distilbert.py").read_text()
    assert json.loads((dst / "config.json").read_text())["auto_map"]["AutoModelForQuestionAnswering"] == \
        "modeling_fast_distilbert.FastDistilBertForQuestionAnswering"


def test_save_refuses_to_overwrite_an_existing_checkpoint(tmp_path):
    model = fd.convert_to_fast(tiny_distilbert_qa())
    model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        fd.convert_to_fast(tiny_distilbert_qa(seed=9)).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    fd.convert_to_fast(tiny_distilbert_qa(seed=9)).save_pretrained(tmp_path, overwrite=True)
    assert (tmp_path / "model.safetensors").read_bytes() != before
