"""Model files: a portable format with no pickle, checked before use.

A model file is an ``.npz`` archive (a zip of ``.npy`` members) with no
pickled objects: the weights as plain arrays (``coef_0``, ``intercept_0``,
...), the scalers of a :class:`~gpumlp.scaling.StandardizedRegressor` when
there are any (``x_mean``, ``x_scale``, ``y_mean``, ``y_scale``), and one
string array, ``metadata``, holding JSON: the format and gpumlp versions, the
kind of model, the layer sizes, the activation, the dtype, the device it was
trained on, the estimator's parameters (plain JSON values only), the training
history and the feature and target names.

A file may also carry what an exact resume needs (``training`` in the
metadata): the solver's state as members ``state_<name>`` (Adam's moments
``state_first_0``, ..., SGD's velocities ``state_0``, ...) described by
:func:`gpumlp.solvers.state_to_arrays`, the batch-order generator's state and
the stopping rule's bookkeeping. A file without it loads as before; its
``partial_fit`` starts a new solver state.

A file is untrusted input, read the way safetensors reads one: the metadata
first, checked against the schema (:func:`_check_metadata`); then only the
members that metadata names, each one's ``.npy`` header checked (dtype,
shape, and a size that matches what the metadata implies) before its data is
read; then the values (finite; positive scales); then the training state
(shapes those of the weights, at most :data:`_MAX_STATE_COPIES` copies of
them, the structure the solver keeps, a valid generator state). Other members are never
decompressed, object arrays are refused and never unpickled, and anything
wrong is a :class:`ModelFileError` that names the problem.

Files are written through a temporary file and a rename (:mod:`gpumlp._atomic`),
so a crash never leaves half a model where a good one was. Weights are stored
as host arrays: a model trained on a GPU loads and predicts on a CPU, and the
reverse.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import numbers
import os
import re
import stat
import struct
import tokenize
import warnings
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from ._atomic import atomic_path, write_text_atomic  # noqa: F401 (re-exported)
from ._fitrecord import MAX_CHECKPOINTS, RECORD_VERSION, generator_from_state, model_digest
from .activations import NAMES as ACTIVATIONS
from .devices import Device, to_numpy
from .losses import LOSSES

if TYPE_CHECKING:
    from .estimator import MLPRegressor
    from .scaling import StandardizedRegressor

__all__ = ["FORMAT_VERSION", "ModelFileError", "load", "load_with_metadata",
           "read_metadata", "save"]

#: The model-file format this version writes, and the newest it reads.
FORMAT_VERSION = 1
_MAGIC = "gpumlp-model"
_KINDS = ("MLPRegressor", "StandardizedRegressor")
_SCALERS = ("x_mean", "x_scale", "y_mean", "y_scale")
_DTYPES = ("float32", "float64")
#: The metadata member's largest size: a loss curve of a million epochs fits.
_MAX_METADATA_BYTES = 256 * 2**20
#: numpy's own bound on an ``.npy`` header.
_MAX_HEADER_BYTES = 10_000
#: What a damaged zip can raise from inside zipfile and its decompressors.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               NotImplementedError, RuntimeError, struct.error, ValueError, OverflowError)
#: A solver state holds at most this many copies of the weights (Adam: 2).
_MAX_STATE_COPIES = 64
_STATE_NAME = re.compile(r"[A-Za-z0-9_]{1,200}")
_REMEDY = "save the model again with gpumlp.save or gpumlp train --out"


class ModelFileError(ValueError):
    """A model file that cannot be used: damaged, foreign, tampered with, or from a newer gpumlp."""


# ---------------------------------------------------------------- writing
def _plain(name: str, value: Any) -> Any:
    """``value`` as plain JSON (dict, list, str, int, float, bool, None); never a repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Device):
        return str(value)
    if name == "dtype":
        from ._checks import check_dtype

        return check_dtype(value)
    if isinstance(value, np.random.Generator):
        return {"numpy_generator": _plain(name, value.bit_generator.state)}
    if isinstance(value, np.random.RandomState):
        return {"numpy_random_state": _plain(name, value.get_state(legacy=False))}
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray):
        return [_plain(name, v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(name, v) for k, v in value.items()}
    raise TypeError(f"Cannot save {name}={value!r}: a model file holds only numbers, "
                    f"strings, lists, NumPy random generators and devices.")


def save(model: MLPRegressor | StandardizedRegressor, path: str | os.PathLike, *,
         feature_names: list[str] | None = None, target_names: list[str] | None = None,
         extra: dict | None = None, training_state: bool = True,
         columns: list | None = None) -> None:
    """Save a fitted model to ``path`` (an ``.npz`` file), atomically.

    Parameters
    ----------
    model : MLPRegressor or StandardizedRegressor
        Fitted.
    path : str or path-like
        Written as given (no extension is added), with the mode a new file
        gets from the umask (or the mode of the file it replaces).
    feature_names, target_names : list of str, optional
        Stored for prediction from CSV files.
    extra : dict, optional
        More metadata of plain values (for example the CLI's settings).
    columns : list of (str, list of str or None), optional
        The training CSV's feature columns, each with its levels when it was
        text encoded one-hot (:attr:`gpumlp.data.Table.columns`); needs
        ``feature_names``, which must be their expansion
        (:func:`gpumlp.data.encoded_names`).
    training_state : bool, default=True
        Also store what an exact resume needs: the solver's state (momenta,
        Adam's moments and step), the batch-order generator's state and the
        stopping rule's bookkeeping, so that ``partial_fit`` after
        :func:`load` continues as the saved model's ``partial_fit`` would.
        It is left out, whatever this says, when the model has none (never
        fitted by gpumlp) or when it no longer fits the weights (weights
        assigned by hand; a ``UserWarning`` says so).

    Notes
    -----
    The estimator's parameters are stored as plain JSON, so that a loaded
    model can be fitted again: ``hidden_layer_sizes`` as a list of ints
    (an int ``16`` becomes ``[16]``), NumPy scalars as numbers, ``dtype`` as
    its name, a ``device`` as its string, and a NumPy ``Generator`` (or
    ``RandomState``) ``random_state`` as its bit generator's state at the
    time of saving, so a loaded model's next ``fit`` draws what the saved
    model's next ``fit`` would have drawn.
    """
    from ._version import __version__
    from .estimator import MLPRegressor
    from .scaling import StandardizedRegressor

    if not isinstance(training_state, (bool, np.bool_)):
        raise TypeError(f"training_state must be True or False, got {training_state!r}.")
    if extra is not None and not all(isinstance(key, str) for key in extra):
        # JSON keys are strings: {1: 2} would read back as {"1": 2}, another dict.
        raise TypeError(f"extra's keys must be strings (JSON's), got "
                        f"{sorted(repr(k) for k in extra if not isinstance(k, str))}.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save writes to a file path (str or os.PathLike), not a "
                        f"{type(path).__name__}: it replaces the file atomically, which an "
                        f"open file object cannot do. Pass the file's name.")
    scalers = {}
    if isinstance(model, StandardizedRegressor):
        if not hasattr(model, "regressor_"):
            raise ValueError("Only a fitted model can be saved; call fit first.")
        scalers = {name: to_numpy(getattr(model, name + "_")) for name in _SCALERS}
        net = model.regressor_
    elif isinstance(model, MLPRegressor):
        net = model
    else:
        raise TypeError(f"save takes an MLPRegressor or StandardizedRegressor, "
                        f"got {type(model).__name__}.")
    if not hasattr(net, "coefs_"):
        raise ValueError("Only a fitted model can be saved; call fit first.")
    coefs = [to_numpy(W) for W in net.coefs_]
    intercepts = [to_numpy(b) for b in net.intercepts_]
    labels = getattr(net, "_file_labels", None)
    if labels is not None and labels["weights"] == model_digest(coefs, intercepts):
        # A loaded model not trained since: what its file said of its data
        # (names, encoded columns, the CLI's settings) is written again, unless
        # given anew, so that save(load(f)) is f's model, predicting from the
        # same CSV and certifying as f did.
        feature_names = labels["feature_names"] if feature_names is None else feature_names
        target_names = labels["target_names"] if target_names is None else target_names
        columns = labels["columns"] if columns is None else columns
        extra = labels["extra"] if extra is None else extra
    feature_names = _check_names("feature_names", feature_names, coefs[0].shape[0], "input")
    seen = getattr(model, "feature_names_in_", None)
    if feature_names is not None and seen is not None and \
            [str(n) for n in feature_names] != [str(n) for n in seen]:
        # `gpumlp predict` picks a CSV's columns by these names: others than
        # the frame's would feed each input another column.
        raise ValueError(
            f"feature_names {list(feature_names)} are not the columns the model was fit on, "
            f"in their order (feature_names_in_: {[str(n) for n in seen]}); leave "
            f"feature_names out (the frame's names are kept) or pass those.")
    target_names = _check_names("target_names", target_names, coefs[-1].shape[1], "output")
    validation_curve = getattr(net, "validation_loss_curve_", None)
    metadata = {
        "format": _MAGIC,
        "format_version": FORMAT_VERSION,
        "gpumlp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kind": type(model).__name__,
        "layer_sizes": [int(coefs[0].shape[0])] + [int(W.shape[1]) for W in coefs],
        "activation": net.activation,
        "out_activation": getattr(net, "out_activation_", "identity"),
        "dtype": str(coefs[0].dtype),
        # A loaded model has no device_ until it trains again: its file's word stays.
        "trained_on": str(getattr(net, "device_", None) or getattr(net, "_trained_on", "")),
        "params": {k: _plain(k, v) for k, v in net.get_params().items()},
        "y_1d": bool(getattr(net, "_y_was_1d", False)),
        "n_iter": int(getattr(net, "n_iter_", 0)),
        "loss_curve": [float(v) for v in getattr(net, "loss_curve_", [])],
        # loss_: for L-BFGS and "auto" the loss at these weights, not the curve's last.
        "loss": _finite_or_none(getattr(net, "loss_", None)),
        "learning_rate": getattr(net, "learning_rate_", None),
        "learning_rates": [float(v) for v in getattr(net, "learning_rates_", [])],
        "validation_loss_curve": None if validation_curve is None else [
            float(v) for v in validation_curve],
        "feature_names": None if feature_names is None else [str(n) for n in feature_names],
        # The names a dataframe gave fit (scikit-learn's feature_names_in_).
        "feature_names_in": (None if getattr(model, "feature_names_in_", None) is None
                             else [str(n) for n in model.feature_names_in_]),
        "target_names": None if target_names is None else [str(n) for n in target_names],
        "columns": None if columns is None else [
            {"name": str(name), "levels": None if levels is None else [str(v) for v in levels]}
            for name, levels in columns],
        "extra": {str(k): _plain(str(k), v) for k, v in (extra or {}).items()},
    }
    if getattr(model, "alpha_search_", None) is not None:   # how alpha was chosen
        metadata["alpha_search"] = model.alpha_search_
    if isinstance(model, StandardizedRegressor) and model.regressor is not None:
        # The template, which the next fit reads (set_params(regressor__...) since
        # this one's, say): a loaded model fits on as the saved one would.
        metadata["template"] = {k: _plain(k, v)
                                for k, v in model.regressor.get_params().items()}
    training = _training_metadata(net, coefs, intercepts) if training_state else None
    if training is not None:
        metadata["training"], state_arrays = training
    arrays = {f"coef_{i}": W for i, W in enumerate(coefs)}
    arrays.update({f"intercept_{i}": b for i, b in enumerate(intercepts)})
    arrays.update(scalers)
    if training is not None:
        arrays.update({f"state_{name}": a for name, a in state_arrays.items()})
    record = getattr(net, "_fit_record", None)
    if record is not None and record.get("version") == RECORD_VERSION:
        metadata["fit_record"], record_arrays = _record_metadata(record)
        arrays.update(record_arrays)
    for name, array in arrays.items():   # load refuses them: never write such a file
        if not np.all(np.isfinite(array)):
            state = name.startswith("state_")
            raise ValueError(
                f"Cannot save to {os.fspath(path)}: "
                f"{'the solver state' if state else 'the model'} holds NaN or infinite "
                f"values (member {name!r}), and load refuses such a file. "
                + ("The weights are finite: save them with training_state=False (a resume "
                   "then starts a new solver)." if state else "Refit the model."))
    arrays["metadata"] = np.array(json.dumps(metadata))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        # Read back before it replaces anything: a file load would refuse
        # (columns that are not the feature names' expansion, parameters
        # changed by set_params since fit) is never written.
        try:
            load_with_metadata(tmp)
        except ModelFileError as exc:
            problem = str(exc).split("damaged or tampered model file: ", 1)[-1]
            problem = problem.split(f"; {_REMEDY}", 1)[0]
            hint = (" A parameter was changed with set_params since fit (one that must fit "
                    "the weights): set it back or fit again." if "parameter" in problem else "")
            raise ValueError(f"Cannot save to {os.fspath(path)}: the file would not load back "
                             f"({problem}); nothing was written.{hint}") from None


#: The plain (JSON) keys of a fit record (version 2), with their types.
_RECORD_KEYS = {"version": int, "start": dict, "device": str, "fastpath": bool,
                "eval_set": bool, "incremental": bool, "n_samples": int, "n_iter": int,
                "data_sha256": (str, type(None)), "accepted": (list, type(None)),
                "improved": (list, type(None)), "monotone": (list, type(None)),
                "steps": (list, type(None)), "retried": (list, type(None)),
                "checkpoints": list}
#: Keys a version-2 record written before they existed lacks (the certificate then
#: replays those decisions by the rule instead of imposing them).
_RECORD_KEYS_LATER = {"kept": (list, type(None)), "evaluations": (list, type(None)),
                      "continued": (bool, type(None)), "y_1d": bool, "params": dict,
                      "computation": (dict, type(None))}
#: A version-1 record (gpumlp before checkpoints): it loads, and cannot be certified.
_RECORD_KEYS_1 = {"version": int, "rng_state": dict, "device": str, "fastpath": bool,
                  "eval_set": bool, "n_samples": int, "n_iter": int,
                  "data_sha256": (str, type(None))}
_CHECKPOINT_KEYS = {"epoch", "state", "state_arrays", "rng", "history", "best"}
_CHECKPOINT_HISTORY = {"best_loss", "best_validation_score", "no_improvement_count",
                       "samples_seen"}


def _checkpoint_layout(sizes: list, checkpoint: dict) -> list[tuple[str, tuple]]:
    """``(name, shape)`` of each array a checkpoint's member holds, in order.

    A checkpoint is one flat member, ``ckpt_<j>``: the weights, early
    stopping's best weights when there are any, then the solver state's arrays.
    """
    shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])] + [(b,) for b in sizes[1:]]
    n = len(sizes) - 1
    names = [f"coef_{i}" for i in range(n)] + [f"intercept_{i}" for i in range(n)]
    layout = list(zip(names, shapes))
    if checkpoint["best"]:
        layout += [(f"best_{i}", shape) for i, shape in enumerate(shapes)]
    layout += [(f"state_{name}", tuple(shape))
               for name, shape in checkpoint["state_arrays"].items()]
    return layout


