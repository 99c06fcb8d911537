"""Model cards: valid YAML metadata, model-index from the evaluation file, measured numbers only."""
import json
import re

import pytest
import yaml

import fastdistilbert as fd
from fastdistilbert.cli import main as cli_main
from fastdistilbert.model_card import render_card
from fastdistilbert.testing import tiny_distilbert_qa

import third_party_checkpoints as tp

EVAL = {"model": "/home/someone/models/tiny", "data": "/home/someone/data/xquad-en.json",
        "settings": {"max_seq_len": 384, "doc_stride": 128}, "exact_match": 61.3445378, "f1": 72.0123, "n": 1190,
        "n_windows": 1234}
BENCH = {"environment": {"cpu": "Test CPU 9000", "isa": "avx512vnni", "threads": 2, "versions": {"torch": "2.13.0"}},
         "records": [{"runtime": "fastdistilbert", "variant": "int8-sparse80-4x1", "seq": 128, "batch": 8,
                      "iters": 50, "seq_per_s": 412.345, "p50_ms": 19.41, "p90_ms": 20.07},
                     {"runtime": "transformers", "variant": "dense", "seq": 128, "batch": 8, "iters": 20,
                      "seq_per_s": 95.5, "p50_ms": 83.7, "p90_ms": 88.02}]}


def split_card(card: str) -> tuple[dict, dict[str, str]]:
    """(YAML metadata, {section title: body})."""
    assert card.startswith("---\n")
    front, body = card[4:].split("\n---\n", 1)
    found = re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", body, flags=re.S | re.M)
    sections = {title: text.strip() for title, text in found}
    return yaml.safe_load(front), sections


@pytest.fixture
def sparse_int8_dir(tmp_path):
    hf = tiny_distilbert_qa(seed=3, dim=32, hidden_dim=64, n_heads=4)
    for linear in tp.encoder_linears(hf).values():
        tp.block_prune_(linear.weight, (4, 1))
    model = fd.convert_to_fast(hf, quantize=True)
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_card_without_measurements_has_metadata_but_no_invented_numbers(sparse_int8_dir):
    metadata, sections = split_card(render_card(sparse_int8_dir))
    assert metadata["license"] == "apache-2.0" and metadata["pipeline_tag"] == "question-answering"
    assert {"fastdistilbert", "int8", "sparse", "block-sparse-4x1"} <= set(metadata["tags"])
    assert "model-index" not in metadata and "datasets" not in metadata and "base_model" not in metadata
    for title in ("Evaluation", "Speed"):
        assert not re.search(r"\d", sections[title]), sections[title]
    assert sections["Evaluation"].startswith("Not evaluated")
    assert sections["Speed"].startswith("Not benchmarked")
    assert "records no training recipe" in sections["Training recipe"]


