"""Model files: a portable format with no pickle, validated before use.

A model file is an ``.npz`` archive with no pickled objects: the weights as
plain arrays (``coef_0``, ``intercept_0``, ...), the scalers of a
:class:`~gpumlp.scaling.StandardizedRegressor` when there are any
(``x_mean``, ``x_scale``, ``y_mean``, ``y_scale``), and one string array,
``metadata``, holding JSON: the format and gpumlp versions, the architecture,
the dtype, the device it was trained on, the estimator's parameters, the
training history and the feature and target names.

Files are read with ``allow_pickle=False`` and written through a temporary
file and a rename, so a crash never leaves half a model where a good one was.
Weights are stored as host arrays: a model trained on a GPU loads and predicts
on a CPU, and the reverse.
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile

import numpy as np

from ._atomic import atomic_path, write_text_atomic  # noqa: F401 (re-exported)
from .devices import Device, to_numpy

__all__ = ["FORMAT_VERSION", "ModelFileError", "load", "save"]

#: The model-file format this version writes, and the newest it reads.
FORMAT_VERSION = 1
_MAGIC = "gpumlp-model"


class ModelFileError(ValueError):
    """A model file that cannot be read: damaged, foreign, or from a newer gpumlp."""


def _jsonable(value):
    if isinstance(value, Device):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return repr(value)


def save(model, path, *, feature_names=None, target_names=None, extra=None):
    """Save a fitted model to ``path`` (an ``.npz`` file), atomically.

    Parameters
    ----------
    model : MLPRegressor or StandardizedRegressor
        Fitted.
    path : str or path-like
        Written as given (no extension is added).
    feature_names, target_names : list of str, optional
        Stored for prediction from CSV files.
    extra : dict, optional
        More JSON-serialisable metadata (for example the CLI's settings).
    """
    from . import __version__
    from .estimator import MLPRegressor
    from .scaling import StandardizedRegressor

    scalers = {}
    if isinstance(model, StandardizedRegressor):
        if not hasattr(model, "regressor_"):
            raise ValueError("Only a fitted model can be saved; call fit first.")
        scalers = {name: to_numpy(getattr(model, name + "_"))
                   for name in ("x_mean", "x_scale", "y_mean", "y_scale")}
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
    metadata = {
        "format": _MAGIC,
        "format_version": FORMAT_VERSION,
        "gpumlp_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kind": type(model).__name__,
        "layer_sizes": [coefs[0].shape[0]] + [W.shape[1] for W in coefs],
        "activation": net.activation,
        "out_activation": "identity",
        "dtype": str(coefs[0].dtype),
        "trained_on": str(getattr(net, "device_", "")),
        "params": {k: _jsonable(v) for k, v in net.get_params().items()},
        "y_1d": bool(getattr(net, "_y_was_1d", False)),
        "n_iter": int(getattr(net, "n_iter_", 0)),
        "loss_curve": [float(v) for v in getattr(net, "loss_curve_", [])],
        "validation_loss_curve": getattr(net, "validation_loss_curve_", None),
        "feature_names": list(feature_names) if feature_names is not None else None,
        "target_names": list(target_names) if target_names is not None else None,
        "extra": {k: _jsonable(v) for k, v in (extra or {}).items()},
    }
    arrays = {f"coef_{i}": W for i, W in enumerate(coefs)}
    arrays.update({f"intercept_{i}": b for i, b in enumerate(intercepts)})
    arrays.update(scalers)
    arrays["metadata"] = np.array(json.dumps(metadata))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_metadata(path):
    """The metadata dictionary of a model file, checked for format and version."""
    return _open(path)[0]


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file. Check the path passed to --model.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as exc:  # an object array: refused, never unpickled
        raise ModelFileError(
            f"{path}: refused to load, because it holds pickled objects ({exc}). "
            f"gpumlp model files never do; this file is not one, or was tampered with."
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelFileError(f"{path}: not a gpumlp model file, or damaged ({exc}).") from None
    try:
        metadata = json.loads(str(arrays.pop("metadata")[()]))
        assert metadata.get("format") == _MAGIC
        version = int(metadata["format_version"])
    except Exception:
        raise ModelFileError(
            f"{path}: not a gpumlp model file, or damaged (its metadata is missing or "
            f"unreadable).") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format {version} is newer than this gpumlp reads "
            f"(up to {FORMAT_VERSION}); upgrade gpumlp (pip install -U gpumlp).")
    return metadata, arrays


def load(path):
    """Load a model saved by :func:`save`; it predicts on any device.

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
        For a damaged or foreign file, one holding pickled objects, or one
        from a newer format version.
    """
    from .estimator import MLPRegressor
    from .scaling import StandardizedRegressor

    metadata, arrays = _open(path)
    try:
        n_layers = len(metadata["layer_sizes"]) - 1
        coefs = [arrays[f"coef_{i}"] for i in range(n_layers)]
        intercepts = [arrays[f"intercept_{i}"] for i in range(n_layers)]
        params = dict(metadata["params"])
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        params["device"] = None
        net = MLPRegressor(**params)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: damaged model file ({exc!r} missing or invalid).") \
            from None
    net.coefs_, net.intercepts_ = coefs, intercepts
    net.loss_curve_ = list(metadata.get("loss_curve", []))
    net.n_iter_ = int(metadata.get("n_iter", len(net.loss_curve_)))
    net.n_features_in_ = int(coefs[0].shape[0])
    net.n_outputs_ = int(coefs[-1].shape[1])
    net.n_layers_ = n_layers + 1
    net.out_activation_ = "identity"
    net._y_was_1d = bool(metadata.get("y_1d", False))
    if metadata.get("kind") != "StandardizedRegressor":
        return net
    model = StandardizedRegressor(net)
    model.regressor_ = net
    try:
        for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
            setattr(model, name + "_", arrays[name])
    except KeyError as exc:
        raise ModelFileError(f"{path}: damaged model file (scaler {exc} missing).") from None
    return model