def _record_metadata(record: dict) -> tuple[dict, dict]:
    """A fit record as plain JSON and the members it names (see :mod:`gpumlp._fitrecord`)."""
    plain = {key: _plain(key, record[key]) for key in [*_RECORD_KEYS, *_RECORD_KEYS_LATER]
             if key not in ("checkpoints", "params") and key in record}
    if "params" in record:     # the parameters the fit ran with, each as the file's own
        plain["params"] = {name: _plain(name, value) for name, value in record["params"].items()}
    checkpoints, arrays = [], {}
    for j, c in enumerate(record["checkpoints"]):
        parts = [*c["coefs"], *c["intercepts"], *(c["best"] or ()),
                 *c["state_arrays"].values()]
        dtype = np.asarray(c["coefs"][0]).dtype
        arrays[f"ckpt_{j}"] = np.concatenate([np.asarray(a, dtype=dtype).ravel()
                                              for a in parts])
        checkpoints.append({
            "epoch": int(c["epoch"]), "state": c["state"],
            "state_arrays": {name: list(np.shape(a)) for name, a in c["state_arrays"].items()},
            "rng": _plain("rng", c["rng"]),
            "history": {k: _plain(k, v) for k, v in c["history"].items()},
            "best": c["best"] is not None})
    plain["checkpoints"] = checkpoints
    return plain, arrays