def test_sparsity_table_is_computed_from_the_weights(sparse_int8_dir):
    from safetensors.torch import load_file

    _, sections = split_card(render_card(sparse_int8_dir))
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (\d+x\d+) \| ([\d.]+)% \| (\w+) \| ([\d.]+) \|$", sections["Sparsity"],
                      flags=re.M)
    assert len(rows) == 2 * 6
    weights = load_file(str(sparse_int8_dir / "model.safetensors"))
    for layer, linear, shape, zeros, pattern, density in rows:
        parent = "ffn" if linear in ("lin1", "lin2") else "attention"
        weight = weights[f"distilbert.transformer.layer.{layer}.{parent}.{linear}.weight"]
        assert shape == "x".join(map(str, weight.shape))
        assert float(zeros) == pytest.approx(100 * float(weight.eq(0).float().mean()), abs=0.05)
        assert pattern == "4x1"
        blocks = weight.reshape(weight.shape[0] // 4, 4, weight.shape[1]).ne(0).any(dim=1)
        assert float(density) == pytest.approx(float(blocks.float().mean()), abs=5e-4)


def test_model_index_carries_the_measured_em_and_f1(sparse_int8_dir):
    card = render_card(sparse_int8_dir, EVAL, repo_id="alice/tiny", base_model="distilbert/distilbert-base-uncased")
    metadata, sections = split_card(card)
    assert metadata["base_model"] == "distilbert/distilbert-base-uncased"
    assert metadata["datasets"] == ["google/xquad"]
    [entry] = metadata["model-index"]
    assert entry["name"] == "alice/tiny"
    [result] = entry["results"]
    assert result["task"]["type"] == "question-answering"
    assert result["dataset"] == {"name": "XQuAD (en)", "type": "google/xquad", "config": "xquad.en",
                                 "split": "validation"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"exact_match": 61.34, "f1": 72.01}
    assert "Dataset: XQuAD (en)." in sections["Evaluation"]
    assert "| this checkpoint | 1190 | 61.34 | 72.01 |" in sections["Evaluation"]
    assert "/home/someone" not in card  # local paths never reach a card


def test_benchmark_table_records_cpu_isa_threads(sparse_int8_dir):
    _, sections = split_card(render_card(sparse_int8_dir, bench=BENCH, plot="bench.png"))
    speed = sections["Speed"]
    assert "Test CPU 9000, ISA `avx512vnni`, 2 threads (torch 2.13.0)" in speed
    assert "| fastdistilbert | int8-sparse80-4x1 | 128 | 8 | 412.3 | 19.4 | 20.1 |" in speed
    assert "| transformers | dense | 128 | 8 | 95.5 | 83.7 | 88.0 |" in speed
    assert "![throughput against p90 latency](bench.png)" in speed


def test_recorded_recipe_is_listed(sparse_int8_dir):
    recipe = {"stage": "prune+distill", "sparsity": 0.8, "block": [4, 1], "teacher": {"temperature": 2.0},
              "dataset": "my-qa-data.json"}
    (sparse_int8_dir / "recipe.json").write_text(json.dumps(recipe))
    metadata, sections = split_card(render_card(sparse_int8_dir))
    text = sections["Training recipe"]
    for line in ("| stage | prune+distill |", "| sparsity | 0.8 |", "| block | [4, 1] |", "| teacher.temperature | 2.0 |"):
        assert line in text
    assert metadata["datasets"] == ["my-qa-data.json"]


def test_fp32_checkpoint_card(tmp_path):
    fd.convert_to_fast(tiny_distilbert_qa(seed=1)).save_pretrained(tmp_path)
    metadata, sections = split_card(render_card(tmp_path))
    assert "fp32" in metadata["tags"] and "sparse" not in metadata["tags"]
    assert sections["Quantization"].startswith("None: fp32")


def test_card_command_writes_refuses_to_overwrite_and_reports_bad_files(sparse_int8_dir, tmp_path, capsys):
    (tmp_path / "eval.json").write_text(json.dumps(EVAL))
    (tmp_path / "bench.json").write_text(json.dumps(BENCH))
    args = ["card", "--model", str(sparse_int8_dir), "--eval", str(tmp_path / "eval.json"), "--bench",
            str(tmp_path / "bench.json")]
    assert cli_main(args) == 0
    metadata, _ = split_card((sparse_int8_dir / "README.md").read_text())
    assert metadata["model-index"][0]["results"][0]["metrics"][1]["value"] == 72.01
    assert cli_main(args) == 2
    assert "README.md exists; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli_main(args[:3] + ["--eval", str(tmp_path / "bad.json"), "--overwrite"]) == 2
    assert "--eval file at" in capsys.readouterr().err
    (tmp_path / "no-metrics.json").write_text(json.dumps({"data": "x.json"}))
    assert cli_main(args[:3] + ["--eval", str(tmp_path / "no-metrics.json"), "--overwrite"]) == 2
    assert "no numeric exact_match, f1" in capsys.readouterr().err


def test_card_refuses_a_non_fast_checkpoint(tmp_path):
    tiny_distilbert_qa(seed=1).save_pretrained(tmp_path)
    with pytest.raises(fd.UserError, match="not a Fast checkpoint"):
        render_card(tmp_path)


def test_converted_intel_style_checkpoint_gets_a_card_with_its_4x1_sparsity(tmp_path):
    tp.write_intel_style(tiny_distilbert_qa(seed=3, dim=32, hidden_dim=64, n_heads=4), tmp_path / "intel")
    assert cli_main(["convert", str(tmp_path / "intel"), str(tmp_path / "fast")]) == 0
    assert cli_main(["card", "--model", str(tmp_path / "fast"), "--base-model", "Intel/example-sparse-80-1x4"]) == 0
    metadata, sections = split_card((tmp_path / "fast" / "README.md").read_text())
    assert "block-sparse-4x1" in metadata["tags"] and metadata["base_model"] == "Intel/example-sparse-80-1x4"
    patterns = re.findall(r"^\| \d+ \| \w+ \| \d+x\d+ \| [\d.]+% \| (\w+) \|", sections["Sparsity"], flags=re.M)
    assert patterns == ["4x1"] * 12
    assert "uint8 asymmetric, scale and zero point computed per token" in sections["Quantization"]


def test_recipe_output_card_uses_its_metrics_and_hides_local_paths(sparse_int8_dir):
    recipe = {"teacher": "/home/someone/runs/teacher", "train": "/home/someone/data/squad-v1.1-train-head.json",
              "eval": "/home/someone/data/xquad-en.json", "output": "/home/someone/runs/student", "sparsity": 0.8,
              "block_shape": "4,1", "max_seq_len": 256, "doc_stride": 128,
              "budget": {"prune_steps": 120, "qat_steps": 60, "train_seconds": 1234.5, "threads": 2}}
    metrics = {"teacher_fp32": {"exact_match": 70.5, "f1": 80.25, "n": 1190},
               "student_fp32": {"exact_match": 65.0, "f1": 75.5, "n": 1190},
               "student_int8": {"exact_match": 64.123, "f1": 74.987, "n": 1190},
               "kernel_formats": ["4x1"], "budget": recipe["budget"]}
    (sparse_int8_dir / "recipe.json").write_text(json.dumps(recipe))
    (sparse_int8_dir / "metrics.json").write_text(json.dumps(metrics))
    card = render_card(sparse_int8_dir, repo_id="alice/student")
    metadata, sections = split_card(card)
    result = metadata["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"exact_match": 64.12, "f1": 74.99}
    assert result["dataset"]["type"] == "google/xquad"
    assert metadata["datasets"] == ["google/xquad", "rajpurkar/squad"]
    evaluation = sections["Evaluation"]
    for row in ("| this checkpoint (INT8, fast path) | 1190 | 64.12 | 74.99 |",
                "| sparse student before QAT (fp32) | 1190 | 65.0 | 75.5 |", "| dense teacher (fp32) | 1190 | 70.5 | 80.25 |"):
        assert row in evaluation
    assert "max_seq_len=256, doc_stride=128" in evaluation
    assert "| budget.train_seconds | 1234.5 |" in sections["Training recipe"]
    assert "| teacher | teacher |" in sections["Training recipe"]
    assert "/home/someone" not in card


def test_card_states_the_attention_precision(sparse_int8_dir, tmp_path):
    assert "- Attention matmuls: INT8 (Q uint8 per token" in split_card(render_card(sparse_int8_dir))[1]["Quantization"]
    model = fd.FastDistilBertForQuestionAnswering.from_pretrained(sparse_int8_dir)
    model.distilbert.int8_attention = False
    model.save_pretrained(tmp_path / "fp32-attention")
    assert "- Attention matmuls: fp32." in split_card(render_card(tmp_path / "fp32-attention"))[1]["Quantization"]
