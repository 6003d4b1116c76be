"""The output schema: the variables an output holds (name → NetCDF dtype, core dimensions after the
leading ones, attributes), its format version, and :class:`ArchiveOptions` (what is read, which extras
are written)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from rrim.inversion.flags import FLAGS
from rrim.inversion.temperatures import GRID_RATIO


OUTPUT_FORMAT = "3"  # 2: noise_estimate, ood_score, out_of_distribution flag, optional band and impurity;
# 3: coverage_untrained flag, scattering_rate_fit_input on the input's ω axis, inversion_temperature beside a
# temperature dimension, CF coordinates/ancillary_variables/axis/standard_name, input global attributes carried


#: Output variables: name → (NetCDF dtype, core dimensions after the leading ones, attributes).
OUTPUT_VARIABLES = {
    "glue": ("f4", ("Omega",), {"long_name": "electron-boson glue function I²χ(Ω)", "units": "1"}),
    "scattering_rate_fit": ("f4", ("omega",), {
        "long_name": "refit scattering rate A·I²χ on the model's ω grid", "units": "meV",
        "comment": "on the model's ω grid (coordinate omega, meV); scattering_rate_fit_input is on the input's",
        "ancillary_variables": "residual flags"}),
    "scattering_rate_fit_input": ("f4", ("omega_input",), {
        "long_name": "refit scattering rate A·I²χ on the input's ω axis, in the input's units", "units": "meV",
        "comment": "on the input's ω axis (coordinate omega_input, as stored), to lay over the measured data; "
                   "evaluated at every ω > 0 of the axis, measured or not",
        "ancillary_variables": "residual flags"}),
    "residual": ("f8", (), {"long_name": "relative RMS residual ‖A·I²χ − 1/τ‖/‖1/τ‖ on the model's ω grid", "units": "1"}),
    "flags": ("u1", (), {"long_name": "quality flags", "standard_name": "status_flag", "flag_masks": np.array(list(FLAGS.values()), dtype=np.uint8),
                         "flag_meanings": " ".join(FLAGS)}),
    "lambda": ("f8", (), {"long_name": "electron-boson coupling λ = 2∫I²χ(Ω)/Ω dΩ", "units": "1"}),
    "omega_log": ("f8", (), {"long_name": "logarithmic average frequency ω_ln", "units": "meV"}),
    "temperature": ("f8", (), {"long_name": "temperature of the spectrum", "units": "K",
                               "comment": "as the input gives it; the physics was built at the nearest temperature of "
                                          f"a geometric grid of ratio {GRID_RATIO} (at most 0.5 % away, "
                                          "rrim.inversion.temperatures)"}),
    "noise_estimate": ("f8", (), {"long_name": "estimated noise σ̂ of the scattering rate (robust std of second differences/√6)",
                                  "units": "meV"}),
    "ood_score": ("f8", (), {"long_name": "out-of-distribution score: smaller refit residual (rRIM or non-negative "
                                          "consistency fit) over √(σ̂² + (β·RMS 1/τ)²)",
                             "units": "1", "comment": "flag out_of_distribution above the model's calibrated threshold; "
                                                       "below it the rRIM's own score (the consistency fit is skipped); "
                                                       "NaN when the model has no calibration"}),
}
#: The grids every output holds (meV): name → attributes.
GRIDS = {"Omega": {"units": "meV", "long_name": "boson energy Ω", "axis": "X"},
         "omega": {"units": "meV", "long_name": "optical energy ω (the model's grid)", "axis": "X"}}
#: What the input's own ω axis (``omega_input``) gets besides the input coordinate's attributes.
INPUT_GRID_ATTRS = {"long_name": "optical energy ω (the input's axis)", "axis": "X"}
#: The per-spectrum temperature variable is named ``temperature`` unless the spectra have a leading
#: dimension of that name: its index coordinate then stays, and the variable is named this.
TEMPERATURE_USED = "inversion_temperature"


#: Written on request: the calibrated band (``uncertainty``) and the impurity rate (``impurity``).
BAND_VARIABLES = {
    name: ("f4", ("Omega",), {"long_name": f"{side} bound of the calibrated uncertainty band of I²χ(Ω)", "units": "1"})
    for name, side in (("glue_lower", "lower"), ("glue_upper", "upper"))}
IMPURITY_VARIABLES = {"impurity_rate": ("f8", (), {
    "long_name": "impurity (ω-independent) scattering rate, estimated and removed before the inversion", "units": "meV",
    "comment": "included in scattering_rate_fit; see rrim.impurity for how well it is identified"})}


@dataclass(frozen=True)
class ArchiveOptions:
    """What to read and how; ``to_json()`` is what idempotent reprocessing compares."""

    var: str = "scattering_rate"
    dim: str = "omega"
    temperature_name: str = "temperature"
    temperature: float | None = None
    crop: bool = False
    smoothing_meV: float | None = None
    uncertainty: float | None = None  # coverage of the band (0.68 or 0.9); None: no band
    impurity: bool = False
    tf32: bool = False
    omega_units: str | None = None  # override the file's units (pint spellings, rrim.physics.units)
    rate_units: str | None = None
    temperature_units: str | None = None  # TF32 on CUDA: changes results at the 1e-3 level, so it is part of the identity

    def output_variables(self, lead: tuple = (), rate_units: str = "meV") -> dict:
        """The variables these options write for spectra with leading dimensions ``lead`` stored in
        ``rate_units``: :data:`OUTPUT_VARIABLES` and the requested extras (``temperature`` renamed
        :data:`TEMPERATURE_USED` when it names a leading dimension; the refit on the input's axis in
        ``rate_units``; the glue's ``ancillary_variables`` naming the flags and the band)."""
        out = {**OUTPUT_VARIABLES, **(BAND_VARIABLES if self.uncertainty is not None else {}),
               **(IMPURITY_VARIABLES if self.impurity else {})}
        dtype, core, attrs = out["scattering_rate_fit_input"]
        out["scattering_rate_fit_input"] = (dtype, core, {**attrs, "units": rate_units})
        dtype, core, attrs = out["glue"]
        band = " glue_lower glue_upper" if self.uncertainty is not None else ""
        out["glue"] = (dtype, core, {**attrs, "ancillary_variables": "flags" + band})
        if "temperature" in lead:
            out = {TEMPERATURE_USED if k == "temperature" else k: v for k, v in out.items()}
        return out

    def to_json(self) -> str:
        d = asdict(self)
        if not d["tf32"]:  # recorded only when on: outputs made before it was recorded stay current
            del d["tf32"]
        for key in ("omega_units", "rate_units", "temperature_units"):  # recorded only when given
            if d[key] is None:
                del d[key]
        return json.dumps({**d, "output_format": OUTPUT_FORMAT}, sort_keys=True)
