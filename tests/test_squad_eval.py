"""SQuAD loading, the evaluator (windows, offsets, n-best) and the `eval` command."""
import argparse
import json

import pytest

from fastdistilbert.commands import eval as eval_command
from fastdistilbert.errors import UserError
from fastdistilbert.squad import evaluate_squad, load_squad
from fastdistilbert.testing import minilm_tokenizer
from test_pipeline_qa import OracleQA, token_id


def squad_file(tmp_path, qas_by_context, name="data.json"):
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {"context": context, "qas": [{"id": qid, "question": q, "answers": [{"text": a, "answer_start": context.find(a)}]} for qid, q, a in qas]}
                    for context, qas in qas_by_context
                ],
            }
        ],
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def test_load_squad_reads_xquad(data_dir):
    examples = load_squad(data_dir / "xquad-en.json")
    assert len(examples) == 1190
    first = examples[0]
    assert set(first) == {"id", "title", "question", "context", "answers", "answer_starts"}
    for answer, start in zip(first["answers"], first["answer_starts"]):
        assert first["context"][start : start + len(answer)] == answer


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"version": "1.1"}', "no top-level 'data' list"),
        ('{"data": [{"paragraphs": [{"context": "c"}]}]}', "missing or bad field 'qas'"),
        ('{"data": []}', "holds no questions"),
        ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q", "answers": []}]}]}]}', "without answers"),
    ],
)
def test_load_squad_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_squad(path)


def test_load_squad_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_squad(tmp_path / "nope.json")


def test_evaluator_finds_answers_across_windows(tmp_path, tokenizer):
    model = OracleQA([token_id(tokenizer, "berlin")], [token_id(tokenizer, "germany")])
    filler = "Nothing to see in this sentence at all. " * 30
    path = squad_file(
        tmp_path,
        [
            ("I live in Berlin, Germany.", [("a", "Where?", "Berlin, Germany"), ("b", "City?", "Berlin")]),
            (filler + "Far away: Berlin in Germany. " + filler, [("c", "Where?", "Berlin in Germany")]),
            ("Paris is in France.", [("d", "Where?", "Paris")]),
        ],
    )
    result = evaluate_squad(model, tokenizer, load_squad(path), max_seq_len=64, doc_stride=16, batch_size=3, progress=False)
    assert result["predictions"]["a"] == "Berlin, Germany"
    assert result["predictions"]["c"] == "Berlin in Germany"
    assert result["n"] == 4 and result["n_windows"] > 10
    # a, c exact; b: prediction "Berlin, Germany" vs "Berlin" -> F1 2/3; d: no peak, any span, F1 0 unless it hits "Paris"
    d_f1 = 100.0 if result["predictions"]["d"] == "Paris" else 0.0
    assert result["exact_match"] == pytest.approx((200 + d_f1) / 4)
    assert result["f1"] == pytest.approx((200 + 200 / 3 + d_f1) / 4)
    assert result["nbest"]["a"][0]["score"] == pytest.approx(20.0)


def test_evaluator_respects_max_answer_len(tmp_path, tokenizer):
    model = OracleQA([token_id(tokenizer, "berlin")], [token_id(tokenizer, "germany")])
    path = squad_file(tmp_path, [("Berlin is a very large and old city of Germany.", [("a", "Where?", "Berlin")])])
    long = evaluate_squad(model, tokenizer, load_squad(path), progress=False)
    short = evaluate_squad(model, tokenizer, load_squad(path), max_answer_len=3, progress=False)
    assert long["predictions"]["a"].endswith("Germany")
    assert len(tokenizer.tokenize(short["predictions"]["a"])) <= 3


def test_evaluator_rejects_settings_that_cannot_work(tmp_path, tokenizer):
    model = OracleQA()
    examples = load_squad(squad_file(tmp_path, [("Berlin.", [("a", "why " * 40, "Berlin")])]))
    with pytest.raises(ValueError, match="must exceed doc_stride=16"):
        evaluate_squad(model, tokenizer, examples, max_seq_len=48, doc_stride=16, progress=False)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        evaluate_squad(model, tokenizer, examples, max_seq_len=1024, progress=False)
    with pytest.raises(ValueError, match="no SQuAD examples"):
        evaluate_squad(model, tokenizer, [], progress=False)