def _check_state_shapes(path, shapes: dict, allowed: set, n_weights: int, array: str,
                        state: str) -> None:
    """Refuse state arrays with odd names, shapes that are no weight's, or too many values.

    ``shapes`` maps each array's name to its shape as the file lists it;
    ``array`` and ``state`` name them in the message ("training state array",
    "its training state").
    """
    total = 0
    for name, shape in shapes.items():
        if not _STATE_NAME.fullmatch(name):
            raise _damaged(path, f"{array} name {name!r:.80} is not a plain name")
        if not isinstance(shape, list) or not all(_is_int(n) for n in shape) \
                or tuple(shape) not in allowed:
            raise _damaged(path, f"{array} {name!r} has shape {shape!r:.80}, "
                                 f"which is not the shape of a weight")
        total += math.prod(shape)
    if total > _MAX_STATE_COPIES * n_weights:
        raise _damaged(path, f"{state} holds {total} values, more than "
                             f"{_MAX_STATE_COPIES} copies of the {n_weights} weights")


def _check_names(key: str, names, expected: int, what: str) -> list[str] | None:
    """``names`` as a list of strings, one per input (or output), all different.

    A file that broke this would be refused by :func:`load` (a count) or,
    worse, read the same column for two inputs (duplicates): refused at save.
    """
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"{key} must be a list of strings, got the string {names!r}.")
    names = [str(n) for n in names]
    if len(names) != expected:
        raise ValueError(f"{key} has {len(names)} name(s), but the model has {expected} "
                         f"{what}(s); pass one name per {what}.")
    duplicate = _first_duplicate(names)
    if duplicate is not None:
        raise ValueError(f"{key} names {duplicate!r} more than once; each {what} needs "
                         f"its own name.")
    return names


def _first_duplicate(names):
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _training_metadata(net: MLPRegressor, coefs: list, intercepts: list):
    """``(metadata["training"], state arrays on the host)``, or None when there is none to save."""
    from .solvers import plain_numbers, state_from_arrays, state_to_arrays

    training = net._training_state()
    if training is None:
        return None
    try:  # what load will check: a state that no longer fits the weights is dropped
        solver = _solver_for(net, training["solver"])
        # A solver that is not resumable (L-BFGS) keeps no state: None.
        template = solver.init_state(coefs + intercepts) if solver.resumable else None
        # A compiled step's rate or step count is a 0-d array: kept as its number.
        state = plain_numbers(training["state"], template)
        state_arrays, description = state_to_arrays(state)
        state_arrays = {name: to_numpy(a) for name, a in state_arrays.items()}
        state_from_arrays(description, state_arrays, template)
    except (TypeError, ValueError) as exc:
        # Never in silence: a partial_fit or resume of the file starts a new state.
        warnings.warn(f"The model's training state no longer fits its weights ({exc}; "
                      f"weights assigned by hand, say): it is saved without it, so a "
                      f"partial_fit or train --resume of the file starts a new solver "
                      f"state.", UserWarning, stacklevel=3)
        return None
    history = training["history"]
    last = training.get("last_params")
    if last is not None:   # early stopping's last weights, where a resume goes on from
        n_coefs = len(coefs)
        state_arrays = dict(state_arrays)
        extra_arrays = {(f"last_coef_{i}" if i < n_coefs else f"last_intercept_{i - n_coefs}"):
                        to_numpy(a) for i, a in enumerate(last)}
    metadata = {
        "solver": training["solver"],
        "state": description,
        "arrays": {name: list(a.shape) for name, a in state_arrays.items()},
        "rng": {"numpy_generator": _plain("rng", training["rng"])},
        "history": {
            "best_loss": _finite_or_none(history["best_loss"]),
            "best_validation_score": _finite_or_none(history["best_validation_score"]),
            "no_improvement_count": int(history["no_improvement_count"]),
            "samples_seen": int(history["samples_seen"]),
            "validation_losses": [float(v) for v in history["validation_losses"]],
            "validation_scores": [float(v) for v in history["validation_scores"]],
        },
    }
    if training.get("split") is not None:
        metadata["split"] = {"numpy_generator": _plain("rng", training["split"])}
    if last is not None:
        metadata["last_params"] = True
        state_arrays.update(extra_arrays)
    return metadata, state_arrays


