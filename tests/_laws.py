"""Hypothesis strategies over gpumlp's whole parameter space, for the laws (issue 20).

One strategy draws an estimator configuration (:func:`configs`): every
solver, activation, loss and dtype; ``alpha``, the schedules, ``"auto"``,
early stopping, ``eval_set`` and ``sample_weight``; one output or two;
feature names; a plain ``MLPRegressor`` or a ``StandardizedRegressor``. One
draws data for it (:func:`datasets`): shapes, scales, offsets, duplicated
rows and constant columns. :func:`train_argv` draws the ``gpumlp train``
flags. Everything is sized so that one fit takes milliseconds: the laws
run many of them, in CI on a 2-core machine.

:func:`build` turns a configuration into an estimator, :func:`fit_kwargs`
into the arguments of its ``fit``, and :func:`fit` fits it quietly. Other
test modules (the certificate's) reuse them.

How many examples a law runs comes from the hypothesis profile (registered
in ``tests/conftest.py``: ``ci``, the default, and ``long``):
:func:`law_settings` divides it by the law's cost.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, event, reject, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from gpumlp import MLPRegressor, StandardizedRegressor, TrainingDivergedError

ACTIVATIONS = ("sigmoid", "logistic", "tanh", "relu", "identity")
SOLVERS = ("gd", "sgd", "adam", "lbfgs")
SCHEDULES = ("constant", "invscaling", "adaptive")
DTYPES = ("float32", "float64")


def law_settings(cost: int = 1, **more) -> settings:
    """The current profile's settings, with its ``max_examples`` divided by ``cost``."""
    base = settings.default
    return settings(max_examples=max(2, base.max_examples // cost), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.large_base_example,
                                           HealthCheck.function_scoped_fixture], **more)


@dataclass
class Config:
    """One drawn configuration: the estimator's parameters and how it is fitted."""

    params: dict
    standardized: bool = False
    n_outputs: int = 1
    y_1d: bool = True
    sample_weight: bool = False
    eval_set: bool = False
    frame: bool = False          # X as a pandas DataFrame with string column names
    notes: dict = field(default_factory=dict)

    @property
    def full_batch(self) -> bool:
        """Whether every epoch is one step over every row (gd, lbfgs, or one minibatch)."""
        return self.params["solver"] in ("gd", "lbfgs")

    @property
    def fixed_rate(self) -> bool:
        return self.params["learning_rate_init"] != "auto" or self.params["solver"] != "gd"


def _rates(solver):
    if solver == "gd":
        return st.one_of(st.just("auto"), st.sampled_from([0.01, 0.05, 0.1, 0.3]))
    if solver == "sgd":
        return st.sampled_from(["auto", 0.001, 0.01, 0.05])
    if solver == "adam":
        return st.sampled_from(["auto", 0.001, 0.01, 0.03])
    return st.just("auto")      # lbfgs ignores it


