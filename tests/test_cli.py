"""The console script: info, convert (+ calibrate), demo; user mistakes are one line, not a traceback."""
import json
import os
import subprocess
import sys

import pytest
import torch

import fastdistilbert as fd
from fastdistilbert.benchmarking.env import cpu_model
from fastdistilbert.cli import main
from fastdistilbert.testing import minilm_tokenizer, tiny_distilbert_qa


def test_info_reports_cpu_features_and_isas(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["available_isas"] == fd.available_isas() and info["active_isa"] == fd.active_isa()
    assert "ref" in info["compiled_isas"] and info["cpuid"] is not None and info["cpu"]
    assert info["cpu_model"] == cpu_model()
    assert main(["info"]) == 0
    assert "active ISA" in capsys.readouterr().out


def test_console_script_help_for_every_command():
    exe = [sys.executable, "-m", "fastdistilbert.cli"]
    for command in ("info", "demo", "eval", "convert", "bench", "recipe"):
        result = subprocess.run(exe + [command, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage: fastdistilbert " + command in result.stdout


def test_user_mistake_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastdistilbert.cli", "convert", str(tmp_path / "missing"),
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("fastdistilbert convert: error: ")


@pytest.mark.parametrize("setting, message", [
    ({"FASTDISTILBERT_FORCE_ISA": "sse9"}, "unknown ISA 'sse9'"),
    ({"FASTDISTILBERT_HIDE_CPU_FEATURES": "avx512_vnni", "FASTDISTILBERT_FORCE_ISA": "avx512vnni"},
     "ISA 'avx512vnni' is not supported by this CPU"),
    ({"FASTDISTILBERT_HIDE_CPU_FEATURES": "sse9"}, "names an unknown feature 'sse9'"),
])
def test_a_bad_isa_setting_is_one_line_without_traceback(setting, message):
    result = subprocess.run([sys.executable, "-m", "fastdistilbert.cli", "info"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **setting})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-800:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("fastdistilbert info: error: ") and message in result.stderr


def test_convert_vanilla_checkpoint_to_int8_and_refuse_overwrite(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    hf = tiny_distilbert_qa(seed=3)
    hf.save_pretrained(src)
    assert main(["convert", str(src), str(dst)]) == 0
    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(dst)
    assert model.config.quantization["activation"] == "dynamic" and model.config.int8_attention
    assert "INT8 (dynamic activations, int8 attention)" in capsys.readouterr().out
    before = (dst / "model.safetensors").read_bytes()
    assert main(["convert", str(src), str(dst), "--fp32"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert (dst / "model.safetensors").read_bytes() == before


def test_convert_attention_choice_for_new_and_fast_checkpoints(tmp_path):
    """--attention fp32 on a conversion; --attention on a Fast INT8 checkpoint switches it, its weights untouched."""
    src = tmp_path / "src"
    tiny_distilbert_qa(seed=3).save_pretrained(src)
    assert main(["convert", str(src), str(tmp_path / "fp32-attention"), "--attention", "fp32"]) == 0
    fp32 = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path / "fp32-attention")
    assert fp32.config.is_quantized and not fp32.config.int8_attention
    assert main(["convert", str(tmp_path / "fp32-attention"), str(tmp_path / "int8-attention"), "--attention",
                 "int8"]) == 0
    int8 = fd.FastDistilBertForQuestionAnswering.from_pretrained(tmp_path / "int8-attention")
    assert int8.config.int8_attention
    assert all(torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), int8.state_dict().values()))


def test_convert_with_calibration_stores_static_scales(tmp_path, data_dir):
    src, dst = tmp_path / "src", tmp_path / "dst"
    hf = tiny_distilbert_qa(seed=3, vocab_size=30522, max_position_embeddings=512)
    hf.save_pretrained(src)
    minilm_tokenizer().save_pretrained(src)
    assert main(["convert", str(src), str(dst), "--calibrate", str(data_dir / "squad-v1.1-train-head.json"),
                 "--calibration-samples", "8"]) == 0
    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(dst)
    assert model.config.static_activations
    q_lin = model.distilbert.transformer.layer[0].attention.q_lin
    assert q_lin.input_scale > 0 and (dst / "tokenizer.json").exists()


def test_demo_runs_on_embedded_questions(capsys):
    assert main(["demo", "--limit", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "same answer as HF fp32:" in out and "speed-up" in out and "questions: 3" in out


def test_bench_writes_records_with_the_required_fields(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--json", str(out), "--runtimes", "fastdistilbert,pytorch-fp32", "--variants", "int8-dense",
                 "--points", "16x1", "--budget", "0.05", "--rounds", "2", "--throughput-batches", "0"]) == 0
    result = json.loads(out.read_text())
    runtimes = {r["runtime"] for r in result["records"]}
    assert runtimes == {"fastdistilbert", "pytorch-fp32"}
    for record in result["records"]:
        assert {"runtime", "variant", "seq", "batch", "seq_per_s", "p50_ms", "p90_ms", "cpu", "isa", "threads"} <= set(record)
        assert record["rounds"] == 2 and record["iters"] >= 5
    assert main(["bench", "--json", str(out), "--points", "16x1"]) == 2  # never overwrites a result