# ---------------------------------------------------------------- reading
def _damaged(path: str, problem: str) -> ModelFileError:
    return ModelFileError(f"{path}: damaged or tampered model file: {problem}; {_REMEDY}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_alpha_search(path: str, metadata: dict) -> None:
    """A StandardizedRegressor's record of its choice of alpha (gpumlp.selection)."""
    search = metadata["alpha_search"]
    alphas = search.get("alphas")
    if metadata["kind"] != "StandardizedRegressor":
        raise _damaged(path, f"it holds an alpha_search but its kind is {metadata['kind']}")
    if not (isinstance(alphas, list) and alphas
            and all(_is_number(a) and 0 <= a < math.inf for a in alphas)):
        raise _damaged(path, f"alpha_search's alphas {alphas!r} are not a list of "
                             f"finite numbers >= 0")
    if search.get("alpha") not in alphas or \
            search["alpha"] != metadata["params"].get("alpha"):
        raise _damaged(path, f"alpha_search chose alpha {search.get('alpha')!r}, which is "
                             f"not among its alphas or not the model's alpha "
                             f"{metadata['params'].get('alpha')!r}")
    scores = search.get("scores")
    if not (isinstance(scores, list) and len(scores) == len(alphas)
            and all(isinstance(s, list) and all(v is None or _is_number(v) for v in s)
                    for s in scores)):
        raise _damaged(path, "alpha_search's scores are not one list of numbers per alpha")


def _check_metadata(path: str, metadata: Any) -> None:
    """Check the metadata against the schema; raise ModelFileError naming the first problem."""
    if not isinstance(metadata, dict) or metadata.get("format") != _MAGIC:
        raise ModelFileError(f"{path}: not a gpumlp model file (its metadata does not say "
                             f"format {_MAGIC!r}); pass a file written by gpumlp.save or "
                             f"gpumlp train --out.")
    version = metadata.get("format_version")
    if not _is_int(version) or version < 1:
        raise _damaged(path, f"format_version is {version!r}, not a positive int")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {version} is newer than this gpumlp reads "
            f"(up to {FORMAT_VERSION}); upgrade gpumlp (pip install -U gpumlp).")
    required = {"kind": str, "layer_sizes": list, "activation": str, "dtype": str,
                "params": dict}
    optional = {"gpumlp_version": str, "created": str, "out_activation": str,
                "trained_on": str, "y_1d": bool, "n_iter": int, "loss_curve": list,
                "loss": (int, float, type(None)),
                "learning_rate": (int, float, type(None)), "learning_rates": list,
                "validation_loss_curve": (list, type(None)),
                "feature_names": (list, type(None)), "target_names": (list, type(None)),
                "feature_names_in": (list, type(None)), "columns": (list, type(None)),
                "extra": dict, "fit_record": dict, "alpha_search": dict, "template": dict}
    for key in required:
        if key not in metadata:
            raise _damaged(path, f"metadata lacks {key!r}")
    for key, kind in {**required, **optional}.items():
        if key in metadata and (not isinstance(metadata[key], kind)
                                or (kind is int and isinstance(metadata[key], bool))):
            raise _damaged(path, f"metadata {key!r} is {metadata[key]!r}, of the wrong type")
    if metadata["kind"] not in _KINDS:
        raise _damaged(path, f"kind {metadata['kind']!r} is not one of {', '.join(_KINDS)}")
    sizes = metadata["layer_sizes"]
    if len(sizes) < 2 or not all(_is_int(n) and n >= 1 for n in sizes):
        raise _damaged(path, f"layer_sizes {sizes!r} is not a list of at least two "
                             f"positive ints")
    if metadata["activation"] not in ACTIVATIONS:
        raise _damaged(path, f"activation {metadata['activation']!r} is not one of "
                             f"{', '.join(ACTIVATIONS)}")
    loss = metadata["params"].get("loss", "squared_error") \
        if isinstance(metadata.get("params"), dict) else None
    expected = LOSSES[loss].out_activation if isinstance(loss, str) and loss in LOSSES \
        else "identity"
    if metadata.get("out_activation", expected) != expected:
        raise _damaged(path, f"out_activation {metadata['out_activation']!r} is not "
                             f"{expected!r}, the output of its loss")
    if metadata["dtype"] not in _DTYPES:
        raise _damaged(path, f"dtype {metadata['dtype']!r} is not float32 or float64")
    if "alpha_search" in metadata:
        _check_alpha_search(path, metadata)
    if metadata.get("y_1d") and sizes[-1] != 1:
        raise _damaged(path, f"y_1d is true but the model has {sizes[-1]} outputs")
    if metadata.get("n_iter", 0) < 0:
        raise _damaged(path, f"n_iter {metadata['n_iter']!r} is negative")
    rate = metadata.get("learning_rate")
    # 0.0 is the "invscaling" rate once (t + 1) ** power_t is beyond a float.
    if rate is not None and not (_is_number(rate) and 0 <= rate < math.inf):
        raise _damaged(path, f"learning_rate {rate!r} is not a finite number >= 0")
    loss = metadata.get("loss")
    if loss is not None and not (_is_number(loss) and math.isfinite(loss)):
        raise _damaged(path, f"loss {loss!r} is not a finite number")
    for key in ("loss_curve", "validation_loss_curve", "learning_rates"):
        if not all(_is_number(v) for v in metadata.get(key) or ()):
            raise _damaged(path, f"{key} holds something other than numbers")
    for key in ("feature_names", "target_names", "feature_names_in"):
        if not all(isinstance(v, str) for v in metadata.get(key) or ()):
            raise _damaged(path, f"{key} holds something other than strings")
    for key in ("feature_names", "feature_names_in"):
        names = metadata.get(key)
        if names is not None and len(names) != sizes[0]:
            raise _damaged(path, f"{len(names)} {key} for {sizes[0]} input(s)")
    names = metadata.get("target_names")
    if names is not None and len(names) != sizes[-1]:
        raise _damaged(path, f"{len(names)} target_names for {sizes[-1]} output(s)")
    for key in ("feature_names", "target_names"):
        duplicate = _first_duplicate(metadata.get(key) or ())
        if duplicate is not None:
            # Reading columns by these names would feed one column to two inputs.
            raise _damaged(path, f"{key} names {duplicate!r} more than once")
    if metadata.get("columns") is not None:
        _check_columns(path, metadata["columns"], metadata.get("feature_names"), sizes[0])
    if "training" in metadata:
        _check_training(path, metadata["training"], sizes)
    if "fit_record" in metadata:
        _check_fit_record(path, metadata)


def _check_columns(path: str, columns: list, feature_names: Any, n_inputs: int) -> None:
    """``metadata["columns"]``: named columns, text ones with unique levels, that expand
    (one feature per level) to exactly ``feature_names``."""
    from .data import MAX_LEVELS, encoded_names

    pairs = []
    for column in columns:
        if not (isinstance(column, dict) and set(column) == {"name", "levels"}
                and isinstance(column["name"], str) and column["name"]):
            raise _damaged(path, f"columns holds {column!r:.80}, not a named column")
        levels = column["levels"]
        if levels is not None and not (
                isinstance(levels, list) and 1 <= len(levels) <= MAX_LEVELS
                and all(isinstance(v, str) for v in levels) and len(set(levels)) == len(levels)):
            raise _damaged(path, f"column {column['name']!r:.40} has levels {levels!r:.80}, "
                                 f"not 1 to {MAX_LEVELS} distinct strings")
        pairs.append((column["name"], levels))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _damaged(path, "columns names a column twice")
    if feature_names is None or encoded_names(pairs) != feature_names:
        raise _damaged(path, f"columns do not expand to the feature_names of its "
                             f"{n_inputs} input(s)")