@st.composite
def configs(draw, *, solvers=SOLVERS, dtypes=DTYPES, standardized=None, early_stopping=None,
            max_iter=(1, 6), n_outputs=(1, 2), eval_set=None, sample_weight=None,
            frame=None, losses=("squared_error", "poisson")) -> Config:
    """A configuration from the whole parameter space (each keyword narrows one axis).

    ``early_stopping``, ``eval_set``, ``sample_weight``, ``frame`` and
    ``standardized`` are drawn when None, else fixed. ``max_iter`` is a range
    ``(low, high)`` or a strategy.
    """
    solver = draw(st.sampled_from(solvers))
    depth = draw(st.integers(1, 2))
    hidden = tuple(draw(st.integers(1, 5)) for _ in range(depth))
    params = dict(
        hidden_layer_sizes=hidden,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        loss=draw(st.sampled_from(losses)),
        solver=solver,
        alpha=draw(st.sampled_from([0.0, 0.0, 1e-4, 0.1, 1.0])),
        learning_rate=draw(st.sampled_from(SCHEDULES)),
        power_t=draw(st.sampled_from([0.25, 0.5, 1.0])),
        learning_rate_init=draw(_rates(solver)),
        max_iter=draw(st.integers(*max_iter) if isinstance(max_iter, tuple) else max_iter),
        tol=draw(st.sampled_from([0.0, 1e-4, 1e-2])),
        n_iter_no_change=draw(st.integers(1, 4)),
        batch_size=draw(st.sampled_from(["auto", 1, 4, 7, 1000])),
        shuffle=draw(st.booleans()),
        momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
        nesterovs_momentum=draw(st.booleans()),
        beta_1=draw(st.sampled_from([0.0, 0.9])),
        beta_2=draw(st.sampled_from([0.9, 0.999])),
        epsilon=draw(st.sampled_from([1e-8, 1e-3])),
        max_fun=draw(st.sampled_from([15000, 7])),
        early_stopping=(draw(st.booleans()) if early_stopping is None else early_stopping),
        validation_fraction=draw(st.sampled_from([0.1, 0.3, 0.5])),
        random_state=draw(st.integers(0, 2**16)),
        dtype=draw(st.sampled_from(dtypes)),
        device="cpu",
    )
    k = draw(st.integers(*n_outputs))
    return Config(
        params=params,
        standardized=draw(st.booleans()) if standardized is None else standardized,
        n_outputs=k,
        y_1d=k == 1 and draw(st.booleans()),
        sample_weight=draw(st.booleans()) if sample_weight is None else sample_weight,
        eval_set=draw(st.booleans()) if eval_set is None else eval_set,
        frame=draw(st.booleans()) if frame is None else frame,
    )


@dataclass
class Data:
    """Drawn data: ``X (n, f)``, ``y (n, k)``, row weights, and a held-out pair."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray

    def __repr__(self):
        return (f"Data(X {self.X.shape}, |X| <= {np.max(np.abs(self.X)):.3g}, y {self.y.shape}, "
                f"y in [{np.min(self.y):.3g}, {np.max(self.y):.3g}])")

    def y_for(self, config: Config, y=None):
        y = self.y if y is None else y
        return y[:, 0] if config.y_1d else y


@st.composite
def datasets(draw, config: Config | None = None, *, rows=(6, 40), features=(1, 4),
             offsets=(0.0, 1.0, -50.0, 1e3), scales=(1e-3, 1.0, 1e3)) -> Data:
    """Data for ``config``: shapes, scales, offsets, duplicated rows, constant columns.

    The target is a smooth function of the features plus noise, so fits have
    something to learn; for a Poisson loss it is a non-negative count-like
    value. Scales and offsets apply to X's columns and to y (not for Poisson).
    """
    k = config.n_outputs if config is not None else draw(st.integers(1, 2))
    poisson = config is not None and config.params["loss"] == "poisson"
    low, high = rows
    if config is not None and config.params["early_stopping"] and not config.eval_set:
        low = max(low, 20)   # early stopping holds out ceil(0.1 n) >= 2 rows
    n = draw(st.integers(low, max(low, high)))
    f = draw(st.integers(*features))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n + 8, f))
    X = Z * draw(st.sampled_from(scales)) + draw(st.sampled_from(offsets))
    if f > 1 and draw(st.booleans()):       # a constant column
        X[:, draw(st.integers(0, f - 1))] = draw(st.sampled_from([0.0, 1.0, -3.5]))
    signal = np.sin(Z[:, :1]) + 0.5 * Z[:, -1:] + 0.1 * rng.standard_normal((n + 8, k))
    if poisson:
        y = np.round(np.exp(0.5 * signal))
    else:
        y = signal * draw(st.sampled_from(scales)) + draw(st.sampled_from(offsets))
    X_val, y_val = X[n:], y[n:]
    X, y = X[:n], y[:n]
    duplicates = draw(st.integers(0, 3))     # rows repeated
    if duplicates:
        rows_again = rng.integers(0, n, size=duplicates)
        X = np.concatenate([X, X[rows_again]])
        y = np.concatenate([y, y[rows_again]])
    w = rng.uniform(0.25, 4.0, size=X.shape[0])
    return Data(X, y, w, X_val, y_val)


def build(config: Config, **overrides):
    """The estimator ``config`` describes (``overrides`` replace its parameters)."""
    net = MLPRegressor(**{**config.params, **overrides})
    return StandardizedRegressor(net) if config.standardized else net


def net_of(model):
    """The ``MLPRegressor`` inside ``model``."""
    return getattr(model, "regressor_", getattr(model, "regressor", None) or model)


def frame(X, names=None):
    """``X`` as a pandas DataFrame with string column names."""
    import pandas as pd

    names = names or [f"c{j}" for j in range(X.shape[1])]
    return pd.DataFrame(X, columns=names)


def X_for(config: Config, X):
    return frame(X) if config.frame else X


def fit_kwargs(config: Config, data: Data) -> dict:
    """``fit``'s keyword arguments for ``config``: sample weights and an eval set."""
    kwargs = {}
    if config.sample_weight:
        kwargs["sample_weight"] = data.w
    if config.eval_set:
        kwargs["eval_set"] = (X_for(config, data.X_val), data.y_for(config, data.y_val))
    return kwargs


