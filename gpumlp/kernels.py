"""The network's mathematics, written once against the array-API standard.

Every function here is pure and generic: it takes arrays of any namespace
that ``array_api_compat.array_namespace`` understands (NumPy, CuPy,
array-api-strict, ...) and returns new arrays of that namespace, on the same
device, in the same dtype. Nothing here imports NumPy or CuPy, moves data
between devices, or reads a value back to the host.

Conventions, stated once
------------------------
* Shapes: ``X`` is ``(n_samples, n_features)``, ``y`` and ``y_pred`` are
  ``(n_samples, n_outputs)``; ``coefs[i]`` is ``(fan_in, fan_out)`` and
  ``intercepts[i]`` is ``(fan_out,)``, so a layer is ``z = a @ W + b``.
* The loss is the **mean** of squared errors over all ``n * k`` entries,
  ``L = (1/(n k)) * sum (y - y_pred)**2`` -- not half of it. Its gradient
  with respect to the (linear) output therefore carries the factor 2:
  ``dL/dy_pred = (2/(n k)) * (y_pred - y)``. The other loss, ``"poisson"``
  (half the Poisson deviance, ``exp`` output), and the factor of each are
  records in :mod:`gpumlp.losses`: ``dL/dz_out = c * (y_pred - y)`` with
  ``c = factor / (n k)`` (2 for the squared error, 1 for Poisson).
* With ``sample_weight`` ``w``, every mean over rows is a weighted mean:
  ``n`` becomes ``W = sum(w)`` and row ``i``'s output delta is multiplied by
  ``w_i``, as in scikit-learn.
* The optional L2 penalty is ``(alpha / 2) * c * sum_i ||W_i||_F**2`` over
  the weight matrices (not the intercepts), with ``c`` the output delta's
  scale above; its gradient is ``alpha * c * W_i``. For the squared error and
  one output that is ``(alpha / n) * sum ||W_i||**2``: twice scikit-learn's
  ``(alpha / (2 n))``, because our loss is twice theirs. The whole gradient is
  then scikit-learn's times ``factor / k``, so the same ``alpha`` gives the
  same model (issue 12), and the same trajectory with our learning rate
  divided by ``factor / k``.
* Hyper-parameters (learning rate, momentum, ...) must be Python floats, so
  that a float32 computation stays float32: an array-API Python scalar takes
  the array's dtype, whereas a 0-d float64 array would promote it.

The default network is the specified one: ``z1 = X W1 + b1``,
``a1 = sigmoid(z1)``, ``y_pred = a1 W2 + b2``, with the loss above.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .activations import NAMES, get_activation
from .losses import get_loss

__all__ = [
    "ACTIVATIONS",
    "dot",
    "flatten",
    "activation_derivative",
    "adam_step",
    "add_l2",
    "apply_activation",
    "backward",
    "forward",
    "gd_step",
    "l2_penalty",
    "loss_and_grads",
    "loss_value",
    "momentum_step",
    "output_delta_scale",
    "predict",
    "squared_error",
]

#: Every activation name accepted (see :mod:`gpumlp.activations`).
ACTIVATIONS = NAMES


def apply_activation(name, z):
    """Apply a hidden-layer activation (a name or an :class:`Activation`) elementwise."""
    return get_activation(name).forward(z)


def activation_derivative(name, a):
    """``d a / d z`` written in terms of the activation's output ``a``.

    Using the output rather than ``z`` means the forward pass need not keep
    ``z``. Returns ``None`` for the identity, whose derivative is 1.
    """
    derivative = get_activation(name).derivative
    return None if derivative is None else derivative(a)


def output_delta_scale(n_samples, n_outputs):
    """The factor in ``dL/dy_pred = (2 / (n k)) (y_pred - y)``, as a Python float.

    The 2 comes from the square, the ``1 / (n k)`` from the mean over all
    ``n k`` entries. Every path (generic, fast, chunked) takes it from here.
    """
    return 2.0 / (n_samples * n_outputs)


def _out_function(out_activation):
    if out_activation == "identity":
        return None
    if out_activation == "exp":
        return lambda z: array_namespace(z).exp(z)
    raise ValueError(f"out_activation must be 'identity' or 'exp', got {out_activation!r}.")


def forward(X, coefs, intercepts, activation="sigmoid", out_activation="identity",
            affine=None):
    """Run the network forward and keep what :func:`backward` needs.

    Parameters
    ----------
    X : array, shape (n_samples, n_features)
    coefs : list of arrays, ``coefs[i]`` of shape (fan_in, fan_out)
    intercepts : list of arrays, ``intercepts[i]`` of shape (fan_out,)
    activation : str or Activation
        The hidden layers' activation.
    out_activation : {"identity", "exp"}
        The output layer's (the loss's, see :mod:`gpumlp.losses`).
    affine : callable or None
        ``affine(a, W, b) -> z``, each layer's ``a @ W + b`` computed otherwise:
        the certificate's rounding samples round it as another backend's
        products might (:func:`gpumlp.certificate._perturbed_affine`). None:
        ``a @ W + b``.

    Returns
    -------
    activations : list of arrays
        ``[X, a1, ..., y_pred]``: the input, each hidden layer's output and
        the network's output, shape (n_samples, n_outputs).
    """
    f = get_activation(activation).forward
    out = _out_function(out_activation)
    activations = [X]
    last = len(coefs) - 1
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        z = activations[-1] @ W + b if affine is None else affine(activations[-1], W, b)
        if i < last:
            z = f(z)
        elif out is not None:
            z = out(z)
        activations.append(z)
    return activations


def predict(X, coefs, intercepts, activation="sigmoid", out_activation="identity"):
    """The network's output for ``X``, shape (n_samples, n_outputs)."""
    return forward(X, coefs, intercepts, activation, out_activation)[-1]