def _check_training(path: str, training: Any, sizes: list[int]) -> None:
    """Check ``metadata["training"]``'s schema; its arrays' shapes must be the weights'."""
    from .solvers import SOLVERS

    kinds = {"solver": str, "state": dict, "arrays": dict, "rng": dict, "history": dict}
    # Early stopping's: the split's generator, and whether the last weights are kept.
    optional = {"split": dict, "last_params": bool}
    if not isinstance(training, dict) or not set(kinds) <= set(training) <= {*kinds, *optional}:
        raise _damaged(path, f"its training state has the keys "
                             f"{sorted(training) if isinstance(training, dict) else training!r:.80}"
                             f", not {sorted(kinds)} (and maybe {sorted(optional)})")
    for key, kind in {**kinds, **optional}.items():
        if key in training and not isinstance(training[key], kind):
            raise _damaged(path, f"training {key!r} is {training[key]!r:.80}, of the wrong type")
    if training["solver"] not in SOLVERS:
        raise _damaged(path, f"training solver {training['solver']!r:.40} is not one of "
                             f"{', '.join(SOLVERS)}")
    weight_shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])] + [(b,) for b in sizes[1:]]
    n_weights = sum(math.prod(shape) for shape in weight_shapes)
    allowed = {*weight_shapes, (n_weights,), ()}
    _check_state_shapes(path, training["arrays"], allowed, n_weights,
                        "training state array", "its training state")
    history = training["history"]
    counts = ("no_improvement_count", "samples_seen")
    numbers_or_none = ("best_loss", "best_validation_score")
    curves = ("validation_losses", "validation_scores")
    if set(history) != {*counts, *numbers_or_none, *curves}:
        raise _damaged(path, f"its training history has the keys {sorted(history)!r:.200}")
    if not all(_is_int(history[key]) and history[key] >= 0 for key in counts) or not all(
            history[key] is None or _is_number(history[key]) for key in numbers_or_none) \
            or not all(isinstance(history[key], list)
                       and all(_is_number(v) for v in history[key]) for key in curves):
        raise _damaged(path, "its training history holds a value of the wrong kind")


def _check_fit_record(path: str, metadata: dict) -> None:
    """The fit record's keys, types and values, as strictly as the rest of the schema."""
    record = metadata["fit_record"]
    version = record.get("version") if isinstance(record, dict) else None
    keys = _RECORD_KEYS_1 if version == 1 else _RECORD_KEYS
    later = {} if version == 1 else _RECORD_KEYS_LATER
    if not set(keys) <= set(record) <= set(keys) | set(later):
        raise _damaged(path, f"fit_record has the keys {sorted(record)}, not "
                             f"{sorted(keys)}" + (f" and some of {sorted(later)}" if later
                                                   else ""))
    for key, kind in {**keys, **later}.items():
        if key not in record:
            continue
        value = record[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _damaged(path, f"fit_record {key!r} is {value!r:.80}, of the wrong type")
    if "params" in record:
        from .estimator import MLPRegressor

        unknown = sorted(set(record["params"]) - set(MLPRegressor().get_params()))
        if unknown:
            raise _damaged(path, f"fit_record params name unknown parameter(s) "
                                 f"{', '.join(unknown)[:200]}")
    if record["version"] not in (1, RECORD_VERSION):
        raise _damaged(path, f"fit_record version {record['version']!r} is not "
                             f"{RECORD_VERSION}")
    if record["n_samples"] < 1 or record["n_iter"] < 0:
        raise _damaged(path, f"fit_record n_samples {record['n_samples']} or n_iter "
                             f"{record['n_iter']} is out of range")
    if "n_iter" in metadata and record["n_iter"] != metadata["n_iter"]:
        raise _damaged(path, f"fit_record n_iter {record['n_iter']} differs from the "
                             f"model's {metadata['n_iter']}")
    digest = record["data_sha256"]
    if digest is not None and not re.fullmatch(r"(blake3:)?[0-9a-f]{64}", digest):
        raise _damaged(path, "fit_record data_sha256 is not a SHA-256 or blake3: hex digest")
    if not re.fullmatch(r"[A-Za-z0-9_.:()' -]{1,200}", record["device"]):
        raise _damaged(path, f"fit_record device {record['device']!r} is not a device name")
    if version == 1:
        _check_generator(path, "fit_record rng_state", record["rng_state"])
        return
    _check_start(path, record["start"])
    n_iter = record["n_iter"]
    for key, kind in (("accepted", bool), ("improved", bool), ("monotone", bool),
                      ("retried", bool), ("steps", (int, float)), ("kept", bool),
                      ("evaluations", int)):
        values = record.get(key)
        if values is not None and (len(values) != n_iter or not all(
                isinstance(v, kind) and (kind is bool or not isinstance(v, bool))
                for v in values)):
            raise _damaged(path, f"fit_record {key} is not {n_iter} values of its kind")
    if any(n < 0 for n in record.get("evaluations") or ()):
        raise _damaged(path, "fit_record evaluations holds a negative count")
    checkpoints = record["checkpoints"]
    if not 1 <= len(checkpoints) <= MAX_CHECKPOINTS + 2:
        raise _damaged(path, f"fit_record holds {len(checkpoints)} checkpoints, not 1 to "
                             f"{MAX_CHECKPOINTS + 2}")
    sizes = metadata["layer_sizes"]
    weight_shapes = [(a, b) for a, b in zip(sizes[:-1], sizes[1:])] + [(b,) for b in sizes[1:]]
    n_weights = sum(math.prod(shape) for shape in weight_shapes)
    allowed = {*weight_shapes, (n_weights,), ()}
    epochs = []
    for c in checkpoints:
        if not isinstance(c, dict) or set(c) != _CHECKPOINT_KEYS:
            raise _damaged(path, f"a fit_record checkpoint has the keys "
                                 f"{sorted(c) if isinstance(c, dict) else c!r:.80}")
        if not _is_int(c["epoch"]) or not isinstance(c["state"], dict) \
                or not isinstance(c["state_arrays"], dict) or not isinstance(c["best"], bool) \
                or not isinstance(c["history"], dict):
            raise _damaged(path, "a fit_record checkpoint holds a value of the wrong type")
        epochs.append(c["epoch"])
        _check_state_shapes(path, c["state_arrays"], allowed, n_weights,
                            "a checkpoint's state array", "a checkpoint's state")
        history = c["history"]
        if set(history) != _CHECKPOINT_HISTORY or not all(
                _is_int(history[k]) and history[k] >= 0
                for k in ("no_improvement_count", "samples_seen")) or not all(
                history[k] is None or _is_number(history[k])
                for k in ("best_loss", "best_validation_score")):
            raise _damaged(path, "a checkpoint's history holds a value of the wrong kind")
        _check_generator(path, "a checkpoint's rng", c["rng"])
    if epochs[0] != 0 or any(b <= a for a, b in zip(epochs, epochs[1:])) \
            or epochs[-1] != n_iter:
        raise _damaged(path, f"fit_record checkpoints at epochs {epochs!r:.200} do not run "
                             f"from 0 up to n_iter {n_iter}")


def _check_start(path: str, start: Any) -> None:
    """A record's ``start``: a seed that can be drawn again, or a parent's digest."""
    kind = start.get("kind")
    if kind == "parent" and set(start) == {"kind", "parent"} \
            and isinstance(start["parent"], str) \
            and re.fullmatch(r"[0-9a-f]{64}", start["parent"]):
        return
    seed = start.get("seed")
    if kind != "seed" or set(start) != {"kind", "seed"} or not isinstance(seed, dict):
        raise _damaged(path, f"fit_record start {start!r:.120} is neither a seed nor a parent")
    if seed.get("kind") == "int" and set(seed) == {"kind", "value"} and _is_int(seed["value"]):
        return
    if seed.get("kind") == "entropy" and set(seed) == {"kind", "value"} \
            and isinstance(seed["value"], str) and re.fullmatch(r"[0-9]{1,80}", seed["value"]):
        return
    if seed.get("kind") == "generator" and set(seed) == {"kind", "state"}:
        _check_generator(path, "fit_record start seed", {"numpy_generator": seed["state"]})
        return
    raise _damaged(path, f"fit_record start seed {seed!r:.120} is not a seed")


def _check_generator(path: str, what: str, state: Any) -> None:
    try:
        if not isinstance(state, dict) or list(state) != ["numpy_generator"]:
            raise ValueError("not a numpy_generator state")
        generator_from_state(state["numpy_generator"])
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise _damaged(path, f"{what} is not a generator state ({exc})") from None


def _member_header(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                   max_data_bytes: int):
    """Open member ``name`` and read its ``.npy`` header, bounded by ``max_data_bytes``.

    Returns the open stream, positioned at the data, and the header's
    ``(shape, fortran_order, dtype)``.
    """
    if info.file_size > max_data_bytes + _MAX_HEADER_BYTES:
        raise _damaged(path, f"member {name!r} holds {info.file_size} bytes, more than "
                             f"the {max_data_bytes} its metadata allows")
    stream = archive.open(info)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream, _MAX_HEADER_BYTES)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(stream, _MAX_HEADER_BYTES)
        else:
            raise _damaged(path, f"member {name!r} has .npy format version {version}")
    except (SyntaxError, tokenize.TokenError) as exc:
        # NumPy parses a damaged header's text as Python and may fail so.
        stream.close()
        raise _damaged(path, f"member {name!r} has a damaged .npy header "
                             f"({type(exc).__name__})") from None
    except BaseException:
        stream.close()
        raise
    if header[2].hasobject:
        stream.close()
        raise ModelFileError(
            f"{path}: refused to load, because member {name!r} holds pickled objects "
            f"(dtype {header[2]}); gpumlp model files never do, so this one was not "
            f"written by gpumlp or was tampered with. Nothing was unpickled.")
    return stream, header