def quietly(fn, *args, **kwargs):
    """Call ``fn`` with gpumlp's and scikit-learn's training warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def fit(config: Config, data: Data, model=None, **overrides):
    """Fit ``model`` (default: :func:`build`) on ``data`` as ``config`` says, quietly.

    A fit that diverges raises ``TrainingDivergedError``, which is its honest
    answer (drawn data need not suit a drawn rate); the draw is then
    rejected, as an event hypothesis counts, since no law speaks of it.
    """
    model = build(config, **overrides) if model is None else model
    try:
        return quietly(model.fit, X_for(config, data.X), data.y_for(config),
                       **fit_kwargs(config, data))
    except TrainingDivergedError:
        event("diverged (rejected)")
        reject()
    except ValueError as exc:
        reject_a_validation_refusal(exc)


def reject_a_validation_refusal(exc: ValueError) -> None:
    """Reject the draw if ``exc`` is early stopping's refusal of its validation rows, else
    raise it again.

    Early stopping on validation rows (a drawn eval_set or split) whose R²
    cannot rank epochs (constant targets, fewer than 2 rows by their weights)
    is refused before training: a clear refusal, of which no law speaks.
    """
    if "eval_set's y is constant" not in str(exc) and \
            "early stopping's validation split" not in str(exc):
        raise exc
    event("validation rows that cannot rank epochs (rejected)")
    reject()


def outcome(fn, *args, **kwargs) -> str:
    """``"diverged"`` if ``fn`` raised ``TrainingDivergedError``, the refusal's message
    if it refused its validation rows (see :func:`reject_a_validation_refusal`),
    else ``"done"`` (quietly).

    A law that continues training compares outcomes: the same training
    diverges at the same epoch, and a continued call that draws a split its
    early stopping cannot use refuses it, with or without a round trip.
    """
    try:
        quietly(fn, *args, **kwargs)
    except TrainingDivergedError:
        return "diverged"
    except ValueError as exc:
        if "early stopping's validation split" not in str(exc):
            raise
        return f"refused: {exc}"
    return "done"


def predicted(model, X):
    """What ``model.predict(X)`` answers: its array, or its refusal as ``(class, words)``.

    predict refuses (a ValueError) where the network's output overflows its
    dtype: a float32 model whose last steps grew the weights while the loss
    stayed finite. That refusal is its honest answer, so a law comparing two
    models compares outcomes: the same refusal on both sides (its class and
    first sentence) is agreement, as equal arrays are.
    """
    try:
        return np.asarray(model.predict(X))
    except ValueError as exc:
        words = str(exc).split(". ")[0]
        if currently_in_test_context():
            event(f"predict refuses: {words.split(':')[0]}")
        return type(exc), words


def assert_same_answer(a, b, scale=1.0):
    """Two outcomes of :func:`predicted` agree: equal arrays (``b`` = ``a * scale``), or
    the same refusal."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert isinstance(a, tuple) and isinstance(b, tuple) and a == b, (a, b)
    else:
        np.testing.assert_array_equal(b, a * scale)


