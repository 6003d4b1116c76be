"""The quality flags of an inversion: bits of ``InversionResult.flags`` (uint8), also written to archives.

==== =========================== ======================================================
bit  name                        meaning
==== =========================== ======================================================
1    ``nonfinite_input``         the spectrum had NaN or inf (or values beyond float32
                                 once scaled): skipped, glue/fit NaN
2    ``omega_cropped``           measured ω beyond the model's range were dropped (--crop)
4    ``omega_extrapolated``      part of the model's ω grid had no data: edge values were
                                 held (--crop) and those points are left out of the residual
8    ``temperature_out_of_range`` the temperature is outside the model's training range
16   ``poor_fit``                the refit misses the data by more than the noise allows:
                                 relative RMS residual > max(:data:`POOR_FIT_NOISE` × the
                                 estimated relative noise, :data:`POOR_FIT_FLOOR`)
32   ``out_of_distribution``     OOD score above the model's calibrated threshold
                                 (:mod:`rrim.inversion.uncertainty`; never set without a calibration)
64   ``coverage_untrained``      the spectrum's own measured ω coverage (its NaN channels taken
                                 out) is outside what the mask-aware model was trained for
                                 (:func:`rrim.io.omega_axis.trained_coverage`): skipped, glue/fit NaN
==== =========================== ======================================================
"""
from __future__ import annotations

import numpy as np

FLAG_NONFINITE = 1
FLAG_CROPPED = 2
FLAG_EXTRAPOLATED = 4
FLAG_TEMPERATURE = 8
FLAG_POOR_FIT = 16
FLAG_OOD = 32
FLAG_COVERAGE = 64
FLAGS = {"nonfinite_input": FLAG_NONFINITE, "omega_cropped": FLAG_CROPPED,
         "omega_extrapolated": FLAG_EXTRAPOLATED, "temperature_out_of_range": FLAG_TEMPERATURE,
         "poor_fit": FLAG_POOR_FIT, "out_of_distribution": FLAG_OOD, "coverage_untrained": FLAG_COVERAGE}
#: A spectrum is flagged ``poor_fit`` when its relative RMS residual ‖A x̂ − y‖/‖y‖ exceeds both
#: POOR_FIT_NOISE times its estimated noise (:func:`rrim.inversion.uncertainty.estimate_noise`, relative
#: to ‖y‖ alike) and POOR_FIT_FLOOR. Measured on held-out spectra of the shipped default model the
#: refit misses the data by 1.0–1.1× the noise from σ = 1e-4 up, so a fixed relative threshold
#: (formerly 5 %) flagged nothing but the noise at σ ≥ 1e-2 and missed a 2 % offset at σ = 1e-3. The
#: floor keeps the flag for gross misfits where the noise is tiny: with 0.1 % the calibration draw of
#: rrim-default 2.1.0 (σ = 1e-4) had 17 % of its spectra flagged for misfits of 0.1–0.3 %.
POOR_FIT_NOISE = 3.0
POOR_FIT_FLOOR = 3e-3


def poor_fit_threshold(relative_noise):
    """The relative RMS residual above which a spectrum is flagged ``poor_fit`` (array like the input)."""
    return np.maximum(POOR_FIT_NOISE * np.asarray(relative_noise, dtype=np.float64), POOR_FIT_FLOOR)


def flag_names(value: int) -> list[str]:
    """Names of the bits set in one flag value."""
    return [name for name, bit in FLAGS.items() if value & bit]
