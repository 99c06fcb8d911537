"""Bad-input catalogue, checkpoints and the convert CLI: a damaged, foreign or self-contradicting checkpoint is
refused with a CheckpointError naming the problem; an output path that already holds files is never overwritten
without an explicit flag (bytes unchanged). (tests/test_bad_input.py holds the earlier cases: another
architecture, missing/corrupt/half-truncated safetensors, missing config, newer format version, INT8 config over
fp32 weights, pickle only.)"""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2Model

import fastdistilbert as fd
from fastdistilbert.cli import main
from fastdistilbert.testing import tiny_distilbert_qa

load = fd.FastDistilBertForQuestionAnswering.from_pretrained


@pytest.fixture(scope="module")
def saved_int8(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8")
    fd.convert_to_fast(tiny_distilbert_qa(), quantize=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def saved_fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp32")
    fd.convert_to_fast(tiny_distilbert_qa()).save_pretrained(path)
    return path


def copy_of(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


def edit_weights(path, change):
    tensors = load_file(path / "model.safetensors")
    change(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---- loading ---------------------------------------------------------------------------------------

def test_zero_byte_safetensors(saved_int8, tmp_path):
    path = copy_of(saved_int8, tmp_path)
    (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(fd.CheckpointError, match="corrupt or truncated safetensors.*header too small"):
        load(path)


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_foreign_safetensors_under_a_distilbert_config(saved_int8, saved_fp32, tmp_path, which):
    """Before: a GPT-2 file under an fp32 DistilBERT config loaded as a randomly initialized model (a warning)."""
    path = copy_of(saved_fp32 if which == "fp32" else saved_int8, tmp_path)
    GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=30, n_positions=16)).save_pretrained(tmp_path / "gpt2")
    shutil.copyfile(tmp_path / "gpt2" / "model.safetensors", path / "model.safetensors")
    with pytest.raises(fd.CheckpointError, match="no 'distilbert.embeddings.word_embeddings.weight': not a DistilBERT"):
        load(path)


def test_int8_weights_under_an_fp32_config(saved_int8, saved_fp32, tmp_path):
    """Before: the int8 codes were cast to float without their scales, a silently wrong model."""
    path = copy_of(saved_fp32, tmp_path)
    shutil.copyfile(saved_int8 / "model.safetensors", path / "model.safetensors")
    with pytest.raises(fd.CheckpointError, match="stored as I8 but config.json has no quantization section"):
        load(path)


def test_static_activations_claimed_but_weights_are_dynamic(saved_int8, tmp_path):
    path = copy_of(saved_int8, tmp_path)
    edit_config(path, quantization__activation="static")
    with pytest.raises(fd.CheckpointError, match="missing tensor .*q_lin.input_scale"):
        load(path)


@pytest.mark.parametrize("changes, message", [
    ({"quantization__activation": "per-channel"}, "activation must be one of .* got 'per-channel'"),
    ({"quantization": "int8"}, "config.quantization must be a dict or null, got str"),
], ids=["unknown-activation-mode", "not-a-dict"])
def test_unreadable_quantization_section(saved_int8, tmp_path, changes, message):
    path = copy_of(saved_int8, tmp_path)
    edit_config(path, **changes)
    with pytest.raises(fd.CheckpointError, match=message):
        load(path)


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_config_with_more_layers_than_the_weights(saved_int8, saved_fp32, tmp_path, which):
    """Before (fp32): the missing layer was initialized at random with a warning."""
    path = copy_of(saved_fp32 if which == "fp32" else saved_int8, tmp_path)
    edit_config(path, n_layers=3)
    with pytest.raises(fd.CheckpointError, match="missing tensor 'distilbert.transformer.layer.2.attention.q_lin.weight'"):
        load(path)


def test_config_hidden_size_contradicts_the_weights(saved_fp32, tmp_path):
    path = copy_of(saved_fp32, tmp_path)
    edit_config(path, dim=24)
    with pytest.raises(fd.CheckpointError, match=r"word_embeddings.weight' has shape \(97, 21\), but config.json implies \(97, 24\)"):
        load(path)


def test_missing_embeddings_in_an_int8_checkpoint(saved_int8, tmp_path):
    path = copy_of(saved_int8, tmp_path)
    edit_weights(path, lambda t: t.pop("distilbert.embeddings.word_embeddings.weight"))
    with pytest.raises(fd.CheckpointError, match="no 'distilbert.embeddings.word_embeddings.weight'"):
        load(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_non_finite_or_non_positive_weight_scale(saved_int8, tmp_path, bad):
    path = copy_of(saved_int8, tmp_path)
    edit_weights(path, lambda t: t["distilbert.transformer.layer.1.ffn.lin2.weight_scale"].index_fill_(0, torch.tensor([3]), bad))
    with pytest.raises(fd.CheckpointError, match="layer.1.ffn.lin2.weight_scale holds non-finite or non-positive"):
        load(path)


def test_int8_weight_of_minus_128(saved_int8, tmp_path):
    """The format is symmetric [-127, 127]: -128 is refused when the kernels are packed at load."""
    path = copy_of(saved_int8, tmp_path)
    edit_weights(path, lambda t: t["distilbert.transformer.layer.0.attention.q_lin.weight"].index_fill_(1, torch.tensor([0]), -128))
    with pytest.raises(ValueError, match="weight_q contains -128"):
        load(path)


def test_config_json_that_is_not_json(saved_int8, tmp_path):
    path = copy_of(saved_int8, tmp_path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(OSError, match="config.json' is not a valid JSON file"):
        load(path)


def test_corrupt_safetensors_index(saved_int8, tmp_path):
    path = copy_of(saved_int8, tmp_path)
    (path / "model.safetensors").rename(path / "model-00001-of-00001.safetensors")
    (path / "model.safetensors.index.json").write_text("{broken")
    with pytest.raises(fd.CheckpointError, match="corrupt model.safetensors.index.json"):
        load(path)


# ---- never overwrite ---------------------------------------------------------------------------------

def test_save_pretrained_into_a_directory_holding_only_a_config(tmp_path):
    (tmp_path / "config.json").write_text('{"mine": true}')
    with pytest.raises(FileExistsError, match=r"already holds a checkpoint \(config.json\); pass overwrite=True"):
        fd.convert_to_fast(tiny_distilbert_qa()).save_pretrained(tmp_path)
    assert snapshot(tmp_path) == {"config.json": b'{"mine": true}'}


def test_convert_into_a_sharded_checkpoint_is_refused(saved_int8, tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tiny_distilbert_qa(seed=1).save_pretrained(src)
    fd.convert_to_fast(tiny_distilbert_qa(seed=2)).save_pretrained(dst, max_shard_size="20KB")
    assert len(list(dst.glob("model-*.safetensors"))) > 1
    before = snapshot(dst)
    assert main(["convert", str(src), str(dst)]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert snapshot(dst) == before


def test_convert_refuses_to_replace_the_users_tokenizer_files(tmp_path, capsys):
    """Before: DST without a checkpoint but with the user's tokenizer.json got it replaced silently."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    tiny_distilbert_qa(seed=1).save_pretrained(src)
    (src / "tokenizer.json").write_text("{}")
    dst.mkdir()
    (dst / "tokenizer.json").write_text("the user's")
    assert main(["convert", str(src), str(dst)]) == 2
    assert "already holds tokenizer.json; pass --overwrite" in capsys.readouterr().err
    assert snapshot(dst) == {"tokenizer.json": b"the user's"}  # nothing else written either
    assert main(["convert", str(src), str(dst), "--overwrite"]) == 0
    assert (dst / "tokenizer.json").read_text() == "{}"


def test_convert_to_a_path_that_is_a_file(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "out.bin"
    tiny_distilbert_qa(seed=1).save_pretrained(src)
    dst.write_bytes(b"precious")
    assert main(["convert", str(src), str(dst)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert dst.read_bytes() == b"precious"


def test_convert_of_a_truncated_source_is_one_line_and_writes_nothing(saved_int8, tmp_path):
    src = copy_of(saved_int8, tmp_path)
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[:100])
    result = subprocess.run([sys.executable, "-m", "fastdistilbert.cli", "convert", str(src), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "corrupt or truncated safetensors" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--calibration-samples", "0", "--calibrate", "data.json"], "--calibration-samples must be >= 1"),
    (["--fp32", "--calibrate", "data.json"], "cannot be combined with --fp32"),
    (["--fp32", "--attention", "int8"], "--attention sets the INT8 model's attention; it cannot be combined with --fp32"),
])
def test_convert_argument_mistakes(tmp_path, capsys, args, message):
    src = tmp_path / "src"
    tiny_distilbert_qa(seed=1).save_pretrained(src)
    assert main(["convert", str(src), str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
