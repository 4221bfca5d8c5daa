"""Cross-backend numerical agreement: backends, tolerances, comparisons, reports.

The same data and the same initial weights (drawn on the host) go through
every backend and dtype; each result is compared with the oracle, NumPy in
float64. This module is shared by the test suite and by ``gpumlp validate``,
so both apply the same cases and the same limits.

Tolerances, and why they are what they are
------------------------------------------
The figure checked is the normwise relative error
``||candidate - oracle|| / ||oracle||`` (Frobenius norms, the oracle taken
in float64).

* **float64 kernels, 1e-12.** Each kernel is a few matrix products and
  elementwise operations; different BLAS/cuBLAS blocking orders change the
  rounding of sums of ``n`` terms by about ``n * eps``, with
  ``eps = 2.2e-16``. The kernel cases sum over at most a few hundred terms,
  so 1e-12 leaves a margin of about 10x over that bound.
* **float32 kernels, 1e-5.** The same argument with ``eps = 6e-8`` gives a
  few 1e-6 for a few hundred terms; the oracle is float64, so the float32
  inputs' own rounding (about 6e-8 relative) is included.
* **Training runs.** Rounding differences are fed back through every step,
  so the bound grows with the number of steps. float64 trajectories get
  1e-10 (a hundred times the kernel bound, for up to 100 epochs). float32
  trajectories get 1e-4, loosened on purpose: a float32 run is compared with
  a float64 oracle, so its first rounding errors (about 1e-7 relative) are
  carried along a hundred epochs. The largest float32 trajectory error
  measured on these cases is about a hundred times below the bound (the
  figure, with its machine and date, is in the README's agreement section),
  which leaves room for other BLAS libraries' summation orders.
* **Poisson** (``"poisson"``, minibatch SGD with momentum and ``alpha``,
  trained on ``exp(y)``): the same bounds. Its exponential output and
  logarithm add a few roundings per entry, no feedback the other runs lack.
* **L-BFGS** (``"lbfgs"``): the same bounds, but compared after 1 and 10
  iterations only (:data:`CHECKPOINTS_FOR`). L-BFGS amplifies rounding far
  more than a first-order method: its direction is built from differences of
  gradients (``y = g_new - g_old``), which cancel, and its line search makes
  discrete choices (accept, bracket, zoom) that a rounding difference can
  flip, after which the runs follow different but equally valid paths. The
  measured errors (README, agreement section) stay within the bounds after
  10 iterations, with a margin of about 12x for float32 and far more for
  float64, and grow past them by 100; 10 iterations still exercise the
  two-loop recursion with a full memory of curvature pairs and the line
  search.

The maximum distance in units in the last place (ULP, measured in the
candidate's dtype) is reported for information only: near zero a tiny absolute
error is many ULP, so it is no fair pass/fail criterion.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from . import fastpath, kernels
from .devices import BackendUnavailableError, CUDAUnavailableError, Device, get_device, to_numpy
from .initialization import glorot_uniform

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "Comparison",
    "TOLERANCES",
    "available_backends",
    "backend_device",
    "compare",
    "kernel_outputs",
    "training_outputs",
    "validate",
]

#: Backend names understood by :func:`backend_device`: each library on every
#: kind of device it can drive (those missing here are reported unusable).
BACKENDS = ("numpy", "array_api_strict", "array_api_strict:device1", "cupy",
            "torch", "torch:cuda", "torch:mps", "torch:xpu", "jax", "jax:gpu", "jax:tpu")

#: Normwise relative error bounds, per (what, dtype); see the module docstring.
TOLERANCES = {
    ("kernel", "float64"): 1e-12,
    ("kernel", "float32"): 1e-5,
    ("training", "float64"): 1e-10,
    ("training", "float32"): 1e-4,
}


def backend_device(name: str) -> Device:
    """The :class:`Device` for a backend name (see :data:`BACKENDS`).

    ``"cupy:N"`` picks GPU ``N``; ``"torch:DEVICE"`` and ``"jax:DEVICE"``
    take the device specifiers of :func:`gpumlp.devices.get_device`
    (``"torch:mps"``, ``"jax:gpu:1"``), the CPU by default. Raises
    :class:`BackendUnavailableError` with the reason when the backend cannot
    be used on this machine.
    """
    base, _, index = name.partition(":")
    if base == "numpy" and not index:
        return Device("cpu")
    if base == "array_api_strict":
        try:
            import array_api_strict
        except ImportError:
            raise BackendUnavailableError(
                "array_api_strict is not installed (pip install array-api-strict)"
            ) from None
        native = array_api_strict.Device(index or "CPU_DEVICE")
        return Device("array", None, array_api_strict, native)
    if base == "cupy":
        try:
            return get_device(f"cuda:{index or 0}")
        except CUDAUnavailableError as exc:
            raise BackendUnavailableError(str(exc)) from None
    if base in ("torch", "jax"):
        return get_device(index or "cpu", base)
    raise ValueError(f"Unknown backend {name!r}; choose from {BACKENDS}.")


def available_backends():
    """``(usable, unusable)``: names that work here, and ``{name: reason}`` for the rest."""
    usable, reasons = [], {}
    for name in BACKENDS:
        try:
            backend_device(name)
        except BackendUnavailableError as exc:
            reasons[name] = str(exc)
        else:
            usable.append(name)
    return usable, reasons


# ---------------------------------------------------------------- metrics
@dataclass
class Comparison:
    """One candidate array against the oracle."""

    backend: str
    dtype: str
    group: str
    name: str
    max_abs: float
    rel: float
    max_ulp: float
    tol: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.rel) and self.rel <= self.tol


def compare(candidate, oracle, *, backend, dtype, group, name, tol):
    """Compare an array (any namespace) with a float64 NumPy oracle."""
    got = np.asarray(to_numpy(candidate), dtype=np.float64)
    ref = np.asarray(oracle, dtype=np.float64)
    if got.shape != ref.shape:
        return Comparison(backend, dtype, group, name, math.inf, math.inf, math.inf, tol)
    diff = got - ref
    norm = float(np.linalg.norm(ref))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
    if not np.all(np.isfinite(got)):
        rel = math.inf
    ref_rounded = ref.astype(dtype)
    ulp = np.abs(got.astype(dtype).astype(np.float64) - ref_rounded.astype(np.float64))
    ulp = ulp / np.spacing(np.abs(ref_rounded)).astype(np.float64)
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    max_ulp = float(np.max(ulp)) if ulp.size else 0.0
    return Comparison(backend, dtype, group, name, max_abs, rel, max_ulp, tol)


# ------------------------------------------------------------------ cases
def make_problem(n_samples=256, n_features=8, hidden=(16,), n_outputs=1, seed=0):
    """Host data and Glorot-uniform weights (float64) for an agreement case."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    y = np.sin(X[:, :n_outputs] * 1.5) + 0.1 * rng.standard_normal((n_samples, n_outputs))
    coefs, intercepts = glorot_uniform([n_features, *hidden, n_outputs], rng)
    return X, y, coefs, intercepts


