"""A gradient fault planted on one backend, for the certificate's tests (not a test module)."""

from gpumlp import kernels


def plant_gradient_fault(monkeypatch, module: str, size: float, first: int = 1,
                         dtype: str | None = None) -> None:
    """Scale W1's data gradient by ``1 + size`` on arrays of ``module`` (``"torch"``,
    ``"array_api_strict"``), in ``dtype`` if given, from the ``first``-th backward
    call on.
    """
    real, count = kernels.backward, {"n": 0}

    def faulty(y, activations, coefs, *args, **kwargs):
        coef_grads, intercept_grads = real(y, activations, coefs, *args, **kwargs)
        if type(y).__module__.startswith(module) and (dtype is None or dtype in str(y.dtype)):
            count["n"] += 1
            if count["n"] >= first:
                coef_grads[0] = coef_grads[0] * (1.0 + size)
        return coef_grads, intercept_grads

    monkeypatch.setattr(kernels, "backward", faulty)
