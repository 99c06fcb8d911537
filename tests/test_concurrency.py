"""Concurrency: one INT8 model shared by many Python threads gives bit-identical results to serial calls
(including a first forward that builds the packed kernels concurrently), and `torch.set_num_threads` changed
between calls is honoured without changing any result, at model and op level."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import fastdistilbert as fd
from fastdistilbert import ops
from fastdistilbert.testing import prune_encoder_blocks, tiny_distilbert_qa
from test_kernels_support import AVAILABLE_ISAS, forced_isa, weight_with_zeros

pytestmark = pytest.mark.skipif(not fd.ops_available.kernels_available(), reason="needs the C++ extension")

THREADS, CALLS_PER_THREAD = 8, 4


@pytest.fixture(scope="module", params=[(0.0, (4, 1)), (0.8, (4, 1)), (0.8, (1, 4))], ids=["dense", "4x1", "1x4"])
def model(request):
    sparsity, block = request.param
    hf = prune_encoder_blocks(tiny_distilbert_qa(seed=7, dim=64, n_heads=4, hidden_dim=128, max_position_embeddings=64),
                              sparsity, block)
    return fd.convert_to_fast(hf, quantize=True).eval()


def batches(count):
    """Mixed-length padded batches of different sizes, one per call."""
    out = []
    for i in range(count):
        g = torch.Generator().manual_seed(100 + i)
        batch, seq = 1 + i % 4, 5 + (7 * i) % 40
        lengths = torch.randint(1, seq + 1, (batch,), generator=g)
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        out.append((torch.randint(0, 97, (batch, seq), generator=g), mask))
    return out


def run(model, inputs):
    ids, mask = inputs
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.start_logits, out.end_logits


def assert_identical(got, want):
    for (gs, ge), (ws, we) in zip(got, want, strict=True):
        assert torch.equal(gs, ws) and torch.equal(ge, we)


@pytest.mark.parametrize("cold", [False, True], ids=["prepared", "cold-kernels"])
def test_threads_sharing_one_model_equal_serial_calls(model, cold):
    inputs = batches(THREADS * CALLS_PER_THREAD)
    serial = [run(model, x) for x in inputs]
    if cold:  # the first concurrent forwards all find the packed kernels missing and build them
        model.distilbert._kernel_version = None
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(lambda x: run(model, x), inputs))
    assert_identical(concurrent, serial)


def test_thread_count_changes_between_calls_are_honoured_and_change_nothing(model):
    inputs = batches(6)
    before = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2, 1, 2):
            torch.set_num_threads(threads)
            assert torch.get_num_threads() == threads
            results.setdefault(threads, []).append([run(model, x) for x in inputs])
        reference = results[1][0]
        for runs in results.values():
            for outputs in runs:
                assert_identical(outputs, reference)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_kernels_read_the_thread_count_at_each_call(isa):
    """peak_probe runs its loop once per thread of torch's pool: twice the threads, twice the work, so a
    set_num_threads between calls reaches the kernels (nothing caches the count at load)."""
    before = torch.get_num_threads()
    try:
        done = {}
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            done[threads] = ops.peak_probe(1000, isa)
        assert done[2] == 2 * done[1]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_op_outputs_do_not_depend_on_thread_count(isa):
    """The full fused op (dynamic quantization, GELU, residual), not only the accumulators."""
    g = torch.Generator().manual_seed(11)
    x, residual = torch.randn(384, 150, generator=g) * 3, torch.randn(200, 150, generator=g)
    before = torch.get_num_threads()
    try:
        for pattern in ("dense", "4x1", "1x4"):
            weight_q, scale, bias = weight_with_zeros(200, 384, 0.3, pattern, seed=12)
            packed = ops.pack_weight(weight_q, scale, bias, pattern)
            outputs = []
            with forced_isa(isa):
                for threads in (1, 2, 1, 2):
                    torch.set_num_threads(threads)
                    outputs.append(ops.dynamic_quantized_linear(x, packed, gelu=True, residual=residual))
            assert all(torch.equal(y, outputs[0]) for y in outputs[1:]), pattern
    finally:
        torch.set_num_threads(before)


def test_threads_calling_ops_concurrently_on_shared_packed_weights():
    """Several Python threads running the ops on one packed buffer at once: same results as serial calls."""
    weight_q, scale, bias = weight_with_zeros(96, 256, 0.4, "4x1", seed=13)
    packed = ops.pack_weight(weight_q, scale, bias, "4x1")
    xs = [torch.randn(256, 1 + 13 * i, generator=torch.Generator().manual_seed(i)) for i in range(24)]
    serial = [ops.dynamic_quantized_linear(x, packed, gelu=True) for x in xs]
    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(lambda x: ops.dynamic_quantized_linear(x, packed, gelu=True), xs))
    assert all(torch.equal(a, b) for a, b in zip(concurrent, serial, strict=True))


def test_switching_the_isa_from_another_thread_changes_no_result(model):
    """The active variant is process-wide state (an atomic pointer): flipping it between every available ISA
    while other threads run forwards is safe, and since every variant is bit-exact the outputs do not change."""
    inputs = batches(THREADS * CALLS_PER_THREAD)
    serial = [run(model, x) for x in inputs]
    stop = threading.Event()

    def flip():
        i = 0
        while not stop.is_set():
            fd.set_isa(AVAILABLE_ISAS[i % len(AVAILABLE_ISAS)])
            i += 1
        return i

    try:
        with ThreadPoolExecutor(THREADS + 1) as pool:
            flips = pool.submit(flip)
            concurrent = list(pool.map(lambda x: run(model, x), inputs))
            stop.set()
            assert flips.result() > len(AVAILABLE_ISAS)  # the ISA really changed during the run
    finally:
        stop.set()
        fd.set_isa("auto")
    assert_identical(concurrent, serial)