def kernel_outputs(device: Device, dtype: str, problem=None, activation="sigmoid"):
    """Every kernel's result on ``device`` in ``dtype``, as a dict of arrays.

    Keys: ``a1``.. (hidden activations), ``y_pred``, ``loss`` (with an L2
    penalty, alpha = 0.1), ``dW1``, ``db1``, ..., one step of each update
    rule: ``gd/W1``..., ``momentum/W1``..., ``adam/W1``..., and where the
    backend has a fast path (:mod:`gpumlp.fastpath`), its results as
    ``fast/loss``, ``fast/dW1``...
    """
    X, y, coefs, intercepts = problem if problem is not None else make_problem()
    xp = device.xp
    dt = getattr(xp, dtype)
    with device.context():
        Xd, yd = device.asarray(X, dtype=dt), device.asarray(y, dtype=dt)
        n = X.shape[0]
        cs = [device.asarray(W, dtype=dt) for W in coefs]
        bs = [device.asarray(b, dtype=dt) for b in intercepts]
        acts = kernels.forward(Xd, cs, bs, activation)
        out = {f"a{i}": a for i, a in enumerate(acts[1:-1], start=1)}
        out["y_pred"] = acts[-1]
        out["loss"] = kernels.squared_error(yd, acts[-1]) + kernels.l2_penalty(cs, 0.1, n)
        coef_grads, intercept_grads = kernels.backward(yd, acts, cs, activation, alpha=0.1)
        names = [f"W{i + 1}" for i in range(len(cs))] + [f"b{i + 1}" for i in range(len(bs))]
        grads = coef_grads + intercept_grads
        out.update({f"d{k}": g for k, g in zip(names, grads)})
        params = cs + bs
        zeros = [xp.zeros_like(p) for p in params]
        stepped = {
            "gd": kernels.gd_step(params, grads, 0.1),
            "momentum": kernels.momentum_step(params, grads, zeros, 0.1, 0.9, True)[0],
            "adam": kernels.adam_step(params, grads, zeros, zeros, 1, 0.01, 0.9, 0.999, 1e-8)[0],
        }
        for rule, new in stepped.items():
            out.update({f"{rule}/{k}": p for k, p in zip(names, new)})
        fast = fastpath.select(Xd, len(cs), activation)
        if fast is not None:
            loss, coef_grads, intercept_grads = fast(Xd, yd, cs, bs)
            loss, coef_grads = kernels.add_l2(loss, coef_grads, cs, 0.1, n)
            out["fast/loss"] = loss
            out.update({f"fast/d{k}": g for k, g in
                        zip(names, coef_grads + intercept_grads)})
    return out


