"""Bad input fails early with a message that names the problem (never a crash or a silently wrong answer)."""
import json

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, GPT2Config, GPT2Model

import fastdistilbert as fd
from fastdistilbert.testing import tiny_distilbert_qa


@pytest.fixture(scope="module")
def model():
    return fd.convert_to_fast(tiny_distilbert_qa()).eval()  # max_position_embeddings=40, vocab 97


@pytest.fixture
def saved(tmp_path):
    fd.convert_to_fast(tiny_distilbert_qa(), quantize=True).save_pretrained(tmp_path)
    return tmp_path


def test_sequence_longer_than_position_limit(model):
    with pytest.raises(ValueError, match="sequence length 41 exceeds max_position_embeddings=40"):
        model(input_ids=torch.zeros(1, 41, dtype=torch.long))


def test_non_integer_input_ids(model):
    with pytest.raises(TypeError, match="input_ids must be an integer tensor.*float32"):
        model(input_ids=torch.zeros(1, 5))


def test_input_ids_outside_vocabulary(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=torch.full((1, 5), 500))


def test_attention_mask_of_wrong_shape(model):
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 4\) but the input has shape \(1, 5\)"):
        model(input_ids=torch.zeros(1, 5, dtype=torch.long), attention_mask=torch.ones(1, 4, dtype=torch.long))


def test_checkpoint_of_another_architecture(tmp_path):
    GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=30, n_positions=16)).save_pretrained(tmp_path)
    with pytest.raises(fd.CheckpointError, match="'gpt2' checkpoint"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_missing_model_safetensors(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(fd.CheckpointError, match="no model.safetensors"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(saved)


def test_corrupt_model_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(fd.CheckpointError, match="corrupt or truncated safetensors"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(saved)


def test_truncated_model_safetensors(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(fd.CheckpointError, match="corrupt or truncated safetensors"):
        AutoModelForQuestionAnswering.from_pretrained(saved)


def test_missing_config(tmp_path):
    with pytest.raises(fd.CheckpointError, match="no config.json"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_newer_quantization_format_version(saved):
    config = json.loads((saved / "config.json").read_text())
    config["quantization"]["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(fd.CheckpointError, match="unsupported quantization format_version 99"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(saved)


def test_config_claims_int8_but_weights_are_fp32(tmp_path):
    """PITFALLS 11: the loader would cast fp32 weights into int8 buffers silently."""
    fd.convert_to_fast(tiny_distilbert_qa()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization"] = {"format_version": 1, "weights": "int8-symmetric-per-channel", "activation": "dynamic"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(fd.CheckpointError, match="stored as F32, expected I8"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_pickle_only_checkpoint_is_refused(tmp_path):
    hf = tiny_distilbert_qa()
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(fd.CheckpointError, match="pickle checkpoint"):
        fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path)


def test_forced_isa_the_cpu_lacks_or_unknown():
    with pytest.raises(RuntimeError, match="unknown ISA 'sse9'"):
        fd.set_isa("sse9")
    missing = [isa for isa in fd.compiled_isas() if isa not in fd.available_isas()]
    if missing:  # on this CPU some compiled variant cannot run: forcing it must be refused by name
        with pytest.raises(RuntimeError, match=f"'{missing[0]}'.*not supported by this CPU"):
            fd.set_isa(missing[0])
    assert fd.active_isa() == fd.available_isas()[0]
