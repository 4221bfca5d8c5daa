"""The CuPy side of the tile kernels and graphs, run on the CPU against a fake CuPy.

No GPU here, so the Python that launches the kernels and captures the graphs
(:func:`gpumlp.fastpath.tiles.tile_loss_and_grads`,
:class:`gpumlp.fastpath.graph.GraphBlocks`) runs against a stand-in for
CuPy: arrays are NumPy arrays, a kernel checks every argument against the C
signature in its source (count, pointer or scalar, the scalar's type) and
then computes what the kernel computes by the NumPy model; a stream records
launches while capturing, and a graph replays them. This checks the
plumbing (argument order, buffer offsets, slots, capture and replay, shared
memory settings), not the CUDA code: nvcc checks that it compiles
(``tests/test_tiles.py``) and a GPU run checks what it computes.
"""

import re
import sys
import types

import numpy as np
import pytest

from gpumlp.activations import ACTIVATIONS
from gpumlp.fastpath import graph, tiles

_SIGNATURE = re.compile(r'extern "C" __global__ void __launch_bounds__\(THREADS\) (\w+)\('
                        r'(.*?)\)\s*\{', re.S)


class FakeKernel:
    def __init__(self, module, name):
        self.module, self.name = module, name
        params = _SIGNATURE.findall(module.code)
        self.params = [p.strip() for p in dict(params)[name].split(",")]
        self.max_dynamic_shared_size_bytes = 48 * 1024

    def _check(self, args, shared_mem):
        assert len(args) == len(self.params), (self.name, len(args), len(self.params))
        ctype = self.module.dtype.type
        for param, arg in zip(self.params, args):
            if "*" in param:
                assert isinstance(arg, np.ndarray) and arg.dtype == self.module.dtype, param
                assert arg.flags.c_contiguous, param
            elif param.startswith("long long"):
                assert type(arg) is np.int64, param
            elif param.startswith("int "):
                assert type(arg) is np.int32, param
            else:
                assert param.startswith("T ") and type(arg) is ctype, (param, type(arg))
        assert shared_mem <= self.max_dynamic_shared_size_bytes, "shared memory not opted in"

    def __call__(self, grid, block, args, shared_mem=0):
        assert block == (tiles.THREADS,)
        self._check(args, shared_mem)
        launch = (self, grid, args)
        stream = FakeCupy.current_stream()
        if stream.captured is not None:
            stream.captured.append(launch)
        else:
            run(launch)


def _flat(pointer):
    view = pointer.reshape(-1)
    assert np.shares_memory(view, pointer)
    return view