#: The training runs compared: name -> estimator parameters.
TRAINING_CONFIGS = {
    "gd": dict(solver="gd", learning_rate_init=0.05),
    "sgd": dict(solver="sgd", momentum=0.0, batch_size=64, learning_rate_init=0.05),
    "momentum": dict(solver="sgd", momentum=0.9, batch_size=64, learning_rate_init=0.01),
    "adam": dict(solver="adam", batch_size=64, learning_rate_init=0.003),
    # The curvature estimate and the adaptive rate (gpumlp.step_size): its
    # "learning_rates" must be the same sequence on every float64 backend.
    "gd-auto": dict(solver="gd", learning_rate_init="auto"),
    "poisson": dict(solver="sgd", momentum=0.9, batch_size=64, learning_rate_init=0.01,
                    loss="poisson", alpha=0.1),
    "lbfgs": dict(solver="lbfgs", alpha=1e-3),
}

#: Training runs compared in float64 only. The adaptive rate's decisions
#: compare two losses; in float32 they differ from the float64 oracle's (the
#: rates part by tens of percent within 100 epochs, see the README), which
#: says nothing about the backend. In float64 every backend must take the
#: oracle's decisions.
FLOAT64_ONLY = frozenset({"gd-auto"})

#: Epochs after which weights are compared.
CHECKPOINTS = (1, 10, 100)

#: Configurations compared at other epochs (iterations); see the module docstring.
CHECKPOINTS_FOR = {"lbfgs": (1, 10)}


def training_outputs(device: Device, dtype: str, config: str, problem=None,
                     checkpoints=None):
    """Weights after each checkpoint's epoch, the loss curve and ``predict``.

    Every backend starts from the same weights and sees the same batch order
    (both come from the host seed). A ``loss="poisson"`` configuration trains
    on ``exp(y)``, a positive target. ``checkpoints`` defaults to
    :data:`CHECKPOINTS_FOR` or :data:`CHECKPOINTS`. Returns a dict of arrays.
    """
    from .estimator import MLPRegressor

    if checkpoints is None:
        checkpoints = CHECKPOINTS_FOR.get(config, CHECKPOINTS)
    params = TRAINING_CONFIGS[config]
    X, y, coefs, intercepts = problem if problem is not None else make_problem()
    if params.get("loss") == "poisson":
        y = np.exp(y)
    dt = getattr(device.xp, dtype)
    with device.context():
        Xd, yd = device.asarray(X, dtype=dt), device.asarray(y, dtype=dt)

    def start():
        model = MLPRegressor(
            hidden_layer_sizes=tuple(W.shape[1] for W in coefs[:-1]), random_state=0,
            tol=0.0, n_iter_no_change=10**9, warm_start=True, device=device, dtype=dtype,
            **params,
        )
        model.coefs_ = [W.astype(dtype) for W in coefs]
        model.intercepts_ = [b.astype(dtype) for b in intercepts]
        return model

    def record(model, epoch):
        for i, (W, b) in enumerate(zip(model.coefs_, model.intercepts_), start=1):
            out[f"step{epoch}/W{i}"] = W
            out[f"step{epoch}/b{i}"] = b

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        if params["solver"] == "lbfgs":
            # L-BFGS has no partial_fit: one fit from the start per checkpoint,
            # max_iter iterations each (ftol and gtol cannot stop it first:
            # tol=0 and, on these problems, the loss keeps falling).
            for epoch in sorted(checkpoints):
                model = start().set_params(max_iter=epoch)
                model.fit(Xd, yd)
                record(model, epoch)
        else:
            model = start()
            # One epoch per partial_fit keeps the solver's state, so the weights
            # at each checkpoint lie on one uninterrupted trajectory.
            for epoch in range(1, max(checkpoints) + 1):
                model.partial_fit(Xd, yd)
                if epoch in checkpoints:
                    record(model, epoch)
    out["loss_curve"] = np.asarray(model.loss_curve_)
    out["learning_rates"] = np.asarray(model.learning_rates_)
    out["predict"] = model.predict(Xd)
    return out


