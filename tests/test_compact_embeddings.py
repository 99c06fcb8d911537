"""Compact word embeddings (int8 codes + one fp32 scale per row): formula, bit-identical round trips, file size,
remote code, the HF peer, and clear errors on corrupt checkpoints."""
import json

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForQuestionAnswering

import fastdistilbert as fd
from fastdistilbert.conversion import to_hf_distilbert
from fastdistilbert.testing import tiny_distilbert_qa
from remote_code_support import assert_remote_code_reload_is_identical

IDS = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(5))
EMBEDDINGS = "distilbert.embeddings.word_embeddings"


def _logits(model):
    with torch.no_grad():
        out = model(input_ids=IDS)
    return out.start_logits, out.end_logits


def _fast(seed=2, quantize=False, **overrides):
    return fd.convert_to_fast(tiny_distilbert_qa(seed=seed, **overrides), quantize=quantize).eval()


def _stored(path):
    with safe_open(path / "model.safetensors", "pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


@pytest.fixture
def saved_compact(tmp_path):
    path = tmp_path / "compact"
    _fast(quantize=True).save_pretrained(path, compact_embeddings=True)
    return path


def test_compaction_follows_the_per_row_formula():
    model = _fast()
    with torch.no_grad():
        model.distilbert.embeddings.word_embeddings.weight[3].zero_()  # an all-zero row gets scale 1
    original = model.distilbert.embeddings.word_embeddings.weight.detach().numpy().copy()
    fd.compact_embeddings(model)
    scale = np.abs(original).max(axis=1) / np.float32(127)
    scale[scale == 0] = 1.0  # rows 3 and 0 (padding_idx)
    codes = np.clip(np.round(original / scale[:, None]), -127, 127)  # numpy rounds half to even too
    embedding = model.distilbert.embeddings.word_embeddings
    assert np.array_equal(embedding.weight_scale.numpy(), scale.astype(np.float32))
    assert np.array_equal(embedding.weight.detach().numpy(), (codes * scale[:, None]).astype(np.float32))
    assert model.config.quantization == {"format_version": 2, "embeddings": "int8-symmetric-per-row"}
    assert not model.config.is_quantized and model.config.compact_embeddings
    position = model.distilbert.embeddings.position_embeddings.weight
    assert torch.equal(position, tiny_distilbert_qa(seed=2).distilbert.embeddings.position_embeddings.weight)


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_round_trip_is_bit_identical_and_stores_int8_codes(tmp_path, caplog, quantize):
    model = _fast(quantize=quantize)
    model.save_pretrained(tmp_path, compact_embeddings=True)
    stored = _stored(tmp_path)
    assert stored[f"{EMBEDDINGS}.weight"].dtype == torch.int8
    assert stored[f"{EMBEDDINGS}.weight_scale"].dtype == torch.float32
    assert stored[f"{EMBEDDINGS}.weight_scale"].shape == (97,)
    assert stored["distilbert.embeddings.position_embeddings.weight"].dtype == torch.float32
    caplog.clear()
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path).eval()
    assert "LOAD REPORT" not in caplog.text  # no missing or unexpected keys
    assert loaded.config.is_quantized == quantize and loaded.config.compact_embeddings
    assert torch.equal(loaded.distilbert.embeddings.word_embeddings.weight,
                       model.distilbert.embeddings.word_embeddings.weight)
    for a, b in zip(_logits(model), _logits(loaded)):
        assert torch.equal(a, b)
    # The encoder class loads the same checkpoint (its QA head is reported as unexpected, as for any QA checkpoint).
    encoder = fd.FastDistilBertModel.from_pretrained(tmp_path)
    assert "LOAD REPORT" in caplog.text  # the capture does see the loader's report
    assert torch.equal(encoder.embeddings.word_embeddings.weight, model.distilbert.embeddings.word_embeddings.weight)


def test_encoder_only_model_round_trip(tmp_path):
    encoder = fd.compact_embeddings(_fast().distilbert)
    encoder.save_pretrained(tmp_path)
    assert _stored(tmp_path)["embeddings.word_embeddings.weight"].dtype == torch.int8
    loaded = fd.FastDistilBertModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(encoder(input_ids=IDS).last_hidden_state, loaded(input_ids=IDS).last_hidden_state)


def test_compact_file_is_smaller_by_three_bytes_per_weight(tmp_path):
    vocab, dim = 3001, 21
    plain, compact = tmp_path / "plain", tmp_path / "compact"
    _fast(quantize=True, vocab_size=vocab).save_pretrained(plain)
    _fast(quantize=True, vocab_size=vocab).save_pretrained(compact, compact_embeddings=True)
    saved = (plain / "model.safetensors").stat().st_size - (compact / "model.safetensors").stat().st_size
    expected = vocab * dim * 3 - vocab * 4  # fp32 -> int8 codes, plus one fp32 scale per row
    assert abs(saved - expected) < 512, (saved, expected)  # the rest is the JSON header


def test_normal_save_still_stores_fp32(tmp_path):
    _fast(quantize=True).save_pretrained(tmp_path)
    stored = _stored(tmp_path)
    assert stored[f"{EMBEDDINGS}.weight"].dtype == torch.float32
    assert f"{EMBEDDINGS}.weight_scale" not in stored
    assert "embeddings" not in json.loads((tmp_path / "config.json").read_text())["quantization"]


def test_compacted_model_saves_compact_and_quantizing_afterwards_keeps_the_record(tmp_path):
    model = fd.compact_embeddings(_fast())
    fd.quantize_model(model)
    assert model.config.is_quantized and model.config.compact_embeddings
    model.save_pretrained(tmp_path)  # no flag: the config already says compact
    assert _stored(tmp_path)[f"{EMBEDDINGS}.weight"].dtype == torch.int8
    loaded = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path).eval()
    for a, b in zip(_logits(model), _logits(loaded)):
        assert torch.equal(a, b)