def test_evaluator_batches_agree_with_real_model(minilm_qa, data_dir):
    model, tokenizer = minilm_qa
    examples = load_squad(data_dir / "xquad-en.json")[:8]
    one = evaluate_squad(model, tokenizer, examples, max_seq_len=128, doc_stride=48, batch_size=1, progress=False)
    many = evaluate_squad(model, tokenizer, examples, max_seq_len=128, doc_stride=48, batch_size=7, progress=False)
    assert one["predictions"] == many["predictions"]
    assert one["exact_match"] == many["exact_match"] and one["f1"] == many["f1"]
    assert one["n_windows"] > len(examples)


# --- the command ---------------------------------------------------------------------------------------------


def parse(argv):
    parser = argparse.ArgumentParser()
    eval_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", *argv])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    from fastdistilbert.testing import tiny_distilbert_qa

    path = tmp_path_factory.mktemp("tiny-qa")
    tiny_distilbert_qa(vocab_size=30522, max_position_embeddings=128).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_eval_command_writes_metrics_and_predictions(tmp_path, model_dir, data_dir, capsys):
    output = tmp_path / "eval.json"
    args = parse(["--model", str(model_dir), "--data", str(data_dir / "xquad-en.json"), "--limit", "5",
                  "--max-seq-len", "128", "--doc-stride", "32", "--output", str(output), "--no-progress"])
    assert args.run(args) == 0
    report = json.loads(output.read_text())
    assert report["n"] == 5 and len(report["predictions"]) == 5
    assert 0 <= report["exact_match"] <= report["f1"] <= 100
    assert report["settings"]["doc_stride"] == 32
    assert "exact_match" in capsys.readouterr().out
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        args.run(args)
    args.overwrite = True
    assert args.run(args) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "missing.json"], "SQuAD file not found"),
        (["--data", "{data_dir}/README.md"], "not valid JSON"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--model", "{tmp}/no-model"], "model directory not found"),
        (["--max-seq-len", "1024"], "max_position_embeddings"),
    ],
)
def test_eval_command_user_mistakes_are_user_errors(tmp_path, model_dir, data_dir, argv, message):
    defaults = {"--model": str(model_dir), "--data": str(data_dir / "xquad-en.json"), "--limit": "2"}
    for flag, value in zip(argv[::2], argv[1::2]):
        defaults[flag] = value.format(data_dir=data_dir, tmp=tmp_path)
    args = parse([item for pair in defaults.items() for item in pair] + ["--no-progress"])
    with pytest.raises(UserError, match=message):
        args.run(args)


def test_console_script_prints_a_user_mistake_as_one_line(model_dir, tmp_path, capsys):
    from fastdistilbert.cli import main

    assert main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "SQuAD file not found" in err


def test_a_datasets_name_is_tried_when_no_such_file_exists(monkeypatch):
    """No network here: `datasets.load_dataset` is replaced, once failing as offline, once returning rows."""
    import datasets

    calls = []

    def offline(name, split):
        calls.append((name, split))
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="no such file, and loading it as a `datasets` name failed .*Couldn't reach"):
        eval_command._load_examples("someorg/squad-like")
    assert calls == [("someorg/squad-like", "validation")]

    rows = [{"id": 7, "title": "t", "question": "Where?", "context": "In Berlin.", "answers": {"text": ["Berlin"], "answer_start": [3]}}]
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: rows)
    assert eval_command._load_examples("squad") == [
        {"id": "7", "title": "t", "question": "Where?", "context": "In Berlin.", "answers": ["Berlin"], "answer_starts": [3]}
    ]
    # Something that can only be a file never goes to the Hub.
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="SQuAD file not found"):
        eval_command._load_examples("./dev.json")
    assert len(calls) == 1