def _read_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                 dtypes: tuple[str, ...], shape: tuple[int, ...] | None,
                 max_data_bytes: int) -> np.ndarray:
    """One member's array, after its header is checked against ``dtypes`` and ``shape``."""
    stream, (found_shape, fortran_order, dtype) = _member_header(
        path, archive, info, name, max_data_bytes)
    with stream:
        if dtype.name not in dtypes or dtype != np.dtype(dtype.name):
            raise _damaged(path, f"member {name!r} has dtype {dtype.str}, not "
                                 f"{' or '.join(dtypes)}")
        if shape is not None and tuple(found_shape) != shape:
            raise _damaged(path, f"member {name!r} has shape {tuple(found_shape)}, where "
                                 f"layer_sizes implies {shape}")
        n_bytes = math.prod(found_shape) * dtype.itemsize
        if info.file_size != stream.tell() + n_bytes:
            raise _damaged(path, f"member {name!r} is {info.file_size - stream.tell()} "
                                 f"bytes of data, where its shape {tuple(found_shape)} "
                                 f"needs {n_bytes}")
        data = stream.read(n_bytes)
        # Reading to the end makes zipfile check the member's CRC.
        if len(data) != n_bytes or stream.read(1):
            raise _damaged(path, f"member {name!r} is truncated")
    order = "F" if fortran_order else "C"
    return np.frombuffer(data, dtype=dtype).reshape(found_shape, order=order).copy()


def _expected_members(path: str, metadata: dict, present: set[str]) -> dict:
    """``{name: (dtypes, shape)}`` for every member the metadata names, all present."""
    sizes = metadata["layer_sizes"]
    dtype = (metadata["dtype"],)
    expected = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        expected[f"coef_{i}"] = (dtype, (fan_in, fan_out))
        expected[f"intercept_{i}"] = (dtype, (fan_out,))
    record = metadata.get("fit_record")
    if record is not None and record["version"] == 1:
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            expected[f"init_coef_{i}"] = (dtype, (fan_in, fan_out))
            expected[f"init_intercept_{i}"] = (dtype, (fan_out,))
    elif record is not None:
        for j, c in enumerate(record["checkpoints"]):
            size = sum(math.prod(shape) for _, shape in _checkpoint_layout(sizes, c))
            expected[f"ckpt_{j}"] = (dtype, (size,))
    scalers = [name for name in _SCALERS if name in present]
    if metadata["kind"] == "StandardizedRegressor":
        for name in _SCALERS:
            n = sizes[0] if name.startswith("x") else sizes[-1]
            expected[name] = (_DTYPES, (n,))
    elif scalers:
        raise _damaged(path, f"it holds the scalers {', '.join(scalers)} but its kind "
                             f"is {metadata['kind']}, which would drop them")
    for pattern in (r"(coef|intercept)_\d+", r"init_(coef|intercept)_\d+", r"ckpt_\d+"):
        stray = sorted(name for name in present
                       if re.fullmatch(pattern, name) and name not in expected)
        if stray:
            raise _damaged(path, f"it holds {', '.join(stray)}, which layer_sizes "
                                 f"{sizes} has no place for")
    training = metadata.get("training")
    if training is not None:
        for name, shape in training["arrays"].items():
            expected[f"state_{name}"] = (dtype, tuple(shape))
        if training.get("last_params"):
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                expected[f"state_last_coef_{i}"] = (dtype, (fan_in, fan_out))
                expected[f"state_last_intercept_{i}"] = (dtype, (fan_out,))
    missing = [name for name in expected if name not in present]
    if missing:
        raise _damaged(path, f"member(s) {', '.join(missing)} missing")
    return expected


def _read_metadata_member(path: str, archive: zipfile.ZipFile, members: dict) -> Any:
    if "metadata" not in members:
        raise ModelFileError(f"{path}: not a gpumlp model file (it has no metadata "
                             f"member); pass a file written by gpumlp.save or gpumlp "
                             f"train --out.")
    info = members["metadata"]
    stream, (shape, _, dtype) = _member_header(path, archive, info, "metadata",
                                               _MAX_METADATA_BYTES)
    with stream:
        if dtype.kind != "U" or tuple(shape) != ():
            raise _damaged(path, f"metadata is a {dtype.str} array of shape "
                                 f"{tuple(shape)}, not one string")
        n_bytes = dtype.itemsize
        if info.file_size != stream.tell() + n_bytes:
            raise _damaged(path, "the metadata member's size does not match its header")
        data = stream.read(n_bytes)
        if len(data) != n_bytes or stream.read(1):
            raise _damaged(path, "the metadata member is truncated")
    try:
        text = str(np.frombuffer(data, dtype=dtype)[0])
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _damaged(path, f"its metadata is not valid JSON ({exc})") from None