def test_save_refuses_embeddings_changed_after_compaction(tmp_path):
    model = fd.compact_embeddings(_fast())
    with torch.no_grad():
        model.distilbert.embeddings.word_embeddings.weight[5, 0] += 1e-3
    with pytest.raises(ValueError, match="word embeddings changed since"):
        model.save_pretrained(tmp_path)


def test_hf_peer_computes_with_the_dequantized_embeddings(saved_compact, tmp_path):
    fp32_dir = tmp_path / "fp32"
    _fast(seed=3).save_pretrained(fp32_dir, compact_embeddings=True)
    fast = fd.FastDistilBertForQuestionAnswering.from_pretrained(fp32_dir).eval()
    hf = to_hf_distilbert(fast)
    for a, b in zip(_logits(fast), _logits(hf)):  # the fp32 Fast model runs DistilBERT's own forward
        assert torch.equal(a, b)
    stored = _stored(saved_compact)
    dequantized = stored[f"{EMBEDDINGS}.weight"].float() * stored[f"{EMBEDDINGS}.weight_scale"][:, None]
    int8_hf = to_hf_distilbert(fd.FastDistilBertForQuestionAnswering.from_pretrained(saved_compact))
    assert torch.equal(int8_hf.distilbert.embeddings.word_embeddings.weight, dequantized)


def test_remote_code_loads_a_compact_checkpoint_in_a_fresh_process(saved_compact, tmp_path):
    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(saved_compact)
    assert_remote_code_reload_is_identical(saved_compact, model, tmp_path)


# ---- corrupt checkpoints -------------------------------------------------------------------------------

def _rewrite(path, change):
    tensors = load_file(path / "model.safetensors")
    change(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def _set(key, value):
    return lambda tensors: tensors.__setitem__(key, value)


def _scaled(factor):
    def change(tensors):
        scale = tensors[f"{EMBEDDINGS}.weight_scale"].clone()
        scale[7] = factor
        tensors[f"{EMBEDDINGS}.weight_scale"] = scale
    return change


def _code(value):
    def change(tensors):
        codes = tensors[f"{EMBEDDINGS}.weight"].clone()
        codes[4, 2] = value
        tensors[f"{EMBEDDINGS}.weight"] = codes
    return change


@pytest.mark.parametrize("change, message", [
    (_set(f"{EMBEDDINGS}.weight", torch.zeros(97, 21)), "word_embeddings.weight' is stored as F32, expected I8"),
    (_set(f"{EMBEDDINGS}.weight", torch.zeros(97, 21, dtype=torch.int16)), "stored as I16, expected I8"),
    (_set(f"{EMBEDDINGS}.weight_scale", torch.ones(96)), r"weight_scale' has shape \(96,\), expected \(97,\)"),
    (_set(f"{EMBEDDINGS}.weight_scale", torch.ones(97, 1)), r"weight_scale' has shape \(97, 1\), expected \(97,\)"),
    (_set(f"{EMBEDDINGS}.weight_scale", torch.ones(97, dtype=torch.float64)), "stored as F64, expected F32"),
    (lambda t: t.pop(f"{EMBEDDINGS}.weight_scale"), "missing tensor .*weight_scale.* checkpoint is corrupt"),
    (_scaled(float("nan")), "weight_scale holds non-finite or non-positive values"),
    (_scaled(float("inf")), "weight_scale holds non-finite or non-positive values"),
    (_scaled(0.0), "weight_scale holds non-finite or non-positive values"),
    (_scaled(-0.5), "weight_scale holds non-finite or non-positive values"),
    (_code(-128), r"codes outside \[-127, 127\]"),
], ids=["codes-f32", "codes-i16", "scale-short", "scale-2d", "scale-f64", "scale-missing", "scale-nan", "scale-inf",
        "scale-zero", "scale-negative", "code-minus-128"])
def test_corrupt_compact_checkpoint_is_refused(saved_compact, change, message):
    _rewrite(saved_compact, change)
    with pytest.raises(ValueError, match=message):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(saved_compact)


def test_config_says_compact_but_the_file_is_plain_fp32(tmp_path):
    model = _fast()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization"] = {"format_version": 1, "embeddings": "int8-symmetric-per-row"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="word_embeddings.weight' is stored as F32, expected I8"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_unknown_embeddings_format_in_config(saved_compact):
    config = json.loads((saved_compact / "config.json").read_text())
    config["quantization"]["embeddings"] = "int4-per-row"
    (saved_compact / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="quantization.embeddings must be 'int8-symmetric-per-row'.*'int4-per-row'"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(saved_compact)


def test_compact_file_under_a_config_without_the_record(saved_compact):
    config = json.loads((saved_compact / "config.json").read_text())
    del config["quantization"]["embeddings"]
    (saved_compact / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="word_embeddings.weight' is stored as I8"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(saved_compact)


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_model_card_states_the_compact_embeddings(tmp_path, quantize):
    from fastdistilbert.model_card import render_card

    _fast(quantize=quantize).save_pretrained(tmp_path, compact_embeddings=True)
    card = render_card(tmp_path)
    front = yaml.safe_load(card[4:].split("\n---\n", 1)[0])
    assert ("int8" if quantize else "fp32") in front["tags"]
    assert ("fp32" if quantize else "int8") not in front["tags"]  # compact embeddings alone do not make it INT8
    assert "Word embeddings: stored as int8 codes with one fp32 scale per row" in card
    assert "word embeddings stored int8 per row" in card
