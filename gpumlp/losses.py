"""Training losses: one record each, with its output activation and its scale.

Both losses pair the network's output with its canonical link, so the
derivative of the loss with respect to the output layer's pre-activation is
the same simple expression for both::

    dL/dz_out = scale * w * (y_pred - y),    scale = factor / (W k)

with ``w`` the row weights (1 without ``sample_weight``), ``W`` their sum over
the batch (``n`` without weights) and ``k`` the outputs. The loss is the
weighted mean over the ``n k`` entries of ``factor / 2 * d(y, y_pred)``:

* ``"squared_error"``: identity output, ``d = (y - y_pred)**2`` and
  ``factor = 2``: the loss is the mean squared error, *not* half of it
  (scikit-learn's loss is half of it).
* ``"poisson"``: ``exp`` output, ``d`` the Poisson deviance
  ``2 (y log(y / y_pred) - y + y_pred)`` and ``factor = 1``: the loss is
  half the deviance, exactly scikit-learn's.

``factor`` is the ratio of our gradient to scikit-learn's for one output
(its output delta is ``w (y_pred - y) / W``), so the same trajectory needs
our learning rate to be scikit-learn's divided by ``factor``; the L2 penalty
(:func:`gpumlp.kernels.l2_penalty`) carries the same ``scale``, so that the
same ``alpha`` means the same model. The loss *values* differ from
scikit-learn's by :meth:`Loss.sklearn_ratio` (2 for the squared error), so a
``tol`` on the training loss is scaled by it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from array_api_compat import array_namespace

__all__ = ["LOSSES", "Loss", "get_loss"]


@dataclass(frozen=True)
class Loss:
    """Everything about one training loss.

    Parameters
    ----------
    name : str
        scikit-learn's name for it.
    out_activation : str
        The output layer's activation (the inverse link): ``"identity"`` or ``"exp"``.
    factor : float
        ``dL/dz_out = factor / (W k) * w * (y_pred - y)``; see the module docs.
    pointwise : callable
        ``pointwise(y, y_pred)`` -> array of ``factor / 2 * d(y, y_pred)``,
        elementwise; the loss is its (weighted) mean.
    sklearn_sums_outputs : bool
        Whether scikit-learn adds this loss up over the outputs (Poisson)
        rather than averaging it (squared error); ours always averages.
    """

    name: str
    out_activation: str
    factor: float
    pointwise: Callable
    sklearn_sums_outputs: bool = False

    def sklearn_ratio(self, n_outputs: int) -> float:
        """Our loss's data term over scikit-learn's for the same predictions.

        2 for the squared error (we do not halve it); ``1 / k`` for Poisson
        (scikit-learn sums over the ``k`` outputs, we average).
        """
        return self.factor / n_outputs if self.sklearn_sums_outputs else self.factor

    def delta_scale(self, total, n_outputs: int):
        """``factor / (total k)``: the output delta's scale, and the penalty's.

        ``total`` is the batch's rows, or its sum of weights (a Python
        number or a 0-d array).
        """
        return self.factor / (total * n_outputs)

    def value(self, y, y_pred, sample_weight=None):
        """The loss over a batch, as a 0-d array.

        Parameters
        ----------
        y, y_pred : arrays, shape (n_samples, n_outputs)
        sample_weight : array, shape (n_samples,), optional
            In ``y``'s namespace and dtype.
        """
        xp = array_namespace(y, y_pred)
        values = self.pointwise(y, y_pred)
        if sample_weight is None:
            return xp.mean(values)
        w = xp.reshape(sample_weight, (-1, 1))
        return xp.sum(w * values) / (xp.sum(sample_weight) * float(y.shape[1]))

    def __reduce__(self):
        return (get_loss, (self.name,))


def _squared(y, y_pred):
    diff = y_pred - y
    return diff * diff


def _half_poisson_deviance(y, y_pred):
    # y log(y / y_pred) - y + y_pred, with 0 log 0 = 0. The logarithm's
    # argument is 1 where y is 0, so the discarded branch is finite too.
    xp = array_namespace(y, y_pred)
    safe = xp.where(y > 0, y, xp.ones_like(y))
    return y * (xp.log(safe) - xp.log(y_pred)) - y + y_pred


LOSSES: dict[str, Loss] = {
    loss.name: loss for loss in (
        Loss("squared_error", "identity", 2.0, _squared),
        Loss("poisson", "exp", 1.0, _half_poisson_deviance, sklearn_sums_outputs=True),
    )
}


def get_loss(name: str | Loss) -> Loss:
    """The record for a loss name, or the record itself.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {name!r}.") from None
