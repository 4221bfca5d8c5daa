#!/usr/bin/env python3
"""Side-by-side benchmark: a gpumlp training step against its peers.

For each size (n, f, h) and dtype it times, as medians over repeats after a
warm-up:

* a full-batch training step (forward, backward, update) and a minibatch
  epoch, for gpumlp (fast path as dispatched), gpumlp's generic array-API path,
  gpumlp's kernels on its PyTorch and JAX backends (``gpumlp-torch``,
  ``gpumlp-jax``: the same trainer, JAX's step under ``jax.jit``),
  scikit-learn's MLPRegressor (logistic, sgd, batch_size=n, no momentum, a
  doubled learning rate since its loss is half the MSE), PyTorch eager,
  ``torch.compile`` and ``jax.jit``;
* on CUDA, ``gpumlp-graph``: the opt-in path of issue 10 (never run on a
  GPU before ``ci/gpu``), full-batch epochs in blocks of 64 replayed as one
  CUDA graph of the tile kernels (its "step" is a block's time / 64,
  copies in and out included), and minibatch epochs through the tile step;
* the "matmul ceiling": just the step's five matrix products, on
  preallocated operands, in the backend's own library;
* peak memory of one step beyond the data (NumPy-based runners: tracemalloc;
  CuPy: the memory pool; PyTorch on CUDA: its allocator's peak);
* achieved GFLOP/s (``4 n f h + 6 n h k`` flops per step) and the matmul
  ceiling as a fraction of the step.

A peer that is not installed is skipped with a note. This is a benchmark, not
a test: nothing here asserts a time.

    python scripts/bench.py                      # CPU, the three sizes, float32+float64
    python scripts/bench.py --device cuda --json out/bench-gpu.json
    python scripts/bench.py --mode fit           # whole fits, per epoch (bench_fit.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

# JAX must not take most of the GPU's memory at start-up, beside CuPy and PyTorch.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = {"small": (10_000, 16, 64), "medium": (100_000, 64, 256), "large": (1_000_000, 32, 128)}
LR = 0.01


class Skip(Exception):
    """A runner that cannot run here, with the reason."""


# ------------------------------------------------------------------ timing
def median_ms(fn, sync, repeats, warmup=2, budget_s=8.0):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return 1e3 * statistics.median(times), len(times)


def make_data(n, f, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)).astype(dtype)
    y = (np.sin(X[:, :1]) + 0.1 * rng.standard_normal((n, 1))).astype(dtype)
    return X, y


# ----------------------------------------------------------------- runners
def _gpumlp_setup(ctx, backend=None):
    """``(device, source, params, rng, n, h)`` for the gpumlp runners; Skip if unavailable."""
    from gpumlp.devices import BackendUnavailableError, get_device
    from gpumlp.initialization import glorot_uniform
    from gpumlp.sources import ArraySource

    try:
        device = get_device(ctx["device"], backend)
    except BackendUnavailableError as exc:
        raise Skip(str(exc).split(". ")[0]) from None
    n, f, h = ctx["size"]
    X, y = ctx["data"]
    coefs, intercepts = glorot_uniform([f, h, 1], np.random.default_rng(0), ctx["dtype"])
    with device.context():
        source = ArraySource(device.asarray(X), device.asarray(y), device)
        params = [device.asarray(p) for p in coefs + intercepts]
    return device, source, params, np.random.default_rng(0), n, h


def run_gpumlp(ctx, fast=True, backend=None):
    from gpumlp.activations import get_activation
    from gpumlp.devices import to_numpy
    from gpumlp.solvers import GradientDescent
    from gpumlp.sources import Network
    from gpumlp.training import Trainer, compiled_step

    device, source, params, rng, n, _ = _gpumlp_setup(ctx, backend)
    with device.context():
        solver = GradientDescent(LR)
        trainer = Trainer(Network(2, get_activation("sigmoid"), fast), solver, 0.0, params,
                          solver.init_state(params))
        whole = source.batches(rng, n, shuffle=False)[0]

        # The trainer's own step for rows in memory (jax.jit on JAX).
        full_step = compiled_step(device, trainer.network, trainer.solver, trainer.alpha,
                                  source.n_outputs)
        X_all, y_all, w_all = source.rows(whole)

        def step():
            trainer.params, trainer.state, _ = full_step(
                trainer.params, trainer.state, X_all, y_all, w_all)

        def epoch():
            trainer.epoch(source, source.batches(rng, ctx["batch"], shuffle=False))

        sync = device.synchronize
        if device.kind == "jax":  # JAX runs ahead; reading a result waits for it
            def sync():
                to_numpy(trainer.params[-1])
        result = time_step_and_epoch(ctx, step, epoch, sync)
        if device.kind in ("cpu", "cuda"):
            result["peak_mb"] = peak_memory_mb(ctx, step, device)
    return result


def run_gpumlp_graph(ctx):
    """The opt-in CUDA path: graphs of 64 full-batch epochs, and the tile step."""
    if not ctx["device"].startswith("cuda"):
        raise Skip("CUDA only")
    from gpumlp.activations import get_activation
    from gpumlp.fastpath import graph, tiles
    from gpumlp.solvers import GradientDescent
    from gpumlp.sources import Network
    from gpumlp.training import Trainer

    device, source, params, rng, _, h = _gpumlp_setup(ctx)
    with device.context():
        # Whatever the dispatch's size threshold: this measures where it should be.
        plan = tiles.plan_for(source.X, source.y, h, max_elements=None)
        if plan is None:
            raise Skip("the tile kernels cannot hold this network")
        blocks = graph.GraphBlocks(source.X, source.y, "sigmoid", 0.0, plan)
        rates = [LR] * graph.MAX_EPOCHS
        state = {"params": params}

        def block():
            state["params"] = blocks.run(state["params"], rates)[-1][0]

        ms, reps = median_ms(block, device.synchronize, max(3, ctx["repeats"] // 4))
        result = {"step_ms": ms / len(rates), "repeats": reps, "block_epochs": len(rates)}
        if ctx["epochs"]:
            solver = GradientDescent(LR)
            network = Network(2, get_activation("sigmoid"), True, cuda_graph=True)
            trainer = Trainer(network, solver, 0.0, params, solver.init_state(params))

            def epoch():
                trainer.epoch(source, source.batches(rng, ctx["batch"], shuffle=False))

            result["epoch_ms"], result["epoch_repeats"] = median_ms(
                epoch, device.synchronize, max(3, ctx["repeats"] // 4), warmup=1)
    return result


def run_matmul(ctx):
    from gpumlp.devices import get_device

    device = get_device(ctx["device"])
    n, f, h = ctx["size"]
    X, y = ctx["data"]
    rng = np.random.default_rng(1)
    with device.context():
        xp = device.xp
        Xd, yd = device.asarray(X), device.asarray(y)
        W1 = device.asarray(rng.standard_normal((f, h)).astype(ctx["dtype"]))
        W2 = device.asarray(rng.standard_normal((h, 1)).astype(ctx["dtype"]))
        a1 = device.asarray(rng.random((n, h)).astype(ctx["dtype"]))
        d1 = device.asarray(rng.random((n, h)).astype(ctx["dtype"]))

        def products():
            Xd @ W1
            a1 @ W2
            a1.T @ yd
            yd @ W2.T
            Xd.T @ d1

        ms, reps = median_ms(products, device.synchronize, ctx["repeats"])
        del xp
    return {"step_ms": ms, "repeats": reps}


def run_sklearn(ctx):
    if ctx["device"] != "cpu":
        raise Skip("CPU only")
    try:
        from sklearn.neural_network import MLPRegressor
    except ImportError:
        raise Skip("scikit-learn not installed") from None
    import warnings

    n, f, h = ctx["size"]
    X, y = ctx["data"]

    def model(batch):
        m = MLPRegressor(hidden_layer_sizes=(h,), activation="logistic", solver="sgd",
                         batch_size=batch,
                         momentum=0.0, learning_rate_init=2 * LR, alpha=0.0, shuffle=False,
                         max_iter=1, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.partial_fit(X, y[:, 0])
        return m

    full, mini = model(n), model(ctx["batch"])

    def step():
        full.partial_fit(X, y[:, 0])

    def epoch():
        mini.partial_fit(X, y[:, 0])

    result = time_step_and_epoch(ctx, step, epoch, lambda: None)
    result["peak_mb"] = peak_memory_mb(ctx, step, None)
    return result


def _torch(ctx):
    try:
        import torch
    except ImportError:
        raise Skip("PyTorch not installed") from None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def run_torch(ctx, compiled=False):
    torch = _torch(ctx)
    dev = "cuda" if ctx["device"].startswith("cuda") else "cpu"
    if dev == "cuda" and not torch.cuda.is_available():
        raise Skip("PyTorch sees no CUDA device")
    n, f, h = ctx["size"]
    X, y = ctx["data"]
    dtype = getattr(torch, ctx["dtype"])
    Xt, yt = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(f, h), torch.nn.Sigmoid(),
                                torch.nn.Linear(h, 1)).to(device=dev, dtype=dtype)
    forward = model
    if compiled:
        if not hasattr(torch, "compile"):
            raise Skip("torch.compile missing")
        forward = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.MSELoss()

    def train_on(Xb, yb):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(Xb), yb)
        loss.backward()
        optimizer.step()

    def step():
        train_on(Xt, yt)

    batch = ctx["batch"]

    def epoch():
        for start in range(0, n, batch):
            train_on(Xt[start:start + batch], yt[start:start + batch])

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    try:
        result = time_step_and_epoch(ctx, step, epoch, sync)
    except Exception as exc:  # compilation failures, mostly
        raise Skip(f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}") from None
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        sync()
        result["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return result


def run_jax(ctx):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        raise Skip("JAX not installed") from None
    want_gpu = ctx["device"].startswith("cuda")
    backend = "gpu" if want_gpu else "cpu"
    try:
        dev = jax.devices(backend)[0]
    except RuntimeError:
        raise Skip(f"JAX has no {backend} backend") from None
    if ctx["dtype"] == "float64":
        jax.config.update("jax_enable_x64", True)
    n, f, h = ctx["size"]
    X, y = ctx["data"]
    Xj, yj = jax.device_put(X, dev), jax.device_put(y, dev)
    rng = np.random.default_rng(0)
    params = [jax.device_put(rng.uniform(-0.1, 0.1, s).astype(ctx["dtype"]), dev)
              for s in ((f, h), (h,), (h, 1), (1,))]

    def loss(p, Xb, yb):
        a1 = jax.nn.sigmoid(Xb @ p[0] + p[1])
        return jnp.mean((a1 @ p[2] + p[3] - yb) ** 2)

    @jax.jit
    def update(p, Xb, yb):
        grads = jax.grad(loss)(p, Xb, yb)
        return [w - LR * g for w, g in zip(p, grads)]

    state = {"p": params}

    def step():
        state["p"] = update(state["p"], Xj, yj)

    batch = ctx["batch"]
    batches = [(Xj[s:s + batch], yj[s:s + batch]) for s in range(0, n, batch)]

    def epoch():
        p = state["p"]
        for Xb, yb in batches:
            p = update(p, Xb, yb)
        state["p"] = p

    def sync():
        jax.block_until_ready(state["p"])

    return time_step_and_epoch(ctx, step, epoch, sync)


RUNNERS = {
    "gpumlp": run_gpumlp,
    "gpumlp-generic": lambda ctx: run_gpumlp(ctx, fast=False),
    "gpumlp-torch": lambda ctx: run_gpumlp(ctx, backend="torch"),
    "gpumlp-jax": lambda ctx: run_gpumlp(ctx, backend="jax"),
    "gpumlp-graph": run_gpumlp_graph,
    "matmul-ceiling": run_matmul,
    "jax.jit": run_jax,
    "torch.compile": lambda ctx: run_torch(ctx, compiled=True),
    "torch-eager": run_torch,
    "scikit-learn": run_sklearn,
}


def time_step_and_epoch(ctx, step, epoch, sync):
    ms, reps = median_ms(step, sync, ctx["repeats"])
    result = {"step_ms": ms, "repeats": reps}
    if ctx["epochs"]:
        result["epoch_ms"], result["epoch_repeats"] = median_ms(
            epoch, sync, max(3, ctx["repeats"] // 4), warmup=1)
    return result


def peak_memory_mb(ctx, step, device):
    """Peak memory one step allocates beyond what already exists."""
    if device is None or device.kind == "cpu":
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return (peak - base) / 2**20
    import cupy

    pool = cupy.get_default_memory_pool()
    device.synchronize()
    pool.free_all_blocks()
    base = pool.used_bytes()
    step()
    device.synchronize()
    # Freed blocks stay in the pool, so its size bounds what was live at once.
    return (pool.total_bytes() - base) / 2**20


# ------------------------------------------------------------------ report
def flops(n, f, h, k=1):
    return 4 * n * f * h + 6 * n * h * k


def describe_machine(device):
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.startswith("cuda"):
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else name
        info["cupy"] = cupy.__version__
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    for module in ("torch", "jax", "sklearn"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    return info


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["--mode", "fit"] or "--mode=fit" in argv[:1]:
        # Whole fits, per epoch, against the peers: scripts/bench_fit.py.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_fit

        return bench_fit.main(argv[2:] if argv[:1] == ["--mode"] else argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="--mode fit (first): per-epoch time of whole "
                                            "fits instead (scripts/bench_fit.py)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--sizes", default="small,medium,large",
                        help="of small (10k,16,64), medium (100k,64,256), large (1M,32,128)")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--runners", default=",".join(RUNNERS),
                        help=f"default: all of {', '.join(RUNNERS)}")
    parser.add_argument("--compile-dtypes", default="float32",
                        help="dtypes for torch.compile, whose compilation is slow "
                             "(default: float32)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000, help="minibatch size for epochs")
    parser.add_argument("--no-epochs", action="store_true", help="time full-batch steps only")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    machine = describe_machine(args.device)
    print("machine:", ", ".join(f"{k}={v}" for k, v in machine.items()))
    records = []
    for dtype in args.dtypes.split(","):
        for size_name in args.sizes.split(","):
            n, f, h = SIZES[size_name]
            ctx = {"device": args.device, "size": (n, f, h), "dtype": dtype,
                   "data": make_data(n, f, dtype), "repeats": args.repeats,
                   "batch": args.batch, "epochs": not args.no_epochs}
            for runner in args.runners.split(","):
                record = {"size": [n, f, h], "dtype": dtype, "runner": runner,
                          "device": args.device}
                try:
                    if runner == "torch.compile" and dtype not in args.compile_dtypes.split(","):
                        raise Skip(f"not run for {dtype} (--compile-dtypes)")
                    record.update(RUNNERS[runner](ctx))
                    record["gflops"] = flops(n, f, h) / record["step_ms"] / 1e6
                except Skip as reason:
                    record["skipped"] = str(reason)
                records.append(record)
                status = record.get("skipped") or (
                    f"step {record['step_ms']:9.3f} ms" + (
                        f"  epoch {record['epoch_ms']:9.1f} ms" if "epoch_ms" in record else ""))
                print(f"  ({n}, {f}, {h}) {dtype} {runner:15s} {status}", flush=True)
    print_table(records)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "args": vars(args), "results": records}, handle,
                      indent=1)
        print(f"wrote {args.json}")


def print_table(records):
    """Medians side by side, each as a ratio of gpumlp's time (higher: gpumlp faster)."""
    print()
    print(f"{'(n, f, h)':18s} {'dtype':8s} {'runner':15s} {'step ms':>10s} {'x gpumlp':>9s} "
          f"{'epoch ms':>10s} {'x gpumlp':>9s} {'GFLOP/s':>8s} {'peak MB':>8s}")
    by_key = {}
    for r in records:
        by_key.setdefault((tuple(r["size"]), r["dtype"]), []).append(r)
    for (size, dtype), rows in by_key.items():
        ours = next((r for r in rows if r["runner"] == "gpumlp" and "step_ms" in r), None)
        for r in rows:
            if "skipped" in r:
                print(f"{str(size):18s} {dtype:8s} {r['runner']:15s} skipped: {r['skipped']}")
                continue
            ratio = r["step_ms"] / ours["step_ms"] if ours else float("nan")
            epoch = r.get("epoch_ms")
            eratio = epoch / ours["epoch_ms"] if ours and epoch and "epoch_ms" in ours \
                else float("nan")
            peak = r.get("peak_mb")
            print(f"{str(size):18s} {dtype:8s} {r['runner']:15s} {r['step_ms']:10.3f} "
                  f"{ratio:9.2f} {epoch if epoch else float('nan'):10.1f} {eratio:9.2f} "
                  f"{r['gflops']:8.1f} {peak if peak is not None else float('nan'):8.1f}")
        ceiling = next((r for r in rows if r["runner"] == "matmul-ceiling" and "step_ms" in r),
                       None)
        if ours and ceiling:
            print(f"{'':27s} gpumlp step at {ceiling['step_ms'] / ours['step_ms']:.0%} of the "
                  f"matmul ceiling")


if __name__ == "__main__":
    main()
