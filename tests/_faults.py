"""A gradient fault planted on one backend, for the certificate's tests (not a test module)."""

from gpumlp import certificate, kernels


def plant_gradient_fault(monkeypatch, module: str, size: float, first: int = 1,
                         dtype: str | None = None) -> None:
    """Scale W1's data gradient by ``1 + size`` on arrays of ``module`` (``"torch"``,
    ``"array_api_strict"``), in ``dtype`` if given, from the ``first``-th backward
    call of a training step on.

    The certificate's evaluations at each segment's end point
    (``certificate._evaluated``) are faulty too once the fault has begun, but are
    not counted: ``first`` counts the steps' evaluations alone.
    """
    real, count = kernels.backward, {"n": 0, "counting": True}

    def faulty(y, activations, coefs, *args, **kwargs):
        coef_grads, intercept_grads = real(y, activations, coefs, *args, **kwargs)
        if type(y).__module__.startswith(module) and (dtype is None or dtype in str(y.dtype)):
            count["n"] += count["counting"]
            if count["n"] >= first:
                coef_grads[0] = coef_grads[0] * (1.0 + size)
        return coef_grads, intercept_grads

    evaluated = certificate._evaluated

    def uncounted(*args, **kwargs):
        count["counting"] = False
        try:
            return evaluated(*args, **kwargs)
        finally:
            count["counting"] = True

    monkeypatch.setattr(kernels, "backward", faulty)
    monkeypatch.setattr(certificate, "_evaluated", uncounted)
