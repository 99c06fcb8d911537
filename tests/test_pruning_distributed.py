"""Two CPU processes (torchrun, gloo) run prune + distill, then QAT + distill: every rank must end with the
same masks, sparsity, activation ranges and weights. Run by pytest; the same file is the torchrun worker."""
from __future__ import annotations

import faulthandler
import gc
import hashlib
import json
import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_on_masks_and_sparsity(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), __file__, str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert reports[0]["batches_differ"]  # each rank trained on its own shard of the data
    for key in ("mask_digest", "sparsity_history", "weights_digest", "ranges_digest", "broadcast_digest"):
        assert reports[0][key] == reports[1][key], key
    assert reports[0]["sparsity_history"][-1] == pytest.approx(0.75)
    assert reports[0]["sparsity_history"][0] < 0.75  # the ramp was really followed


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _train_and_report(out_dir: str) -> tuple[dict, list]:
    """Both stages and the report; returns weak references to the DDP wrappers the trainers made."""
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(HERE))
    from test_trainers_support import tiny_qa_dataset, tiny_qa_model, tiny_training_args

    from fastdistilbert.trainers import PruningArguments, QATArguments, prune_and_distill, quantize_and_distill
    from fastdistilbert.trainers.callbacks import BlockPruningCallback
    from fastdistilbert.trainers.pruning import broadcast_from_rank_zero
    from fastdistilbert.trainers.qat import fake_quant_linears

    teacher, student, data = tiny_qa_model(seed=1), tiny_qa_model(seed=2), tiny_qa_dataset(64)
    common = dict(ddp_backend="gloo", per_device_train_batch_size=4, logging_steps=1)
    pruning = PruningArguments(target_sparsity=0.75, pruning_end_step=4, pruning_frequency=2)
    stage1 = prune_and_distill(student, teacher, tiny_training_args(Path(out_dir) / "prune", max_steps=6, **common),
                               data, pruning)
    first_batch = next(iter(stage1.get_train_dataloader()))["input_ids"]
    stage1.train()
    pruner = next(c for c in stage1.callback_handler.callbacks if isinstance(c, BlockPruningCallback)).pruner
    sparsity_history = [h["sparsity"] for h in stage1.state.log_history if "loss" in h]

    stage2 = quantize_and_distill(stage1.model, teacher, tiny_training_args(Path(out_dir) / "qat", max_steps=4, **common),
                                  data, QATArguments(observer_momentum=0.5, freeze_observers_step=2))
    stage2.train()
    ranges = {f"{n}.{k}": getattr(m, k) for n, m in fake_quant_linears(stage2.model).items() for k in ("act_lo", "act_hi")}

    rank, world_size = dist.get_rank(), dist.get_world_size()
    gathered = [torch.zeros_like(first_batch) for _ in range(world_size)]
    dist.all_gather(gathered, first_batch)
    # rank-dependent masks must become rank 0's
    generator = torch.Generator().manual_seed(rank)
    own = {"layer": torch.rand(8, 8, generator=generator) > 0.5}
    broadcast_from_rank_zero(own)
    report = {
        "world_size": world_size,
        "batches_differ": not torch.equal(gathered[0], gathered[1]),
        "mask_digest": pruner.digest(),
        "sparsity_history": sparsity_history,
        "weights_digest": _digest(dict(stage2.model.named_parameters())),
        "ranges_digest": _digest(ranges),
        "broadcast_digest": _digest(own),
    }
    wrappers = [weakref.ref(t.model_wrapped) for t in (stage1, stage2)
                if isinstance(t.model_wrapped, torch.nn.parallel.DistributedDataParallel)]
    return report, wrappers


def main(out_dir: str) -> None:
    import torch.distributed as dist

    # A hang must show where it is, inside the test's own timeout.
    faulthandler.dump_traceback_later(240, exit=True)
    report, wrappers = _train_and_report(out_dir)
    (Path(out_dir) / f"rank{dist.get_rank()}.json").write_text(json.dumps(report))
    # The DDP wrappers must be gone before the process group: a DDP reducer holding the last reference destroys
    # the gloo group with the GIL held, and the group's destructor joins a worker thread that may be waiting for the
    # GIL to release a finished collective's tensors (a deadlock seen under load). Dropped here, the group dies in
    # destroy_process_group, whose binding releases the GIL first.
    gc.collect()
    alive = [w for w in wrappers if w() is not None]
    assert len(wrappers) == 2 and not alive, f"{len(wrappers)} DDP wrappers made, {len(alive)} still alive"
    # Tear gloo down before interpreter exit: left to process teardown, its threads can be destroyed while still
    # joinable, and the process aborts ("terminate called without an active exception") after the work is done.
    dist.barrier()
    dist.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main(sys.argv[1])
