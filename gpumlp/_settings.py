"""The ``train`` settings a model file keeps, bound to the model they were saved with.

``gpumlp train --out`` stores its settings (``metadata["extra"]["settings"]``)
beside the model's own parameters and its split record: ``train --resume``
restores them and ``--json`` reports them. They are a second copy of what the
model and the split record already say, so a file whose copy was edited claims
one run and holds another. :func:`settings_disagreements` names every setting
that is not what the model and the record say; the certificate fails on any,
and ``--resume`` refuses to continue such a file.

This module sits below both :mod:`gpumlp.cli` and :mod:`gpumlp.certificate`
and imports neither.
"""

from __future__ import annotations

#: Each setting that makes an estimator parameter: its parameter's name, and
#: what the setting's "left out" (None) means there.
SETTING_PARAMS = {
    "hidden": ("hidden_layer_sizes", None), "activation": ("activation", None),
    "alpha": ("alpha", None), "loss": ("loss", None), "solver": ("solver", None),
    "lr": ("learning_rate_init", "auto"), "batch_size": ("batch_size", "auto"),
    "momentum": ("momentum", None), "nesterov": ("nesterovs_momentum", None),
    "beta1": ("beta_1", None), "beta2": ("beta_2", None), "epsilon": ("epsilon", None),
    "learning_rate": ("learning_rate", None), "power_t": ("power_t", None),
    "max_fun": ("max_fun", None), "tol": ("tol", None),
    "n_iter_no_change": ("n_iter_no_change", None), "early_stopping": ("early_stopping", None),
    "validation_fraction": ("validation_fraction", None), "dtype": ("dtype", None),
    "seed": ("random_state", None),
}
#: Settings bound to the split record (``extra``), under the record's name.
SETTING_SPLIT = {"target": "target", "test_size": "test_size", "seed": "split_seed",
                 "drop": "drop", "samples": "samples"}
#: Settings bound elsewhere: ``no_standardize`` by the model's kind, ``data``
#: (a path) by the data's digest, which ``--resume`` checks.
SETTING_OTHER = ("no_standardize", "data")


def _plain(value):
    """A value as JSON keeps it (a tuple as a list, a NumPy scalar as a number)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _same(a, b) -> bool:
    a, b = _plain(a), _plain(b)
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) \
        else a == b


def settings_disagreements(settings: dict, model, extra: dict) -> list[str]:
    """The saved ``train`` settings that are not what the model and its split record say.

    Parameters
    ----------
    settings : dict
        ``metadata["extra"]["settings"]`` (as saved, or as ``train``'s
        parser reads them back).
    model : MLPRegressor or StandardizedRegressor
        The model loaded from the same file.
    extra : dict
        ``metadata["extra"]``: the split record (``target``, ``test_size``,
        ``split_seed``, ``drop``, ``samples``).

    Returns
    -------
    list of str
        One line per disagreement, naming the setting, what it claims and
        what the model (or record) holds; empty when they all agree.
    """
    net = getattr(model, "regressor_", model)
    params = net.get_params()
    wrong = []
    for key, (name, absent) in SETTING_PARAMS.items():
        if key not in settings:   # a file older than the setting
            continue
        claimed = settings[key]
        if key == "lr" and claimed is None and params.get("solver") in ("sgd", "adam") \
                and _same(params.get(name), 0.1):
            continue   # --lr left out meant 0.1 for sgd and adam before issue 21's default
        claimed = absent if claimed is None and absent is not None else claimed
        actual = params.get(name)
        if name == "hidden_layer_sizes" and isinstance(actual, int):
            actual = [actual]
        if name == "dtype" and actual is not None:
            actual = getattr(actual, "name", str(actual))
        if not _same(claimed, actual):
            wrong.append(f"{key} {claimed!r}, the model's {name} {_plain(actual)!r}")
    expected = dict(settings, drop=list(settings.get("drop") or ()),
                    samples=None if settings.get("data") is not None else settings.get("samples"))
    for key, name in SETTING_SPLIT.items():
        if key in settings and name in extra and not _same(expected.get(key), extra[name]):
            wrong.append(f"{key} {expected.get(key)!r}, the split record's {name} "
                         f"{extra[name]!r}")
    standardized = hasattr(model, "regressor_")
    if "no_standardize" in settings and _plain(settings["no_standardize"]) == standardized:
        wrong.append(f"no_standardize {settings['no_standardize']!r}, the model is "
                     f"{'' if standardized else 'not '}a StandardizedRegressor")
    return wrong
