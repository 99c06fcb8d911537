"""The extractive question-answering pipeline: registration, outputs, windows, options and bad input.

An oracle model (logits that peak on chosen token ids) makes answers and scores computable by hand; the real
MiniLM encoder checks batching and list inputs on real text.
"""
import math

import pytest
import torch
from transformers import DistilBertConfig, DistilBertForQuestionAnswering, pipeline
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from fastdistilbert.pipelines import QuestionAnsweringPipeline, _check_transformers_version, register_pipelines
from fastdistilbert.testing import minilm_tokenizer

PEAK = 10.0


class OracleQA(DistilBertForQuestionAnswering):
    """Start logit PEAK on tokens `start_ids`, end logit PEAK on `end_ids`, 0 elsewhere (no learned weights used)."""

    def __init__(self, start_ids=(), end_ids=(), cls_peak=0.0):
        super().__init__(DistilBertConfig(vocab_size=30522, max_position_embeddings=512, n_layers=1, n_heads=1, dim=4, hidden_dim=4))
        self.start_ids, self.end_ids, self.cls_peak = list(start_ids), list(end_ids), cls_peak
        self.eval()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        start = torch.isin(input_ids, torch.tensor(self.start_ids)).float() * PEAK
        end = torch.isin(input_ids, torch.tensor(self.end_ids)).float() * PEAK
        cls = (input_ids == 101).float() * self.cls_peak
        return QuestionAnsweringModelOutput(start_logits=start + cls, end_logits=end + cls)


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def token_id(tokenizer, word):
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, word
    return ids[0]


def oracle_pipeline(tokenizer, start_word, end_word, cls_peak=0.0):
    register_pipelines()
    model = OracleQA([token_id(tokenizer, start_word)], [token_id(tokenizer, end_word)], cls_peak)
    return pipeline("question-answering", model=model, tokenizer=tokenizer)


def n_context_tokens(tokenizer, context):
    return len(tokenizer(context, add_special_tokens=False)["input_ids"])


def test_registration_is_idempotent_and_resolves_the_task(tokenizer, caplog):
    register_pipelines()
    with caplog.at_level("WARNING"):
        register_pipelines()
    assert "Overwriting" not in caplog.text
    from transformers.pipelines import PIPELINE_REGISTRY, REMOVED_TASKS

    assert "question-answering" not in REMOVED_TASKS
    assert PIPELINE_REGISTRY.supported_tasks["question-answering"]["impl"] is QuestionAnsweringPipeline
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    assert isinstance(pipe, QuestionAnsweringPipeline)
    assert pipe.device.type == "cpu"


@pytest.mark.parametrize("version", ["5.2.0", "4.57.1", "6.0.0"])
def test_unsupported_transformers_version_fails_clearly(version):
    with pytest.raises(RuntimeError, match=rf"supports transformers .*5\.3.*{version}"):
        _check_transformers_version(version)


def test_registration_refuses_an_unsupported_transformers(monkeypatch):
    import transformers
    from transformers.pipelines import PIPELINE_REGISTRY

    register_pipelines()
    monkeypatch.setattr(transformers, "__version__", "5.2.0")
    with pytest.raises(RuntimeError, match=r"supports transformers .* but transformers 5\.2\.0 is installed"):
        register_pipelines()
    assert PIPELINE_REGISTRY.supported_tasks["question-answering"]["impl"] is QuestionAnsweringPipeline


@pytest.mark.parametrize("version", ["5.3.0", "5.24.0", "5.99.0.dev0"])
def test_supported_transformers_versions_pass(version):
    _check_transformers_version(version)


def test_answer_and_score_by_hand(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "germany")
    context = "My name is Wolfgang and I live in Berlin, Germany."
    out = pipe(question="Where do I live?", context=context)
    # Softmax over the context tokens and [CLS]: one peak at PEAK, the rest at 0.
    n = n_context_tokens(tokenizer, context) + 1
    probability = math.exp(PEAK) / (math.exp(PEAK) + n - 1)
    assert out == {"score": pytest.approx(probability**2, rel=1e-6), "start": 34, "end": 49, "answer": "Berlin, Germany"}
    assert context[out["start"] : out["end"]] == out["answer"]


