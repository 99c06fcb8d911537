"""Benchmark environment record and timing helpers (shared with the package's own benchmarks)."""
from fastdistilbert.benchmarking.env import environment, summarize, time_calls

__all__ = ["environment", "summarize", "time_calls"]