def squared_error(y, y_pred):
    """Mean squared error over all entries, as a 0-d array.

    Parameters
    ----------
    y, y_pred : arrays, shape (n_samples, n_outputs)
    """
    xp = array_namespace(y, y_pred)
    diff = y_pred - y
    return xp.mean(diff * diff)


def loss_value(y, y_pred, sample_weight=None, loss_kind="squared_error"):
    """The data term: the (weighted) mean loss of :mod:`gpumlp.losses`, a 0-d array.

    Parameters
    ----------
    y, y_pred : arrays, shape (n_samples, n_outputs)
    sample_weight : array, shape (n_samples,), optional
    loss_kind : str or Loss
    """
    return get_loss(loss_kind).value(y, y_pred, sample_weight)


def l2_penalty(coefs, alpha, n_samples, n_outputs=1, loss_kind="squared_error"):
    """``(alpha / 2) * c * sum_i ||W_i||**2``, as a 0-d array.

    ``c = factor / (n k)`` is the loss's output-delta scale (see the
    conventions above): ``(alpha / n) * sum ||W_i||**2`` for the squared
    error and one output. ``n_samples`` is the batch's rows, or its sum of
    weights (a number or a 0-d array).
    """
    xp = array_namespace(*coefs)
    total = sum(xp.sum(W * W) for W in coefs)
    return (0.5 * alpha) * get_loss(loss_kind).delta_scale(n_samples, n_outputs) * total


def _l2_gradients(coef_grads, coefs, alpha, scale):
    """``g_i + alpha c W_i``: the penalty's gradient added to each weight's."""
    return [g + (alpha * scale) * W for g, W in zip(coef_grads, coefs)]


def add_l2(loss, coef_grads, coefs, alpha, n_samples, n_outputs=1,
           loss_kind="squared_error"):
    """Add the L2 penalty of :func:`l2_penalty` to a loss and its weight gradients.

    This is the one place where the penalty enters training, whichever path
    (generic, fast, Dask chunks) computed the data term.

    Parameters
    ----------
    loss : 0-d array
        The data term over the batch.
    coef_grads, coefs : lists of arrays
    alpha : float
    n_samples : int or 0-d array
        Rows in the batch, or their sum of weights.
    n_outputs : int
    loss_kind : str or Loss
        The loss whose scale the penalty takes (see :func:`l2_penalty`).

    Returns
    -------
    loss, coef_grads
    """
    if not alpha:
        return loss, coef_grads
    scale = get_loss(loss_kind).delta_scale(n_samples, n_outputs)
    return (loss + l2_penalty(coefs, alpha, n_samples, n_outputs, loss_kind),
            _l2_gradients(coef_grads, coefs, alpha, scale))


def backward(y, activations, coefs, activation="sigmoid", alpha=0.0, n_total=None,
             sample_weight=None, loss_kind="squared_error"):
    """Gradients of the loss (plus L2 penalty) with respect to every parameter.

    Parameters
    ----------
    y : array, shape (n_samples, n_outputs)
    activations : list of arrays
        As returned by :func:`forward` for the same ``coefs``.
    coefs : list of arrays
    activation : str or Activation
        The hidden layers' activation.
    alpha : float
        L2 penalty strength.
    n_total : int or 0-d array, optional
        When these rows are one chunk of a larger batch of ``n_total`` rows
        (with weights: of total weight ``n_total``): the gradients are then
        this chunk's share of the batch's gradient, so that summing them over
        the chunks gives the batch's gradient. By default the rows are the
        whole batch.
    sample_weight : array, shape (n_samples,), optional
        Row weights, in ``y``'s namespace and dtype.
    loss_kind : str or Loss
        The loss (see :mod:`gpumlp.losses`); ``activations[-1]`` must come
        from its output activation.

    Returns
    -------
    coef_grads, intercept_grads : lists of arrays
        Shaped like ``coefs`` and the intercepts.
    """
    xp = array_namespace(y, *activations)
    derivative = get_activation(activation).derivative
    loss = get_loss(loss_kind)
    n, k = y.shape
    if n_total is not None:
        n = n_total
    elif sample_weight is not None:
        n = xp.sum(sample_weight)
    # Each loss pairs the output with its canonical link, so
    # dL/dz_out = c * w * (y_pred - y) (see gpumlp.losses): for the squared
    # error the output is linear and c = 2 / (n k) (output_delta_scale).
    scale = loss.delta_scale(n, k)
    residual = activations[-1] - y
    if sample_weight is not None:
        residual = residual * xp.reshape(sample_weight, (-1, 1))
    delta = scale * residual
    coef_grads = [None] * len(coefs)
    intercept_grads = [None] * len(coefs)
    for i in range(len(coefs) - 1, -1, -1):
        # a^T delta as a contraction over the rows (no transposed copy for a
        # compiler to make: XLA is twice as slow with the explicit `.T @`).
        coef_grads[i] = xp.tensordot(activations[i], delta, axes=([0], [0]))
        intercept_grads[i] = xp.sum(delta, axis=0)
        if i > 0:
            # Back through layer i's weights, then through the activation
            # that produced activations[i].
            delta = delta @ coefs[i].T
            if derivative is not None:
                delta = delta * derivative(activations[i])
    if alpha:
        coef_grads = _l2_gradients(coef_grads, coefs, alpha, scale)
    return coef_grads, intercept_grads


