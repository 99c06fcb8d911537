"""The fresh-process check shared by the checkpoint tests: a Python process that never imported fastdistilbert
loads a saved Fast checkpoint through transformers' Auto class with trust_remote_code and computes the very same
start and end logits as the model that was saved."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch


def assert_remote_code_reload_is_identical(checkpoint: Path, model, scratch: Path) -> None:
    ids = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model.eval()(input_ids=ids)
    expected = scratch / "expected.pt"  # a test artefact, not part of the checkpoint
    torch.save((ids, out.start_logits, out.end_logits), expected)
    script = f"""
import sys, torch
from transformers import AutoModelForQuestionAnswering
assert "fastdistilbert" not in sys.modules
m = AutoModelForQuestionAnswering.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
assert type(m).__name__ == "FastDistilBertForQuestionAnswering", type(m)
ids, start, end = torch.load({str(expected)!r})
with torch.no_grad():
    out = m(input_ids=ids)
assert torch.equal(out.start_logits, start) and torch.equal(out.end_logits, end), "logits differ"
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
