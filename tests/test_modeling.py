"""The fp32 path is DistilBERT: logits equal HF's DistilBertForQuestionAnswering on the same weights."""
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForQuestionAnswering, BertModel
from transformers.modeling_outputs import QuestionAnsweringModelOutput

import fastdistilbert as fd
from fastdistilbert.testing import minilm_dir, tiny_distilbert_qa

TOL = 1e-5

ODD_CONFIGS = [
    dict(n_layers=1, n_heads=1, dim=7, hidden_dim=13),
    dict(n_layers=2, n_heads=3, dim=21, hidden_dim=37),
    dict(n_layers=3, n_heads=5, dim=65, hidden_dim=31, max_position_embeddings=70),
]


def _batch(vocab, batch, seq, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, batch):  # unequal lengths: right padding
        mask[row, seq - row * 2:] = 0
    return ids, mask


@pytest.mark.parametrize("overrides", ODD_CONFIGS, ids=lambda c: f"dim{c['dim']}")
def test_fp32_logits_equal_hf_on_tiny_odd_configs(overrides):
    hf = tiny_distilbert_qa(seed=3, **overrides)
    fast = fd.FastDistilBertForQuestionAnswering.from_hf(hf).eval()
    ids, mask = _batch(hf.config.vocab_size, 4, 11)
    with torch.no_grad():
        a, b = hf(input_ids=ids, attention_mask=mask), fast(input_ids=ids, attention_mask=mask)
    assert isinstance(b, QuestionAnsweringModelOutput)
    assert torch.allclose(a.start_logits, b.start_logits, atol=TOL, rtol=0)
    assert torch.allclose(a.end_logits, b.end_logits, atol=TOL, rtol=0)


def test_fp32_logits_equal_hf_on_real_encoder(minilm_qa, xquad_questions):
    hf, tok = minilm_qa
    fast = fd.convert_to_fast(hf).eval()
    questions = xquad_questions[:6]
    enc = tok([q for _, q, _, _ in questions], [c for _, _, c, _ in questions], truncation="only_second",
              max_length=256, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        a, b = hf(**enc), fast(**enc)
    diff = max((a.start_logits - b.start_logits).abs().max().item(), (a.end_logits - b.end_logits).abs().max().item())
    assert diff <= TOL, diff


def test_bert_encoder_converts_exactly_to_distilbert_layout(minilm_qa):
    """The converted encoder's hidden states equal the original BERT's (type-0 folded into positions)."""
    hf, tok = minilm_qa
    bert = BertModel.from_pretrained(minilm_dir()).eval()
    enc = tok(["Where is the library?"], ["The library is next to the main building."], return_tensors="pt")
    with torch.no_grad():
        # DistilBERT has no segment embedding: compare with BERT fed type 0 everywhere.
        expected = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                        token_type_ids=torch.zeros_like(enc["input_ids"])).last_hidden_state
        got = hf.distilbert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    assert torch.allclose(expected, got, atol=1e-5, rtol=0)


def test_auto_classes_resolve_fast_distilbert():
    config = fd.FastDistilBertConfig(vocab_size=50, dim=12, n_heads=2, hidden_dim=20, n_layers=1)
    assert isinstance(AutoConfig.for_model("fast_distilbert"), fd.FastDistilBertConfig)
    assert type(AutoModel.from_config(config)) is fd.FastDistilBertModel
    assert type(AutoModelForQuestionAnswering.from_config(config)) is fd.FastDistilBertForQuestionAnswering


def test_quantized_model_reports_int8_linears_and_stays_close_to_fp32():
    hf = tiny_distilbert_qa(seed=1, dim=48, n_heads=4, hidden_dim=96)
    q = fd.convert_to_fast(hf, quantize=True).eval()
    linears = q.quantized_linears()
    assert len(linears) == 6 * hf.config.n_layers
    assert all(m.weight.dtype == torch.int8 for m in linears.values())
    ids, mask = _batch(hf.config.vocab_size, 2, 16)
    with torch.no_grad():
        a, b = hf(input_ids=ids, attention_mask=mask), q(input_ids=ids, attention_mask=mask)
    # Only real tokens: the INT8 fast path never computes padding (runtime.py returns zero hidden states there).
    valid = mask.bool()
    assert not torch.equal(a.start_logits[valid], b.start_logits[valid])  # really quantized
    assert torch.allclose(a.start_logits[valid], b.start_logits[valid], atol=0.05)