def weights(model) -> list:
    """Every fitted array of ``model``: the network's weights, then any scalers."""
    net = net_of(model)
    arrays = [np.asarray(a) for a in (*net.coefs_, *net.intercepts_)]
    for name in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
        if hasattr(model, name):
            arrays.append(np.asarray(getattr(model, name)))
    return arrays


def relative_difference(a: list, b: list) -> float:
    """Normwise relative difference of two lists of arrays, as one vector each."""
    u = np.concatenate([np.ravel(np.asarray(x, dtype=np.float64)) for x in a])
    v = np.concatenate([np.ravel(np.asarray(x, dtype=np.float64)) for x in b])
    # Divided by the largest magnitude first, so that huge weights do not overflow.
    peak = max(np.max(np.abs(u), initial=0.0), np.max(np.abs(v), initial=0.0))
    if peak == 0:
        return 0.0
    u, v = u / peak, v / peak
    return float(np.linalg.norm(u - v) / max(np.linalg.norm(u), np.linalg.norm(v)))


# ------------------------------------------------------------ command line
@st.composite
def train_argv(draw, *, early_stopping=None, solvers=SOLVERS, epochs=(1, 6)) -> list:
    """``gpumlp train`` flags from the whole of its option space, sized to run fast.

    Data options (``--data``, ``--samples``, ``--out``...) are left to the caller.
    """
    solver = draw(st.sampled_from(solvers))
    argv = ["--solver", solver, "--hidden",
            ",".join(str(draw(st.integers(1, 5))) for _ in range(draw(st.integers(1, 2)))),
            "--activation", draw(st.sampled_from(ACTIVATIONS)),
            "--epochs", str(draw(st.integers(*epochs))),
            "--dtype", draw(st.sampled_from(DTYPES)),
            "--seed", str(draw(st.integers(0, 1000))),
            "--device", "cpu", "--quiet"]
    if draw(st.booleans()):
        argv += ["--alpha", repr(draw(st.sampled_from([1e-4, 0.1])))]
    lr = None
    if solver in ("gd", "sgd", "adam") and draw(st.booleans()):
        lr = draw(st.sampled_from(["auto", "0.01", "0.05"]))
        argv += ["--lr", lr]
    if solver in ("sgd", "adam") and draw(st.booleans()):
        argv += ["--batch-size", str(draw(st.sampled_from([4, 16, 1000])))]
    if solver == "sgd":
        momentum = 0.9                 # the CLI's default
        if draw(st.booleans()):
            momentum = draw(st.sampled_from([0.0, 0.5]))
            argv += ["--momentum", repr(momentum)]
        if momentum > 0 and draw(st.booleans()):   # without momentum, refused as unused
            argv += ["--no-nesterov"]
    if solver == "adam" and draw(st.booleans()):
        argv += ["--beta1", "0.8", "--beta2", "0.99", "--epsilon", "1e-6"]
    # The CLI refuses an option its run would not use (a schedule for adam, say).
    schedules = solver == "sgd" or (solver == "gd" and lr not in (None, "auto"))
    if schedules and draw(st.booleans()):
        schedule = draw(st.sampled_from(SCHEDULES))
        argv += ["--learning-rate", schedule]
        if schedule == "invscaling" and draw(st.booleans()):
            argv += ["--power-t", "0.25"]
    if solver == "lbfgs" and draw(st.booleans()):
        argv += ["--max-fun", "9"]
    if draw(st.booleans()):
        argv += ["--tol", repr(draw(st.sampled_from([0.0, 1e-4])))]
    if solver != "lbfgs" and draw(st.booleans()):   # L-BFGS has no use for it: refused
        argv += ["--n-iter-no-change", str(draw(st.integers(1, 5)))]
    if (draw(st.booleans()) if early_stopping is None else early_stopping):
        argv += ["--early-stopping"]
        if draw(st.booleans()):
            argv += ["--validation-fraction", "0.3"]
    if draw(st.booleans()):
        argv += ["--test-size", repr(draw(st.sampled_from([0.0, 0.25])))]
    if draw(st.booleans()):
        argv += ["--no-standardize"]
    return argv


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def log2_ceil(n: int) -> int:
    return max(1, math.ceil(math.log2(max(n, 2))))
