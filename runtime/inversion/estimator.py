"""The rRIM called like the classical solvers: ``RRIM("rrim-default").fit(y).x_``.

Settings are stored untouched in ``__init__`` and checked in ``fit`` (scikit-learn style, as in
:mod:`rrim.solvers`). ``fit(y)`` takes scattering rates y in meV on the model's ω grid, shape
(n, n_ω) or (n_ω,), and sets ``x_`` (glue, (n, n_Ω) or (n_Ω,)), ``fit_`` (A·x̂ in meV, the shape of
y), ``residual_`` and ``flags_`` (leading shape of y), ``noise_`` (σ̂ in meV), ``operator_`` (the
model's :class:`rrim.ForwardOperator` at the spectra's temperature) and ``result_`` (the whole
:class:`rrim.inversion.engine.InversionResult`, rows always 2-D).
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import numpy as np

from rrim.inversion.engine import Engine
from rrim.models.loading import LoadedModel, load_model


@dataclass(eq=False)
class RRIM:
    """An rRIM model file as an estimator. ``model``: a name (see ``rrim models``), a path or a
    :class:`rrim.models.loading.LoadedModel`; ``provider`` 'auto', 'cpu' or 'cuda'; ``temperature``
    (K, default the model's); ``valid_omega`` (n_ω,) bool: the measured ω points; ``coverage``
    (0.68 or 0.9): also the calibrated band (``result_.glue_lower``/``glue_upper``); ``impurity``:
    estimate and remove a constant rate first."""

    model: str | LoadedModel = "rrim-default"
    _: KW_ONLY
    provider: str = "auto"
    temperature: float | None = None
    valid_omega: np.ndarray | None = None
    coverage: float | None = None
    impurity: bool = False

    def fit(self, y) -> "RRIM":
        model = self.model if isinstance(self.model, LoadedModel) else load_model(self.model)
        rows = np.asarray(y, dtype=np.float64)
        if rows.ndim not in (1, 2):
            raise ValueError(f"y: expected spectra (n_ω,) or (n, n_ω) in meV, got shape {rows.shape}")
        with Engine(model, self.provider) as engine:
            r = engine.invert(np.atleast_2d(rows), temperature=self.temperature, valid_omega=self.valid_omega,
                              coverage=self.coverage, impurity=self.impurity)
            self.operator_ = engine.physics(r.temperature)[0]
        one = rows.ndim == 1
        self.result_ = r
        self.x_, self.fit_ = (r.glue[0], r.scattering_rate_fit[0]) if one else (r.glue, r.scattering_rate_fit)
        self.residual_, self.flags_, self.noise_ = ((a[0] for a in (r.residual, r.flags, r.noise_estimate)) if one
                                                    else (r.residual, r.flags, r.noise_estimate))
        return self
