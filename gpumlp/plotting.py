"""The loss plot, drawn with matplotlib (the optional ``plot`` extra)."""

from __future__ import annotations

__all__ = ["plot_loss"]


def plot_loss(loss_curve, validation_loss_curve, path):
    """Write a PNG of the training (and held-out) loss against epoch, log scale.

    Raises
    ------
    ImportError
        Without matplotlib, with the command that installs it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'gpumlp[plot]'") from None
    from ._atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = range(1, len(loss_curve) + 1)
    ax.plot(epochs, loss_curve, label="training loss")
    if validation_loss_curve:
        ax.plot(epochs, validation_loss_curve, label="held-out loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (standardised units)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
