"""Shared fixtures: the real pretrained encoder (loaded once per session) and the SQuAD data beside the repo."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"SQuAD data not found at {DATA_DIR}: the checkout needs ../shared/data beside it")
    return DATA_DIR


@pytest.fixture(scope="session")
def xquad_questions(data_dir):
    """[(id, question, context, answers)] of xquad-en.json in file order (evaluation only)."""
    data = json.loads((data_dir / "xquad-en.json").read_text())
    out = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append((qa["id"], qa["question"], paragraph["context"], [a["text"] for a in qa["answers"]]))
    return out


@pytest.fixture(scope="session")
def minilm_qa():
    """(HF DistilBertForQuestionAnswering from the real MiniLM encoder + seeded QA head, tokenizer)."""
    from fastdistilbert.testing import minilm_qa_model

    torch.manual_seed(0)
    return minilm_qa_model(seed=0)