def _read(path: str | os.PathLike, with_arrays: bool) -> tuple[dict, dict]:
    """Checked metadata, and (``with_arrays``) the checked arrays it names."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such model file; check the path.") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror}).") \
            from None
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{path} is a directory; pass a model file written by "
                             f"gpumlp.save or gpumlp train --out.")
    if not stat.S_ISREG(mode):
        raise ModelFileError(f"{path} is not a regular file (a pipe or a device?); pass "
                             f"a model file written by gpumlp.save or gpumlp train --out.")
    from ._atomic import mark_input

    mark_input(path)   # a model loaded is never removed as a killed writer's temporary
    try:
        with open(path, "rb") as handle:
            if handle.read(6) == b"\x93NUMPY":
                raise ModelFileError(
                    f"{path} is a single NumPy array (.npy), not a gpumlp model file; "
                    f"pass the .npz written by gpumlp.save or gpumlp train --out.")
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                infos = archive.infolist()
                names = [info.filename for info in infos]
                if len(set(names)) != len(names):
                    raise _damaged(path, "it names a member twice")
                members = {info.filename[:-4]: info for info in infos
                           if info.filename.endswith(".npy")}
                metadata = _read_metadata_member(path, archive, members)
                _check_metadata(path, metadata)
                arrays = {}
                if with_arrays:
                    expected = _expected_members(path, metadata, set(members))
                    for name, (dtypes, shape) in expected.items():
                        max_bytes = math.prod(shape) * 8
                        arrays[name] = _read_member(path, archive, members[name], name,
                                                    dtypes, shape, max_bytes)
    except ModelFileError:
        raise
    except _ZIP_ERRORS as exc:
        raise ModelFileError(f"{path}: not a gpumlp model file, or damaged ({exc}); "
                             f"{_REMEDY}.") from None
    for mean, scale in (("x_mean", "x_scale"), ("y_mean", "y_scale")):
        if mean in arrays and arrays[mean].dtype != arrays[scale].dtype:
            raise _damaged(path, f"member {mean!r} has dtype {arrays[mean].dtype} but "
                                 f"{scale!r} has {arrays[scale].dtype}")
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise _damaged(path, f"member {name!r} holds NaN or infinite values")
        if name.endswith("_scale") and not np.all(array > 0):
            raise _damaged(path, f"member {name!r} holds a scale that is not positive")
    return metadata, arrays


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a model file, checked against the schema; no array is read.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
    ModelFileError
    """
    return _read(path, with_arrays=False)[0]


def _generator(state: Any):
    """A NumPy Generator or RandomState rebuilt from the state :func:`save` stored."""
    kind = next(iter(state))
    if kind not in ("numpy_generator", "numpy_random_state"):
        raise ValueError(f"unknown random_state encoding {kind!r}")
    bit_state = dict(state[kind])
    name = bit_state.get("bit_generator")
    if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        raise ValueError(f"unknown bit generator {name!r}")
    if kind == "numpy_random_state":
        rng = np.random.RandomState()
        rng.set_state(bit_state)
        return rng
    bit_generator = getattr(np.random, name)()
    bit_generator.state = bit_state
    return np.random.Generator(bit_generator)


def _params(path: str, metadata: dict) -> dict:
    """The estimator's parameters, decoded and checked; ``device`` and ``backend`` reset to None."""
    from ._checks import check_params
    from .estimator import MLPRegressor

    params = dict(metadata["params"])
    known = MLPRegressor().get_params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise _damaged(path, f"unknown parameter(s) {', '.join(unknown)}")
    # Older gpumlp wrote some values as their repr; the weights still hold.
    legacy = {"random_state": None, "dtype": metadata["dtype"],
              "hidden_layer_sizes": metadata["layer_sizes"][1:-1]}
    for name, replacement in legacy.items():
        value = params.get(name)
        if isinstance(value, str) and not (name == "dtype" and value in _DTYPES):
            warnings.warn(f"{path}: parameter {name} was saved as the text {value!r} by an "
                          f"older gpumlp; loaded as {replacement!r}.", UserWarning,
                          stacklevel=4)
            params[name] = replacement
    try:
        sizes = params.get("hidden_layer_sizes", known["hidden_layer_sizes"])
        params["hidden_layer_sizes"] = tuple(sizes) if isinstance(sizes, list) else sizes
        if isinstance(params.get("random_state"), dict) and len(params["random_state"]) == 1:
            params["random_state"] = _generator(params["random_state"])
        params["device"] = None
        params["backend"] = None  # a model trained on any backend predicts on any
        net = MLPRegressor(**params)
        check_params(net)
        from .initialization import as_generator

        # A copy: drawing from the file's RandomState would move the model's.
        as_generator(copy.deepcopy(net.random_state))
    except (TypeError, ValueError, KeyError) as exc:
        raise _damaged(path, f"a parameter is invalid ({exc})") from None
    return params


def _restore(net, coefs: list, intercepts: list, metadata: dict) -> None:
    """Give ``net`` the fitted state ``fit`` would have given it.

    ``best_loss_`` is the curve's least loss, as ``fit`` sets it (None with
    early stopping); the validation R² of each epoch comes back with the
    training state (:func:`_restore_training`), which holds it.
    """
    loss_curve = [float(v) for v in metadata.get("loss_curve", [])]
    validation_curve = metadata.get("validation_loss_curve")
    net._set_fitted(coefs, intercepts, loss_curve=loss_curve,
                    n_iter=metadata.get("n_iter"), y_was_1d=metadata.get("y_1d", False),
                    learning_rates=metadata.get("learning_rates"),
                    learning_rate=metadata.get("learning_rate"),
                    final_loss=metadata.get("loss"),
                    best_loss=(min(loss_curve) if loss_curve and not net.early_stopping
                               else None),
                    validation_losses=(None if validation_curve is None
                                       else [float(v) for v in validation_curve]))
    names = metadata.get("feature_names_in")
    if names is not None:
        net.feature_names_in_ = np.asarray(names, dtype=object)


def _solver_for(net, name):
    """The solver named ``name`` with ``net``'s hyper-parameters: the template its
    saved state is checked against (a state of another solver does not fit it)."""
    from .solvers import make_solver

    if name == net.solver:
        return net._make_solver()
    rate = net.learning_rate_init if isinstance(net.learning_rate_init, float) else 0.01
    return make_solver(name, rate, net.get_params())