def test_align_to_words_widens_to_whole_words(tokenizer):
    context = "Pro Bowl defensive tackle Kawann Short led the team."
    pieces = tokenizer.tokenize("Kawann")
    assert pieces == ["ka", "##wan", "##n"]
    register_pipelines()
    middle = tokenizer.convert_tokens_to_ids(pieces[1])
    pipe = pipeline("question-answering", model=OracleQA([middle], [middle]), tokenizer=tokenizer)
    assert pipe(question="Who?", context=context)["answer"] == "Kawann"
    narrow = pipe(question="Who?", context=context, align_to_words=False)
    assert narrow["answer"] == "wan" and context[narrow["start"] : narrow["end"]] == "wan"


def test_long_context_uses_doc_stride_windows(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    filler = "Nothing to see in this sentence at all. " * 60
    context = filler + "I live in Berlin."
    windows = list(pipe.preprocess({"question": "Where?", "context": context}, max_seq_len=64, doc_stride=16))
    assert len(windows) > 10 and windows[-1]["is_last"] and not windows[0]["is_last"]
    out = pipe(question="Where?", context=context, max_seq_len=64, doc_stride=16)
    assert out["answer"] == "Berlin" and out["start"] == context.index("Berlin")
    # The answer sits in the last window only, so its score is that window's: normaliser = context tokens in it + CLS.
    last = windows[-1]
    n = int(last["context_mask"].sum()) + 1
    assert out["score"] == pytest.approx((math.exp(PEAK) / (math.exp(PEAK) + n - 1)) ** 2, rel=1e-6)


def test_same_answer_in_overlapping_windows_adds_scores(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    context = "Nothing here at all. " * 8 + "Berlin. " + "Nothing here at all. " * 8
    windows = list(pipe.preprocess({"question": "Where?", "context": context}, max_seq_len=40, doc_stride=20))
    berlin = token_id(tokenizer, "berlin")
    holding = [w for w in windows if berlin in w["input_ids"][0].tolist()]
    assert len(holding) >= 2
    expected = sum((math.exp(PEAK) / (math.exp(PEAK) + int(w["context_mask"].sum()))) ** 2 for w in holding)
    out = pipe(question="Where?", context=context, max_seq_len=40, doc_stride=20)
    assert out["answer"] == "Berlin" and out["score"] == pytest.approx(expected, rel=1e-6)


def test_max_answer_len_and_top_k(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "germany")
    context = "I live in Berlin, the big capital of Germany."
    full = pipe(question="Where?", context=context, top_k=3)
    assert isinstance(full, list) and len(full) == 3
    assert full[0]["answer"] == "Berlin, the big capital of Germany"
    assert [a["score"] for a in full] == sorted((a["score"] for a in full), reverse=True)
    short = pipe(question="Where?", context=context, max_answer_len=3)
    assert len(tokenizer.tokenize(short["answer"])) <= 3
    assert "Germany" not in short["answer"] or "Berlin" not in short["answer"]


def test_handle_impossible_answer(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin", cls_peak=2 * PEAK)
    out = pipe(question="Where?", context="I live in Berlin.", handle_impossible_answer=True)
    assert out["answer"] == "" and out["start"] == out["end"] == 0 and out["score"] > 0.99
    assert pipe(question="Where?", context="I live in Berlin.")["answer"] == "Berlin"


def test_input_forms_agree(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    q, c = "Where?", "I live in Berlin."
    single = pipe(question=q, context=c)
    assert pipe({"question": q, "context": c}) == single
    assert pipe(q, c) == single
    assert pipe([{"question": q, "context": c}]) == single  # one input gives one answer, as in transformers
    many = pipe(question=[q, "Who?"], context=[c, "Berlin is big."])
    assert isinstance(many, list) and len(many) == 2 and many[0] == single and many[1]["answer"] == "Berlin"
    assert pipe(question=[q, q], context=c) == [single, single]
    assert list(pipe(({"question": q, "context": c} for _ in range(2)))) == [single, single]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(question="", context="Berlin."), "`question` cannot be empty"),
        (dict(question="Where?", context="   "), "`context` cannot be empty"),
        (dict(question=["a", "b"], context=["x"]), "2 questions but 1 contexts"),
        (dict(question="Where?", context=None), "must be given together"),
        (dict(question=3, context="Berlin."), "must be strings"),
        (dict(question="Where?", context="Berlin.", top_k=0), "`top_k` must be an integer >= 1"),
        (dict(question="Where?", context="Berlin.", max_answer_len=0), "`max_answer_len`"),
        (dict(question="Where?", context="Berlin.", max_seq_len=16, doc_stride=12), "must exceed doc_stride=12"),
        (dict(question="Where?", context="Berlin.", max_seq_len=4096), "exceeds the model's max_position_embeddings"),
    ],
)
def test_bad_input_gets_a_clear_error(tokenizer, kwargs, message):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_bad_input_forms(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    with pytest.raises(ValueError, match="missing"):
        pipe({"question": "Where?"})
    with pytest.raises(ValueError, match="empty list"):
        pipe([])
    with pytest.raises(TypeError, match="unknown question-answering argument"):
        pipe(question="Where?", context="Berlin.", topk=2)


def test_max_question_len_truncates_long_questions(tokenizer):
    pipe = oracle_pipeline(tokenizer, "berlin", "berlin")
    question = "why " * 100
    windows = list(pipe.preprocess({"question": question, "context": "I live in Berlin."}, max_question_len=10))
    assert int((windows[0]["token_type_ids"] == 0).sum()) == 10 + 2  # [CLS] question [SEP]
    assert pipe(question=question, context="I live in Berlin.", max_question_len=10)["answer"] == "Berlin"


def test_batching_matches_unbatched_on_real_model(minilm_qa, xquad_questions):
    model, tokenizer = minilm_qa
    register_pipelines()
    pipe = pipeline("question-answering", model=model, tokenizer=tokenizer)
    items = [{"question": q, "context": c} for _, q, c, _ in xquad_questions[:6]]
    # Small windows so every context spans several windows of different lengths (padding in the batch).
    settings = dict(max_seq_len=96, doc_stride=32, top_k=2)
    unbatched = pipe(items, batch_size=1, **settings)
    batched = pipe(items, batch_size=5, **settings)
    assert len(list(pipe.preprocess(items[0], max_seq_len=96, doc_stride=32))) > 2
    for one, many in zip(unbatched, batched):
        assert [(a["answer"], a["start"], a["end"]) for a in one] == [(a["answer"], a["start"], a["end"]) for a in many]
        assert [a["score"] for a in one] == pytest.approx([a["score"] for a in many], abs=1e-6)


def test_pipeline_from_a_saved_directory(tmp_path, tokenizer):
    from fastdistilbert.testing import tiny_distilbert_qa

    register_pipelines()
    tiny_distilbert_qa(vocab_size=30522, max_position_embeddings=128).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    pipe = pipeline("question-answering", model=str(tmp_path))
    out = pipe(question="Where do I live?", context="My name is Wolfgang and I live in Berlin.")
    assert set(out) == {"score", "start", "end", "answer"} and 0 < out["score"] <= 1
    assert "My name is Wolfgang and I live in Berlin."[out["start"] : out["end"]] == out["answer"]


def test_import_alone_registers_the_task_in_a_fresh_process(tmp_path, tokenizer):
    """transformers >= 5.3 refuses the task; `import fastdistilbert` puts it back."""
    import subprocess
    import sys

    from fastdistilbert.testing import tiny_distilbert_qa

    tiny_distilbert_qa(vocab_size=30522, max_position_embeddings=128).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    script = (
        "import sys\n"
        "from transformers import pipeline\n"
        "try:\n"
        f"    pipeline('question-answering', model={str(tmp_path)!r})\n"
        "    sys.exit('transformers accepted the removed task without fastdistilbert')\n"
        "except KeyError as exc:\n"
        "    assert 'has been removed' in str(exc), exc\n"
        "import fastdistilbert\n"
        f"qa = pipeline('question-answering', model={str(tmp_path)!r})\n"
        "answer = qa(question='Where?', context='I live in Berlin.')\n"
        "print(type(qa).__module__, 'I live in Berlin.'[answer['start'] : answer['end']] == answer['answer'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["fastdistilbert.pipelines.question_answering", "True"]


def test_a_model_in_training_mode_answers_deterministically(tokenizer):
    from fastdistilbert.testing import tiny_distilbert_qa

    register_pipelines()
    model = tiny_distilbert_qa(vocab_size=30522, max_position_embeddings=128, dropout=0.5).train()
    pipe = pipeline("question-answering", model=model, tokenizer=tokenizer)
    assert not model.training
    first = pipe(question="Where do I live?", context="My name is Wolfgang and I live in Berlin.", top_k=3)
    assert pipe(question="Where do I live?", context="My name is Wolfgang and I live in Berlin.", top_k=3) == first


def test_bert_model_gets_token_type_ids_and_the_hand_computed_answer(tokenizer):
    """Any AutoModelForQuestionAnswering: a BERT QA model needs token_type_ids, which DistilBERT does not take."""
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)
    model = BertForQuestionAnswering(config).eval()
    register_pipelines()
    pipe = pipeline("question-answering", model=model, tokenizer=tokenizer)
    question, context = "Where do I live?", "My name is Wolfgang and I live in Berlin, the capital of Germany."
    out = pipe(question=question, context=context, align_to_words=False, max_answer_len=4)

    encoded = tokenizer(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        logits = model(**encoded)
        without_types = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
    assert not torch.allclose(logits.start_logits, without_types.start_logits)  # the test can tell them apart
    context_tokens = [i for i, sid in enumerate(encoded.sequence_ids(0)) if sid == 1]
    normaliser = [0] + context_tokens  # [CLS] and the context, as transformers' pipeline did
    p_start = torch.softmax(logits.start_logits[0, normaliser], 0)
    p_end = torch.softmax(logits.end_logits[0, normaliser], 0)
    best = max(
        ((p_start[a] * p_end[b]).item(), normaliser[a], normaliser[b])
        for a in range(1, len(normaliser))
        for b in range(a, min(a + 4, len(normaliser)))
    )
    score, start, end = best
    assert (out["start"], out["end"]) == (offsets[start][0], offsets[end][1])
    assert out["score"] == pytest.approx(score, rel=1e-5)


def test_pipeline_from_a_saved_fast_checkpoint(tmp_path, tokenizer):
    from fastdistilbert import FastDistilBertForQuestionAnswering
    from fastdistilbert.testing import tiny_distilbert_qa

    register_pipelines()
    hf_model = tiny_distilbert_qa(vocab_size=30522, max_position_embeddings=128)
    FastDistilBertForQuestionAnswering.from_hf(hf_model).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    pipe = pipeline("question-answering", model=str(tmp_path))
    assert isinstance(pipe.model, FastDistilBertForQuestionAnswering)
    context = "My name is Wolfgang and I live in Berlin."
    expected = pipeline("question-answering", model=hf_model, tokenizer=tokenizer)(question="Where?", context=context, top_k=3)
    got = pipe(question="Where?", context=context, top_k=3)
    assert [(a["answer"], a["start"], a["end"]) for a in got] == [(a["answer"], a["start"], a["end"]) for a in expected]
    assert [a["score"] for a in got] == pytest.approx([a["score"] for a in expected], abs=1e-4)
