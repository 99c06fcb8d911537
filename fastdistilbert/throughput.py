"""Throughput mode: N pinned worker processes x k threads each, sharing one read-only copy of the weights.

One process with all cores pays a synchronization cost at every op (attention, LayerNorm and small GEMMs scale
poorly to many threads); independent workers on disjoint cores do not. This is the deployment the paper measures.

    with ThroughputPool("fast-squad", workers=2, threads_per_worker=1) as pool:
        outputs = pool.run(batches)   # batches: dicts with input_ids / attention_mask; outputs in order

The parent packs the INT8 kernels once into a cache file; workers memory-map it and the checkpoint's safetensors
(`fastdistilbert.shared_weights`), so adding a worker adds no copy of the weights.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

_STOP = None


def _worker(model_dir: str, cache: str, cores: list[int], threads: int, tasks, results) -> None:
    try:
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
        from .modeling_fast_distilbert import FastDistilBertForQuestionAnswering
        from .shared_weights import load_kernel_cache, share_checkpoint_tensors

        model = FastDistilBertForQuestionAnswering.from_pretrained(model_dir).eval()
        share_checkpoint_tensors(model, Path(model_dir) / "model.safetensors")
        load_kernel_cache(model.distilbert, cache)
        results.put(("ready", os.getpid(), None))
        while (task := tasks.get()) is not _STOP:
            index, input_ids, attention_mask = task
            with torch.inference_mode():
                out = model(input_ids=input_ids, attention_mask=attention_mask)
            results.put((index, out.start_logits.numpy(), out.end_logits.numpy()))
    except Exception as exc:  # reported to the parent, which raises it
        results.put(("error", os.getpid(), f"{type(exc).__name__}: {exc}"))


class ThroughputPool:
    def __init__(self, model_dir: str | os.PathLike, workers: int | None = None, threads_per_worker: int = 1,
                 pin: bool = True):
        from .modeling_fast_distilbert import FastDistilBertForQuestionAnswering
        from .shared_weights import save_kernel_cache

        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        if threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        workers = workers or max(1, len(cpus) // threads_per_worker)
        if pin and workers * threads_per_worker > len(cpus):
            raise ValueError(f"{workers} workers x {threads_per_worker} threads need {workers * threads_per_worker} "
                             f"cores; this process may use {len(cpus)}")
        model_dir = Path(model_dir)
        if not (model_dir / "model.safetensors").exists():
            raise FileNotFoundError(f"{model_dir} has no model.safetensors (save the Fast model unsharded first)")
        model = FastDistilBertForQuestionAnswering.from_pretrained(model_dir)
        if not model.config.is_quantized:
            raise ValueError("the throughput mode serves INT8 Fast checkpoints; quantize and save the model first")
        self._tmp = tempfile.TemporaryDirectory(prefix="fastdistilbert-kernels-")
        cache = Path(self._tmp.name) / "kernels.bin"
        save_kernel_cache(model.distilbert, cache)
        del model
        ctx = mp.get_context("spawn")
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        self._procs = []
        for w in range(workers):
            cores = cpus[w * threads_per_worker:(w + 1) * threads_per_worker] if pin else []
            proc = ctx.Process(target=_worker, args=(str(model_dir), str(cache), cores, threads_per_worker,
                                                     self._tasks, self._results), daemon=True)
            proc.start()
            self._procs.append(proc)
        for _ in self._procs:
            kind, pid, message = self._results.get(timeout=600)
            if kind == "error":
                self.close()
                raise RuntimeError(f"throughput worker {pid} failed to start: {message}")
        self.workers, self.threads_per_worker = workers, threads_per_worker

    def run(self, batches: list[dict]) -> list[tuple]:
        """(start_logits, end_logits) numpy arrays per batch, in input order."""
        for index, batch in enumerate(batches):
            mask = batch.get("attention_mask")
            self._tasks.put((index, batch["input_ids"], mask))
        outputs: list = [None] * len(batches)
        for _ in batches:
            index, start, end = self._results.get(timeout=600)
            if index == "error":
                raise RuntimeError(f"throughput worker {start} failed: {end}")
            outputs[index] = (start, end)
        return outputs

    def close(self) -> None:
        for _ in self._procs:
            self._tasks.put(_STOP)
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
        self._procs = []
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