def run(launch):
    """What a kernel computes, by the NumPy model, reading and writing through its pointers."""
    kernel, grid, args = launch
    m = kernel.module
    F, H, K, NG = m.sizes["F"], m.sizes["H"], m.sizes["K"], m.n_grads
    width = NG + 2
    if kernel.name == "gpumlp_tiles":
        X, y, W1, W2, b1, b2, partial, n, group_rows, scale, penalty = args
        X, y, partial = X.reshape(-1, F), y.reshape(-1, K), _flat(partial)
        weights = [W1.reshape(F, H), W2.reshape(H, K), b1.reshape(H), b2.reshape(K)]
        assert grid == (-(-int(n) // int(group_rows)),)
        for g in range(grid[0]):
            rows = slice(g * int(group_rows), min(int(n), (g + 1) * int(group_rows)))
            partial[g * width:g * width + NG + 1] = tiles._model_group(
                X[rows], y[rows], *weights, m.activation, scale)
        if penalty:
            partial[width - 1] = (tiles._model_penalty(weights[0])
                                  + tiles._model_penalty(weights[1]))
        return
    assert kernel.name == "gpumlp_tiles_reduce"
    (partial, groups, params, out, rate, update, has_l2, l2, entries, penalty_scale, loss,
     finite) = args
    assert grid == (-(-(NG + 1) // tiles.THREADS),)
    rows = _flat(partial)[:int(groups) * width].reshape(int(groups), width)
    totals = tiles._ordered_sum(rows[:, :NG + 1])
    value = totals[NG] / entries
    if has_l2:
        value = value + penalty_scale * rows[0, width - 1]
    _flat(loss)[0] = value
    grads = totals[:NG]
    n_weights = F * H + H * K
    if has_l2:
        grads[:n_weights] = grads[:n_weights] + l2 * _flat(params)[:n_weights]
    if not update:
        _flat(out)[:NG] = grads
        return
    new = _flat(params)[:NG] - _flat(rate)[0] * grads
    _flat(out)[:NG] = new
    if not np.all(np.isfinite(new)):
        _flat(finite)[0] = 0


class FakeModule:
    def __init__(self, code, options):
        assert tuple(options) == tiles.COMPILE_OPTIONS
        self.code = code
        self.sizes = {name: int(v) for name, v in re.findall(r"#define (\w+) (\d+)\n", code)}
        self.dtype = np.dtype({"float": "float32", "double": "float64"}[
            re.search(r"typedef (\w+) T;", code).group(1)])
        self.n_grads = (self.sizes["F"] * self.sizes["H"] + self.sizes["H"] * self.sizes["K"]
                        + self.sizes["H"] + self.sizes["K"])
        self.activation = next(a for a in ACTIVATIONS.values()
                               if f"return {a.cuda_forward}; }}" in code)

    def get_function(self, name):
        return FakeKernel(self, name)


class FakeStream:
    def __init__(self, non_blocking=False):
        self.captured = None

    def __enter__(self):
        FakeCupy.streams.append(self)
        return self

    def __exit__(self, *exc):
        FakeCupy.streams.pop()

    def begin_capture(self):
        assert self is not FakeCupy.null and self.captured is None
        self.captured = []

    def end_capture(self):
        captured, self.captured = self.captured, None
        return FakeGraph(captured)


class FakeGraph:
    def __init__(self, launches):
        self.launches = launches

    def launch(self, stream=None):
        assert FakeCupy.current_stream().captured is None
        for launch in self.launches:
            run(launch)


class FakeCupy(types.ModuleType):
    streams = []
    null = FakeStream()

    @classmethod
    def current_stream(cls):
        return cls.streams[-1] if cls.streams else cls.null


def fake_cupy():
    module = FakeCupy("cupy")
    for name in ("zeros", "empty", "asarray", "ascontiguousarray", "int64"):
        setattr(module, name, getattr(np, name))
    module.RawModule = FakeModule
    module.cuda = types.SimpleNamespace(
        Stream=FakeStream,
        runtime=types.SimpleNamespace(
            getDevice=lambda: 0,
            deviceGetAttribute=lambda attribute, device: {97: 227 * 1024}[attribute]))
    return module


@pytest.fixture
def cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    monkeypatch.setattr(tiles, "_MODULES", {})
    tiles._shared_limit.cache_clear()
    yield sys.modules["cupy"]
    tiles._shared_limit.cache_clear()


def _problem(n, f, h, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)).astype(dtype)
    y = rng.standard_normal((n, k)).astype(dtype)
    params = [(rng.standard_normal(s) * 0.3).astype(dtype)
              for s in ((f, h), (h, k), (h,), (k,))]
    return X, y, params


SHAPES = [(1, 1, 1, 1), (33, 2, 7, 1), (300, 6, 9, 3), (2000, 64, 256, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("alpha, n_total", [(0.0, None), (0.3, 5000)])
def test_the_tile_step_launches_its_kernels_as_their_signatures_say(cupy, dtype, shape, alpha,
                                                                    n_total):
    X, y, params = _problem(*shape, dtype)
    got = tiles.tile_loss_and_grads(X, y, params[:2], params[2:], "relu", alpha, n_total)
    want = tiles.model_loss_and_grads(X, y, params[:2], params[2:], "relu", alpha, n_total)
    assert got[0].shape == () and [g.shape for g in got[1] + got[2]] == [
        p.shape for p in params]
    for a, b in zip([got[0], *got[1], *got[2]], [want[0], *want[1], *want[2]]):
        np.testing.assert_array_equal(a, b)


def test_a_wide_network_opts_in_to_more_shared_memory(cupy):
    X, y, params = _problem(2000, 64, 256, 1, "float32")
    tiles.tile_loss_and_grads(X, y, params[:2], params[2:], "tanh")
    (tile_kernel, _), = tiles._MODULES.values()
    plan = tiles.plan_for(X, y, 256, max_elements=None)
    assert plan.shared_bytes > 48 * 1024
    assert tile_kernel.max_dynamic_shared_size_bytes == plan.shared_bytes


def test_the_tile_step_refuses_what_it_cannot_hold(cupy):
    X, y, params = _problem(10, 64, 1024, 1, "float32")   # too many sums per thread
    with pytest.raises(ValueError, match="cannot hold this network"):
        tiles.tile_loss_and_grads(X, y, params[:2], params[2:], "tanh")


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_graph_blocks_capture_replay_and_hand_back_every_epoch(cupy, dtype, activation, alpha):
    X, y, params = _problem(300, 6, 9, 3, dtype)
    plan = tiles.plan_for(X, y, 9)
    blocks = graph.GraphBlocks(X, y, activation, alpha, plan)
    model = tiles.ModelBlocks(X, y, activation, alpha)
    start = [p.copy() for p in params]
    for rates in ([0.1, 0.1, 0.05], [0.1], [0.2] * 5, [0.1, 0.1, 0.05]):
        got, want = blocks.run(start, rates), model.run(start, rates)
        assert len(got) == len(rates)
        for (p, loss, finite), (q, ref_loss, ref_finite) in zip(got, want):
            assert loss.shape == finite.shape == ()
            assert float(finite) == float(ref_finite) == 1.0
            for a, b in zip([loss, *p], [ref_loss, *q]):
                np.testing.assert_array_equal(a, b)
        earlier = got
        start = got[-1][0]
    assert sorted(blocks._graphs) == [1, 3, 5]          # one graph per block length
    # What the trainer keeps is not overwritten by the next replay.
    kept = [p.copy() for p in earlier[0][0]]
    blocks.run(start, [0.3, 0.3, 0.3])
    for a, b in zip(earlier[0][0], kept):
        np.testing.assert_array_equal(a, b)


def test_graph_blocks_report_non_finite_parameters(cupy):
    X, y, params = _problem(33, 2, 7, 1, "float32")
    with np.errstate(over="ignore", invalid="ignore"):
        blocks = graph.GraphBlocks(X, y * 1e30, "identity", 0.0, tiles.plan_for(X, y, 7))
        results = blocks.run(params, [1e10, 1e10])
        again = blocks.run(params, [1e-3])
    assert float(results[-1][2]) == 0.0 and float(again[0][2]) == 1.0   # the flags are reset


def test_graph_blocks_refuse_a_block_longer_than_their_slots(cupy):
    X, y, params = _problem(33, 2, 7, 1, "float64")
    blocks = graph.GraphBlocks(X, y, "tanh", 0.0, tiles.plan_for(X, y, 7), max_epochs=4)
    with pytest.raises(ValueError, match="1 to 4 epochs"):
        blocks.run(params, [0.1] * 5)


def test_the_fake_checks_the_signature(cupy):
    # The stand-in must be able to fail: a Python float where the kernel takes
    # a T, and one argument too many, are both caught.
    X, y, params = _problem(33, 2, 7, 1, "float64")
    plan = tiles.plan_for(X, y, 7)
    tile_kernel, _ = tiles._kernels("tanh", plan, X.dtype)
    partial = np.zeros((plan.groups, plan.width))
    good = (X, y, *params, partial, np.int64(33), np.int64(17), np.float64(0.5), np.int32(0))
    tile_kernel((plan.groups,), (tiles.THREADS,), good, shared_mem=plan.shared_bytes)
    for bad in (good[:-2] + (0.5, np.int32(0)), good + (np.int32(0),)):
        with pytest.raises(AssertionError):
            tile_kernel((plan.groups,), (tiles.THREADS,), bad, shared_mem=plan.shared_bytes)