def _restore_training(path: str, net, training: dict, arrays: dict) -> None:
    """Give ``net`` the saved solver state, generator and history, after checking them."""
    from .solvers import state_from_arrays

    try:
        solver = _solver_for(net, training["solver"])
        state = state_from_arrays(
            training["state"], {name: arrays[f"state_{name}"] for name in training["arrays"]},
            solver.init_state([*net.coefs_, *net.intercepts_]) if solver.resumable else None)
        check = getattr(solver, "check_state", None)
        if check is not None:
            check(state)
        rng = _generator(training["rng"])
        if not isinstance(rng, np.random.Generator):
            raise ValueError("the batch-order generator is not a numpy Generator")
        split = None
        if "split" in training:
            split = _generator(training["split"])
            if not isinstance(split, np.random.Generator):
                raise ValueError("the validation split's generator is not a numpy Generator")
            split = split.bit_generator.state
        last = None
        if training.get("last_params"):
            n = len(net.coefs_)
            last = [arrays[f"state_last_coef_{i}"] for i in range(n)] + \
                [arrays[f"state_last_intercept_{i}"] for i in range(n)]
            if not all(np.all(np.isfinite(a)) for a in last):
                raise ValueError("the last weights are not all finite")
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, StopIteration,
            RecursionError) as exc:
        raise _damaged(path, f"its training state is invalid ({exc})") from None
    # A Generator random_state was the batch-order generator itself; keep them one.
    random_state = net.random_state
    if isinstance(random_state, np.random.Generator) and \
            _plain("rng", random_state.bit_generator.state) == \
            _plain("rng", rng.bit_generator.state):
        rng = random_state
    history = dict(training["history"])
    if history["validation_scores"] and net.validation_loss_curve_ is not None:
        net.validation_scores_ = [float(v) for v in history["validation_scores"]]
        net.best_validation_score_ = max(net.validation_scores_)
    for key, missing in (("best_loss", math.inf), ("best_validation_score", -math.inf)):
        if history[key] is None:
            history[key] = missing
    net._set_training_state(training["solver"], state, rng, history, last_params=last,
                            split=split)


def _record_from_file(record: dict, arrays: dict, sizes: list) -> dict:
    """The fit record as :mod:`gpumlp._fitrecord` keeps it, its arrays read back."""
    record, n_layers = dict(record), len(sizes) - 1
    if record["version"] == 1:
        record.update(coefs=[arrays[f"init_coef_{i}"] for i in range(n_layers)],
                      intercepts=[arrays[f"init_intercept_{i}"] for i in range(n_layers)])
        return record
    checkpoints = []
    for j, c in enumerate(record["checkpoints"]):
        flat, at, parts = arrays[f"ckpt_{j}"], 0, {}
        for name, shape in _checkpoint_layout(sizes, c):
            size = math.prod(shape)
            parts[name] = flat[at:at + size].reshape(shape)
            at += size
        checkpoints.append(dict(
            c, coefs=[parts[f"coef_{i}"] for i in range(n_layers)],
            intercepts=[parts[f"intercept_{i}"] for i in range(n_layers)],
            state_arrays={name: parts[f"state_{name}"] for name in c["state_arrays"]},
            best=[parts[f"best_{i}"] for i in range(2 * n_layers)] if c["best"] else None))
    record["checkpoints"] = checkpoints
    return record


def load_with_metadata(
        path: str | os.PathLike, *,
        as_fit: bool = False) -> tuple[MLPRegressor | StandardizedRegressor, dict]:
    """Load a model saved by :func:`save`, with its checked metadata, reading the file once.

    Parameters
    ----------
    path : str or path-like
    as_fit : bool, default=False
        Give the model the parameters its last fit ran with, where the file's
        fit record keeps them, instead of the file's own (which a
        ``set_params`` between that fit and ``save`` may have changed for a
        later fit); the certificate replays the fit so. ``metadata`` is the
        file's either way.

    Returns
    -------
    model : MLPRegressor or StandardizedRegressor
        As :func:`load` returns it.
    metadata : dict
        As :func:`read_metadata` returns it.

    Raises
    ------
    FileNotFoundError
    ModelFileError
    """
    from .estimator import MLPRegressor
    from .scaling import StandardizedRegressor

    path = os.fspath(path)
    metadata, arrays = _read(path, with_arrays=True)
    if metadata["activation"] != metadata["params"].get("activation", "sigmoid"):
        raise _damaged(path, f"activation {metadata['activation']!r} differs from the "
                             f"parameter's {metadata['params'].get('activation')!r}")
    ran = (metadata.get("fit_record") or {}).get("params") if as_fit else None
    net = MLPRegressor(**_params(path, metadata if ran is None else
                                 {**metadata, "params": {**metadata["params"], **ran}}))
    n_layers = len(metadata["layer_sizes"]) - 1
    hidden = net.hidden_layer_sizes
    hidden = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
    if hidden != metadata["layer_sizes"][1:-1]:
        raise _damaged(path, f"the parameter hidden_layer_sizes {hidden} disagrees with the "
                             f"weights' layer sizes {metadata['layer_sizes']}")
    _restore(net, [arrays[f"coef_{i}"] for i in range(n_layers)],
             [arrays[f"intercept_{i}"] for i in range(n_layers)], metadata)
    if "training" in metadata:
        _restore_training(path, net, metadata["training"], arrays)
    if "fit_record" in metadata:
        net._fit_record = _record_from_file(metadata["fit_record"], arrays,
                                            metadata["layer_sizes"])
    # Where it was trained, which save writes again (the fit record says so too,
    # and a certificate checks that the two agree).
    net._trained_on = metadata["trained_on"]
    # What the file says of the data, which save writes again while these weights last.
    net._file_labels = {
        "weights": model_digest(net.coefs_, net.intercepts_),
        "feature_names": metadata.get("feature_names"),
        "target_names": metadata.get("target_names"),
        "columns": None if metadata.get("columns") is None else [
            (c["name"], c["levels"]) for c in metadata["columns"]],
        "extra": metadata.get("extra") or None}
    if metadata["kind"] == "MLPRegressor":
        return net, metadata
    # The template is an unfitted regressor of the same parameters, as fit
    # leaves one: fitting the loaded model trains a new network, or with
    # regressor__warm_start=True continues this one.
    template = net.get_params() if "template" not in metadata else \
        _params(path, {**metadata, "params": metadata["template"]})
    model = StandardizedRegressor(MLPRegressor(**copy.deepcopy(template)))
    model.regressor_ = net
    for name in _SCALERS:
        setattr(model, name + "_", arrays[name])
    model.alpha_search_ = metadata.get("alpha_search")
    if model.alpha_search_ is not None:
        # The grid it searched: a refit of the loaded model chooses again, as
        # the saved one would (the grid as checked, largest first).
        model.alphas = tuple(model.alpha_search_["alphas"])
    if hasattr(net, "feature_names_in_"):   # the wrapper saw the names; the net did not
        model.feature_names_in_ = net.feature_names_in_
        del net.feature_names_in_
    return model, metadata


def load(path: str | os.PathLike) -> MLPRegressor | StandardizedRegressor:
    """Load a model saved by :func:`save`; it predicts on any device.

    The file is checked first (see the module docstring): a model that loads
    is one whose every array has the dtype and shape its metadata implies and
    holds finite values.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    MLPRegressor or StandardizedRegressor
        Whichever was saved, fitted, with NumPy weights. Its ``device`` is
        left as ``None`` (``$GPUMLP_DEVICE``, else auto); set it with
        ``set_params(device=...)`` to choose.

    Raises
    ------
    FileNotFoundError
    ModelFileError
        For a damaged, tampered or foreign file, one holding pickled objects,
        or one from a newer format version.
    """
    return load_with_metadata(path)[0]
