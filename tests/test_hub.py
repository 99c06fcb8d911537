"""push_to_hub against a local stand-in of the Hub HTTP API (tests/hub_standin.py): no network.

Covers which files go up, idempotent repo creation, private/public, the missing-token error, refusal to replace a
different model without overwrite, and loading back (in process, and with trust_remote_code in a fresh process)
with identical logits.
"""
import ast
import json
import os
import subprocess
import sys

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import constants
from huggingface_hub.errors import RepositoryNotFoundError
from transformers import DistilBertTokenizer

import fastdistilbert as fd
from fastdistilbert.cli import main as cli_main
from fastdistilbert.hub import push_to_hub
from fastdistilbert.model_card import render_card
from fastdistilbert.testing import tiny_distilbert_qa

from hub_standin import HubStandIn

TOKENS = {"hf_alice_write": "alice", "hf_bob_write": "bob"}
ALICE = "hf_alice_write"
IDS = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(5))
EXPECTED_FILES = {".gitattributes", "README.md", "config.json", "model.safetensors", "configuration_fast_distilbert.py",
                  "modeling_fast_distilbert.py", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in, with huggingface_hub (in this process and in child processes) pointed at it and no token."""
    with HubStandIn(TOKENS) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # LFS protocol: the stand-in has no Xet CAS
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        yield server
        assert not server.unhandled, f"requests the stand-in does not implement: {server.unhandled}"


def tiny_tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(92)]
    return DistilBertTokenizer(vocab={word: i for i, word in enumerate(vocab)})


def fast_model(seed: int = 2, quantize: bool = True):
    return fd.convert_to_fast(tiny_distilbert_qa(seed=seed), quantize=quantize).eval()


def logits(model):
    with torch.no_grad():
        out = model(input_ids=IDS)
    return torch.cat([out.start_logits, out.end_logits])


def test_push_uploads_weights_config_shims_tokenizer_and_our_card(hub, tmp_path):
    model = fast_model()
    url = model.push_to_hub("alice/tiny-qa", token=ALICE, tokenizer=tiny_tokenizer())
    assert "alice/tiny-qa/commit/" in url
    files = hub.repos["alice/tiny-qa"].files()
    assert set(files) == EXPECTED_FILES
    config = json.loads(files["config.json"])
    assert config["model_type"] == "fast_distilbert" and config["quantization"]["format_version"] == 2
    assert {ref.split(".")[0] + ".py" for ref in config["auto_map"].values()} <= set(files)
    card = files["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert "fastdistilbert" in metadata["tags"] and metadata["pipeline_tag"] == "question-answering"
    assert "## Sparsity" in card and "Not evaluated" in card and "\n# alice/tiny-qa\n" in card
    assert not hub.repos["alice/tiny-qa"].private
    assert [m for m, path in hub.requests if path.startswith("/lfs-objects/")] == ["PUT"]  # the weights went via LFS


def test_load_back_from_the_hub_gives_identical_logits(hub, tmp_path):
    model = fast_model()
    model.push_to_hub("alice/tiny-qa", token=ALICE, tokenizer=tiny_tokenizer())
    loaded = fd.FastDistilBertForQuestionAnswering.from_pretrained("alice/tiny-qa", cache_dir=tmp_path / "cache")
    assert torch.equal(logits(loaded.eval()), logits(model))
    assert [r["format"] for r in loaded.kernel_report()] == [r["format"] for r in model.kernel_report()]


def test_trust_remote_code_in_a_fresh_process_gives_identical_logits(hub, tmp_path):
    model = fast_model()
    model.push_to_hub("alice/tiny-qa", token=ALICE, tokenizer=tiny_tokenizer())
    torch.save(IDS, tmp_path / "ids.pt")
    script = f"""
import sys, torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer
assert "fastdistilbert" not in sys.modules
model = AutoModelForQuestionAnswering.from_pretrained("alice/tiny-qa", trust_remote_code=True,
                                                      cache_dir={str(tmp_path / "fresh-cache")!r}).eval()
AutoTokenizer.from_pretrained("alice/tiny-qa", cache_dir={str(tmp_path / "fresh-cache")!r})
with torch.no_grad():
    out = model(input_ids=torch.load({str(tmp_path / "ids.pt")!r}))
torch.save(torch.cat([out.start_logits, out.end_logits]), {str(tmp_path / "out.pt")!r})
print(type(model).__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("FastDistilBertForQuestionAnswering")
    assert torch.equal(torch.load(tmp_path / "out.pt"), logits(model))


def test_repo_creation_is_idempotent_and_an_identical_push_is_accepted(hub):
    model = fast_model()
    for _ in range(2):
        with pytest.warns(UserWarning, match="publishing without tokenizer files"):
            push_to_hub(model, "alice/tiny-qa", token=ALICE)
    assert list(hub.repos) == ["alice/tiny-qa"]
    assert hub.create_calls == 1  # the second push saw the repo and did not try to create it again
    assert [m for m, path in hub.requests if path.startswith("/lfs-objects/")] == ["PUT"]  # unchanged: not resent
    huggingface_hub.HfApi(token=ALICE).create_repo("alice/tiny-qa", exist_ok=True)  # the Hub's 409 path
    assert set(hub.repos["alice/tiny-qa"].files()) == EXPECTED_FILES - {"tokenizer.json", "tokenizer_config.json"}


def test_private_repo_is_private_and_visibility_is_never_flipped(hub, tmp_path):
    model = fast_model()
    model.push_to_hub("alice/secret", token=ALICE, private=True)
    assert hub.repos["alice/secret"].private
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.HfApi().model_info("alice/secret")  # anonymous
    with pytest.raises(OSError):
        fd.FastDistilBertForQuestionAnswering.from_pretrained("alice/secret", cache_dir=tmp_path / "anon")
    loaded = fd.FastDistilBertForQuestionAnswering.from_pretrained("alice/secret", token=ALICE,
                                                                   cache_dir=tmp_path / "owner")
    assert torch.equal(logits(loaded.eval()), logits(model))
    with pytest.raises(fd.UserError, match="already exists and is private; this push asked for public"):
        model.push_to_hub("alice/secret", token=ALICE, private=False)
    assert hub.repos["alice/secret"].private


def test_push_without_a_token_is_a_clear_error_before_any_request(hub):
    with pytest.raises(fd.UserError, match="needs a token with write access: run `hf auth login`, set HF_TOKEN"):
        fast_model().push_to_hub("alice/tiny-qa")
    with pytest.raises(fd.UserError, match="needs a token"):
        fast_model().push_to_hub("alice/tiny-qa", token=True)  # "use the saved login", and there is none
    assert hub.requests == []


def test_a_different_model_is_not_replaced_without_overwrite(hub):
    first, second = fast_model(seed=2), fast_model(seed=3)
    first.push_to_hub("alice/tiny-qa", token=ALICE)
    before = dict(hub.repos["alice/tiny-qa"].files())
    with pytest.raises(fd.UserError, match=r"already holds a different model \(model.safetensors differ\); pass "
                                           r"overwrite=True"):
        second.push_to_hub("alice/tiny-qa", token=ALICE)
    assert hub.repos["alice/tiny-qa"].files() == before
    second.push_to_hub("alice/tiny-qa", token=ALICE, overwrite=True)
    assert hub.repos["alice/tiny-qa"].files()["model.safetensors"] != before["model.safetensors"]


def test_overwrite_removes_stale_weight_files(hub):
    push_to_hub(fast_model(), "alice/tiny-qa", token=ALICE)
    api = huggingface_hub.HfApi(token=ALICE)
    api.upload_file(path_or_fileobj=b"stale shard", path_in_repo="model-00001-of-00002.safetensors",
                    repo_id="alice/tiny-qa")
    push_to_hub(fast_model(seed=3), "alice/tiny-qa", token=ALICE, overwrite=True)
    assert "model-00001-of-00002.safetensors" not in hub.repos["alice/tiny-qa"].files()


def test_cannot_push_into_someone_elses_namespace(hub):
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError, match="403"):
        fast_model().push_to_hub("bob/tiny-qa", token=ALICE)


def test_only_fast_checkpoints_are_published(hub, tmp_path):
    tiny_distilbert_qa(seed=1).save_pretrained(tmp_path)
    with pytest.raises(fd.UserError, match="only Fast checkpoints are published"):
        push_to_hub(tmp_path, "alice/vanilla", token=ALICE)
    assert hub.requests == []


def test_push_command_publishes_a_directory_with_its_own_card(hub, tmp_path, monkeypatch, capsys):
    model_dir = tmp_path / "model"
    fast_model().save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    (model_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# our card\n")
    (model_dir / "notes.txt").write_text("not part of the checkpoint")
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert cli_main(["push", "--model", str(model_dir), "--repo-id", "alice/from-cli", "--private"]) == 0
    files = hub.repos["alice/from-cli"].files()
    assert set(files) == EXPECTED_FILES and files["README.md"] == b"---\nlicense: apache-2.0\n---\n# our card\n"
    assert hub.repos["alice/from-cli"].private
    assert cli_main(["push", "--model", str(model_dir / "missing"), "--repo-id", "alice/x"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli_main(["push", "--model", str(model_dir), "--repo-id", "bob/not-mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the Hub refused the push to bob/not-mine" in err and "rights" in err


def test_sharded_push_replaces_the_single_file_and_loads_back(hub, tmp_path):
    model = fast_model()
    model.push_to_hub("alice/tiny-qa", token=ALICE, tokenizer=tiny_tokenizer())
    with pytest.raises(fd.UserError, match="already holds a different model"):  # other files: consent needed
        model.push_to_hub("alice/tiny-qa", token=ALICE, max_shard_size="20KB")
    model.push_to_hub("alice/tiny-qa", token=ALICE, max_shard_size="20KB", overwrite=True, tags=["demo"])
    files = hub.repos["alice/tiny-qa"].files()
    shards = [name for name in files if name.startswith("model-") and name.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in files
    assert "model.safetensors" not in files  # a stale single file would shadow the shards (PITFALLS 14)
    assert "demo" in yaml.safe_load(files["README.md"].decode().split("---")[1])["tags"]
    loaded = fd.FastDistilBertForQuestionAnswering.from_pretrained("alice/tiny-qa", cache_dir=tmp_path / "cache")
    assert torch.equal(logits(loaded.eval()), logits(model))


def test_unsupported_push_options_are_refused(hub):
    with pytest.raises(TypeError, match="does not support create_pr"):
        fast_model().push_to_hub("alice/tiny-qa", token=ALICE, create_pr=True)
    assert hub.requests == []


BENCH = {"environment": {"cpu": "Test CPU", "isa": "avx2", "threads": 2},
         "records": [{"runtime": "fastdistilbert", "variant": "int8-dense", "seq": 128, "batch": 1, "seq_per_s": 10.0,
                      "p50_ms": 100.0, "p90_ms": 110.0}]}


def test_pushing_a_recipe_output_publishes_a_card_with_its_measured_metrics(hub, tmp_path):
    out = tmp_path / "student"
    fast_model().save_pretrained(out)
    tiny_tokenizer().save_pretrained(out)
    (out / "recipe.json").write_text(json.dumps({"teacher": "/somewhere/teacher", "eval": "/somewhere/xquad-en.json",
                                                 "sparsity": 0.8}))
    (out / "metrics.json").write_text(json.dumps({"student_int8": {"exact_match": 50.0, "f1": 60.0, "n": 10}}))
    push_to_hub(out, "alice/student", token=ALICE)  # no README.md in the directory: the card is generated
    files = hub.repos["alice/student"].files()
    assert "recipe.json" not in files and "metrics.json" not in files
    card = files["README.md"].decode()
    metrics = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("exact_match", 50.0), ("f1", 60.0)]
    assert "| sparsity | 0.8 |" in card and "/somewhere" not in card


def test_the_image_a_card_shows_is_published_with_it(hub, tmp_path):
    out = tmp_path / "model"
    fast_model().save_pretrained(out)
    (out / "README.md").write_text(render_card(out, bench=BENCH, plot="plots/bench.png", repo_id="alice/plotted"))
    with pytest.warns(UserWarning, match="shows plots/bench.png, which is not in the model directory"):
        push_to_hub(out, "alice/plotted", token=ALICE, tokenizer=tiny_tokenizer())
    (out / "plots").mkdir()
    (out / "plots" / "bench.png").write_bytes(b"\x89PNG measured plot")
    push_to_hub(out, "alice/plotted", token=ALICE, tokenizer=tiny_tokenizer())
    assert hub.repos["alice/plotted"].files()["plots/bench.png"] == b"\x89PNG measured plot"


def test_the_cards_usage_snippet_works_against_the_hub(hub, tmp_path):
    """What the card tells users to run: `import fastdistilbert` + pipeline("question-answering", model=repo_id)."""
    fast_model().push_to_hub("alice/tiny-qa", token=ALICE, tokenizer=tiny_tokenizer())
    script = """
import fastdistilbert
from transformers import pipeline
qa = pipeline("question-answering", model="alice/tiny-qa")
answer = qa(question="w1 w2", context="w3 w4 w5 w6 w7")
print(type(qa.model).__name__, repr(answer["answer"]))
"""
    env = {**os.environ, "HF_HOME": str(tmp_path / "fresh-home")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    model_class, answer = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert model_class == "FastDistilBertForQuestionAnswering"
    text = ast.literal_eval(answer)
    assert text and text in "w3 w4 w5 w6 w7"  # a span of the context


def test_an_earlier_push_stays_loadable_by_its_commit(hub, tmp_path):
    first, second = fast_model(seed=2), fast_model(seed=3)
    url = first.push_to_hub("alice/tiny-qa", token=ALICE, tokenizer=tiny_tokenizer())
    second.push_to_hub("alice/tiny-qa", token=ALICE, overwrite=True)
    commit = url.rsplit("/", 1)[1]
    pinned = fd.FastDistilBertForQuestionAnswering.from_pretrained("alice/tiny-qa", revision=commit,
                                                                   cache_dir=tmp_path / "cache")
    latest = fd.FastDistilBertForQuestionAnswering.from_pretrained("alice/tiny-qa", cache_dir=tmp_path / "cache")
    assert torch.equal(logits(pinned.eval()), logits(first))
    assert torch.equal(logits(latest.eval()), logits(second))
