"""`fastdistilbert recipe` end to end on a tiny teacher and a few real SQuAD questions (mechanics, not accuracy)."""
import json

import fastdistilbert as fd
from fastdistilbert.cli import main
from fastdistilbert.testing import minilm_tokenizer, tiny_distilbert_qa


def test_recipe_produces_sparse_int8_checkpoint_and_metrics(tmp_path, data_dir):
    teacher = tmp_path / "teacher"
    tiny_distilbert_qa(seed=0, vocab_size=30522, max_position_embeddings=512, dim=32, n_heads=4, hidden_dim=64).save_pretrained(teacher)
    minilm_tokenizer().save_pretrained(teacher)
    out = tmp_path / "student"
    code = main(["recipe", "--teacher", str(teacher), "--train", str(data_dir / "squad-v1.1-train-head.json"),
                 "--eval", str(data_dir / "squad-v1.1-train-head.json"), "--output", str(out), "--sparsity", "0.75",
                 "--prune-epochs", "2", "--qat-epochs", "1", "--batch-size", "8", "--max-seq-len", "128",
                 "--doc-stride", "32", "--max-train-examples", "24", "--max-eval-examples", "6"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("teacher_fp32", "student_fp32", "student_int8"):
        assert set(metrics[key]) == {"exact_match", "f1", "n"} and metrics[key]["n"] == 6
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["sparsity"] == 0.75 and recipe["budget"]["prune_steps"] > 0
    student = fd.FastDistilBertForQuestionAnswering.from_pretrained(out)
    assert student.config.static_activations
    assert metrics["kernel_formats"] == ["4x1"]
    for name, module in student.quantized_linears().items():
        w = module.weight.reshape(-1, 4, module.weight.shape[1])  # (4,1) blocks: 4 consecutive output rows
        zero_blocks = (w == 0).all(dim=1).float().mean().item()
        assert abs(zero_blocks - 0.75) < 0.02, (name, zero_blocks)
