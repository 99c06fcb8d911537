"""pipeline("question-answering") gives the same answers with our model and with HF's on the same weights:
the real MiniLM encoder (converted to DistilBERT, seeded QA head), the real uncased tokenizer, and the first
100 questions of xquad-en.json."""
import pytest
from transformers import pipeline

from fastdistilbert import FastDistilBertForQuestionAnswering
from fastdistilbert.pipelines import QuestionAnsweringPipeline, register_pipelines

N_QUESTIONS = 100


def answers(model, tokenizer, questions):
    register_pipelines()
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    assert isinstance(qa, QuestionAnsweringPipeline)
    return qa(question=[q for _, q, _, _ in questions], context=[c for _, _, c, _ in questions], batch_size=8)


def test_fast_model_answers_like_hf_model_on_100_xquad_questions(minilm_qa, xquad_questions):
    hf_model, tokenizer = minilm_qa
    fast_model = FastDistilBertForQuestionAnswering.from_hf(hf_model).eval()
    assert type(fast_model) is not type(hf_model)
    questions = xquad_questions[:N_QUESTIONS]
    hf = answers(hf_model, tokenizer, questions)
    fast = answers(fast_model, tokenizer, questions)
    assert len(hf) == len(fast) == N_QUESTIONS
    for (qid, _, context, _), ours, theirs in zip(questions, fast, hf):
        assert (ours["answer"], ours["start"], ours["end"]) == (theirs["answer"], theirs["start"], theirs["end"]), qid
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4), qid
        assert context[ours["start"] : ours["end"]] == ours["answer"]
    # An untrained head still has to pick distinct answers: a constant output would make the comparison empty.
    assert len({a["answer"] for a in hf}) > 20
