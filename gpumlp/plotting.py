"""The loss plot, drawn with matplotlib (the optional ``plot`` extra)."""

from __future__ import annotations

import os

__all__ = ["plot_format", "plot_loss"]


def plot_format(path) -> str:
    """The image format ``path``'s suffix asks for (``png`` without one), checked.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        One of matplotlib's formats (``png``, ``pdf``, ``svg``, ``jpg``, ...).

    Raises
    ------
    ValueError
        For a suffix that names no format matplotlib writes (``.txt``, say).
    ImportError
        Without matplotlib.
    """
    from matplotlib.figure import Figure

    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    if not suffix:
        return "png"
    formats = Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(f"--plot {os.fspath(path)}: .{suffix} is no image format matplotlib "
                         f"writes; end the name with one of "
                         f"{', '.join('.' + f for f in sorted(formats))}.")
    return suffix


def plot_loss(loss_curve, validation_loss_curve, path):
    """Write an image of the training (and held-out) loss against epoch, log scale.

    The format is the one the file's suffix names (PNG without one; see
    :func:`plot_format`).

    Raises
    ------
    ImportError
        Without matplotlib, with the command that installs it.
    ValueError
        For a suffix that names no image format.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'gpumlp[plot]'") from None
    from ._atomic import atomic_path

    image_format = plot_format(path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = range(1, len(loss_curve) + 1)
    ax.plot(epochs, loss_curve, label="training loss")
    if validation_loss_curve:
        # A resumed run's held-out losses are of its own epochs: the last ones.
        validated = epochs[len(epochs) - len(validation_loss_curve):]
        ax.plot(validated, validation_loss_curve, label="held-out loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error (standardised units)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=image_format)
    plt.close(fig)