def loss_and_grads(X, y, coefs, intercepts, activation="sigmoid", n_total=None,
                   sample_weight=None, loss_kind="squared_error", affine=None):
    """The data term of the loss and its gradients, by the generic kernels.

    The contract every fast path shares: ``loss`` is the mean squared error
    over the rows given (a 0-d array), and the gradients are the batch's, or
    with ``n_total`` this chunk's share of a batch of ``n_total`` rows (see
    :func:`backward`). No L2 penalty: :func:`add_l2` adds it. Here, and
    only here, also the other losses and row weights: ``loss`` is then the
    weighted mean loss over the rows given (:func:`loss_value`). ``affine``:
    see :func:`forward`.

    Returns
    -------
    loss, coef_grads, intercept_grads
    """
    out_activation = get_loss(loss_kind).out_activation
    activations = forward(X, coefs, intercepts, activation, out_activation, affine)
    loss = loss_value(y, activations[-1], sample_weight, loss_kind)
    coef_grads, intercept_grads = backward(y, activations, coefs, activation,
                                           n_total=n_total, sample_weight=sample_weight,
                                           loss_kind=loss_kind)
    return loss, coef_grads, intercept_grads


def dot(a, b, xp=None):
    """``sum_i <a_i, b_i>`` over two lists of arrays (parameters, say), as a 0-d array.

    ``xp``: the namespace, when the caller knows it.
    """
    xp = array_namespace(*a) if xp is None else xp
    total = xp.sum(a[0] * b[0])
    for u, v in zip(a[1:], b[1:]):
        total = total + xp.sum(u * v)
    return total


def flatten(arrays, xp=None):
    """The arrays laid end to end, as one vector (vectors are not reshaped: each call counts)."""
    xp = array_namespace(*arrays) if xp is None else xp
    return xp.concat([a if a.ndim == 1 else xp.reshape(a, (-1,)) for a in arrays])


def gd_step(params, grads, learning_rate):
    """Plain gradient descent: ``p - lr * g`` for each parameter."""
    return [p - learning_rate * g for p, g in zip(params, grads)]


def momentum_step(params, grads, velocities, learning_rate, momentum, nesterov):
    """Heavy-ball or Nesterov momentum, in scikit-learn's formulation.

    ``v <- momentum * v - lr * g``; then ``p <- p + v``, or for Nesterov
    ``p <- p + momentum * v - lr * g``.

    Returns
    -------
    params, velocities : lists of arrays
    """
    velocities = [momentum * v - learning_rate * g for v, g in zip(velocities, grads)]
    if nesterov:
        params = [
            p + (momentum * v - learning_rate * g)
            for p, v, g in zip(params, velocities, grads)
        ]
    else:
        params = [p + v for p, v in zip(params, velocities)]
    return params, velocities


def adam_step(params, grads, first, second, t, learning_rate, beta_1, beta_2, epsilon):
    """One Adam step (Kingma and Ba, 2014), bias correction folded into the rate.

    Parameters
    ----------
    params, grads, first, second : lists of arrays
        Parameters, their gradients, and the running first and second moments.
    t : int or 0-d integer array
        The step number, starting at 1. It may be an array (a traced value
        under ``jax.jit``), so the bias correction is written with ``**``,
        which Python numbers and arrays share, and stays weakly typed: a
        float32 step stays float32.

    Returns
    -------
    params, first, second : lists of arrays
    """
    xp = array_namespace(*params)
    rate = learning_rate * (1.0 - beta_2**t) ** 0.5 / (1.0 - beta_1**t)
    first = [beta_1 * m + (1.0 - beta_1) * g for m, g in zip(first, grads)]
    second = [beta_2 * v + (1.0 - beta_2) * (g * g) for v, g in zip(second, grads)]
    params = [
        p - rate * m / (xp.sqrt(v) + epsilon) for p, m, v in zip(params, first, second)
    ]
    return params, first, second
