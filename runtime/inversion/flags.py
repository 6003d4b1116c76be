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
16   ``poor_fit``                relative RMS residual > :data:`POOR_FIT_RESIDUAL`
32   ``out_of_distribution``     OOD score above the model's calibrated threshold
                                 (:mod:`rrim.inversion.uncertainty`; never set without a calibration)
==== =========================== ======================================================
"""
from __future__ import annotations

FLAG_NONFINITE = 1
FLAG_CROPPED = 2
FLAG_EXTRAPOLATED = 4
FLAG_TEMPERATURE = 8
FLAG_POOR_FIT = 16
FLAG_OOD = 32
FLAGS = {"nonfinite_input": FLAG_NONFINITE, "omega_cropped": FLAG_CROPPED,
         "omega_extrapolated": FLAG_EXTRAPOLATED, "temperature_out_of_range": FLAG_TEMPERATURE,
         "poor_fit": FLAG_POOR_FIT, "out_of_distribution": FLAG_OOD}
#: Relative RMS residual ‖A x̂ − y‖/‖y‖ above which a spectrum is flagged ``poor_fit``.
POOR_FIT_RESIDUAL = 0.05


def flag_names(value: int) -> list[str]:
    """Names of the bits set in one flag value."""
    return [name for name, bit in FLAGS.items() if value & bit]