def oracle(problem, configs):
    """NumPy float64 results of the generic path: kernels, and each training run."""
    device = Device("cpu")
    with fastpath.disabled():
        kernels_ = {k: to_numpy(v) for k, v in kernel_outputs(device, "float64", problem).items()}
        training = {c: {k: to_numpy(v) for k, v in
                        training_outputs(device, "float64", c, problem).items()}
                    for c in configs}
    return kernels_, training


# ----------------------------------------------------------------- report
def validate(backends=None, dtypes=("float32", "float64"), configs=None, problem=None):
    """Train and compare on several backends against NumPy float64.

    Parameters
    ----------
    backends : list of str, optional
        Backend names (see :data:`BACKENDS`); by default every available one.
    dtypes : sequence of str
    configs : list of str, optional
        Training configurations (keys of :data:`TRAINING_CONFIGS`); all by default.

    Returns
    -------
    list of Comparison
    """
    if backends is None:
        backends, _ = available_backends()
    configs = list(TRAINING_CONFIGS) if configs is None else configs
    problem = make_problem() if problem is None else problem
    oracle_kernels, oracle_training = oracle(problem, configs)
    results = []
    for backend in backends:
        device = backend_device(backend)
        for dtype in dtypes:
            got = kernel_outputs(device, dtype, problem)
            tol = TOLERANCES[("kernel", dtype)]
            for name, value in got.items():
                # A fast path's gradients are compared with the generic ones.
                ref = oracle_kernels[name.removeprefix("fast/")]
                group = "fastpath" if name.startswith("fast/") else "kernel"
                results.append(compare(value, ref, backend=backend, dtype=dtype,
                                       group=group, name=name, tol=tol))
            tol = TOLERANCES[("training", dtype)]
            for config in configs:
                if dtype != "float64" and config in FLOAT64_ONLY:
                    continue
                got = training_outputs(device, dtype, config, problem)
                for name, ref in oracle_training[config].items():
                    results.append(compare(got[name], ref, backend=backend, dtype=dtype,
                                           group=f"train:{config}", name=name, tol=tol))
    return results


def format_table(results):
    """The report as text: one table per backend and dtype."""
    lines = []
    current = None
    header = f"{'group':16s} {'quantity':18s} {'max abs err':>12s} {'rel err':>10s} " \
             f"{'max ULP':>10s} {'tol':>8s}  result"
    for r in results:
        if (r.backend, r.dtype) != current:
            current = (r.backend, r.dtype)
            lines += ["", f"== {r.backend} {r.dtype} vs numpy float64 ==", header]
        lines.append(
            f"{r.group:16s} {r.name:18s} {r.max_abs:12.3e} {r.rel:10.3e} "
            f"{r.max_ulp:10.3g} {r.tol:8.0e}  {'PASS' if r.passed else 'FAIL'}"
        )
    failed = sum(not r.passed for r in results)
    lines += ["", f"{len(results) - failed} passed, {failed} failed"]
    return "\n".join(lines)


def to_json(results):
    """The report as a JSON string."""
    return json.dumps(
        [dict(asdict(r), passed=r.passed) for r in results], indent=1, allow_nan=True
    )
