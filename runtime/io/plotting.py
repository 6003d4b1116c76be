"""Plots of inversions (matplotlib, imported only when called: ``pip install rrim[plot]``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_inversions(path, omega, Omega, y, glue, fit, residual, labels=None, truth=None, title: str = "",
                    band=None) -> Path:
    """One row per spectrum: glue I²χ(Ω) (and ``truth``, ``band`` = (lower, upper) if given) | measured
    1/τ with the refit | residual.

    ``omega``, ``Omega`` (meV) grids; ``y``, ``fit`` (k, n_ω) meV; ``glue`` (k, n_Ω); ``residual`` (k,).
    Writes a PNG (or any format matplotlib infers from the suffix) and returns its path.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'rrim[plot]'") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    k = len(glue)
    fig, axes = plt.subplots(k, 3, figsize=(12, 2.6 * k + 0.6), squeeze=False, constrained_layout=True)
    for i in range(k):
        label = labels[i] if labels is not None else f"spectrum {i}"
        ax = axes[i, 0]
        ax.plot(Omega, glue[i], color="C0", label="rRIM")
        if band is not None:
            ax.fill_between(Omega, band[0][i], band[1][i], color="C0", alpha=0.25, lw=0, label="band")
        if truth is not None:
            ax.plot(Omega, truth[i], "k--", lw=1, label="truth")
        ax.set_ylabel("I²χ(Ω)")
        ax.set_title(f"{label}: glue", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[i, 1]
        ax.plot(omega, y[i], ".", ms=2, color="0.4", label="measured (on model grid)")
        ax.plot(omega, fit[i], color="C1", label="refit A·I²χ")
        ax.set_ylabel("1/τ (meV)")
        ax.set_title(f"{label}: scattering rate", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[i, 2]
        ax.plot(omega, np.asarray(fit[i]) - np.asarray(y[i]), color="C3", lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("fit − measured (meV)")
        ax.set_title(f"relative RMS residual {residual[i]:.2e}", fontsize=9)
    for j, xl in enumerate(("Ω (meV)", "ω (meV)", "ω (meV)")):
        axes[-1, j].set_xlabel(xl)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
