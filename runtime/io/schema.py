"""The output schema: the variables an output holds (name → NetCDF dtype, core dimensions after the
leading ones, attributes), its format version, and :class:`ArchiveOptions` (what is read, which extras
are written)."""
from __future__ import annotations

import json
from dataclasses import Field, asdict, dataclass, field, fields
from numbers import Real
from typing import get_args, get_type_hints

import numpy as np

from rrim.inversion.flags import FLAGS
from rrim.inversion.temperatures import GRID_RATIO
from rrim.inversion.uncertainty import COVERAGES


OUTPUT_FORMAT = "3"  # 2: noise_estimate, ood_score, out_of_distribution flag, optional band and impurity;
# 3: coverage_untrained flag, scattering_rate_fit_input on the input's ω axis, inversion_temperature beside a
# temperature dimension, CF coordinates/ancillary_variables/axis/standard_name, input global attributes carried;
# every option recorded, named as the command line names it (temperature_var, smoothing)


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


def _option(default, help: str, **meta):
    """A field of :class:`ArchiveOptions` and what the command line and the accessor make of it: ``help``
    (it names the other options as the command line spells them), and optionally ``units`` (of a number;
    the command line's metavar), ``choices`` and ``greater_than`` (checked on construction)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class ArchiveOptions:
    """What to read and how: the one definition of the options of ``rrim invert``/``reprocess``/``check``
    (``--temperature-var`` for ``temperature_var``), of ``ds.rrim.invert()`` and of the ``options`` an output
    records; ``to_json()`` is what idempotent reprocessing compares. Values are checked (``TypeError`` or
    ``ValueError`` naming the option); numbers are stored as floats."""

    var: str = _option("scattering_rate", "Variable holding 1/τ.")
    dim: str = _option("omega", "Its ω dimension (with a units coordinate).")
    temperature: float | None = _option(None, "Temperature (in K, or in --temperature-units), overriding the file's.",
                                        units="K")
    omega_units: str | None = _option(None, "Units of the ω coordinate, overriding the file's (any energy, wavenumber or "
                                            "frequency unit pint reads: meV, eV, cm-1, 1/cm, cm^-1, THz, s-1…).")
    rate_units: str | None = _option(None, "Units of the scattering rates, overriding the file's (as --omega-units).")
    temperature_units: str | None = _option(None, "Units of the temperatures (K, mK, degC…), overriding the file's; "
                                                  "needed for a temperature stored without units.")
    temperature_var: str = _option("temperature", "Name of the temperature attribute, coordinate or variable.")
    crop: bool = _option(False, "Accept an ω range different from the model's (spectra flagged).")
    smoothing: float | None = _option(None, "Gaussian smoothing of the glue, σ in meV (off by default).", units="meV",
                                      greater_than=0.0)
    uncertainty: float | None = _option(None, "Also write glue_lower/glue_upper, the band that covers the true glue at "
                                              "this calibrated pointwise coverage (16 noise-resampled inversions per "
                                              "spectrum; needs the model's calibration).", choices=COVERAGES)
    impurity: bool = _option(False, "Estimate the impurity (constant) scattering rate per spectrum, remove it before "
                                    "inverting and write impurity_rate.")
    tf32: bool = _option(False, "Allow TF32 on CUDA (off by default; it changes results at the 1e-3 level, so it is "
                                "part of an output's identity).")

    def __post_init__(self):
        for f in fields(self):
            value, kind = getattr(self, f.name), option_type(f)
            if value is None and f.default is None:
                continue
            if kind is bool and isinstance(value, (bool, np.bool_)):
                value = bool(value)
            elif kind is float and isinstance(value, Real) and not isinstance(value, (bool, np.bool_)):
                value = float(value)
            elif kind is not str or not isinstance(value, str):
                raise TypeError(f"{f.name}: expected {kind.__name__}{' or None' if f.default is None else ''}, "
                                f"got {value!r}")
            choices, low = f.metadata.get("choices"), f.metadata.get("greater_than")
            if choices is not None and value not in choices:
                raise ValueError(f"{f.name}: expected one of {', '.join(map(str, choices))}, got {value!r}")
            if low is not None and not value > low:
                raise ValueError(f"{f.name}: expected a value > {low:g} {f.metadata.get('units', '')}, got {value!r}")
            object.__setattr__(self, f.name, value)

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
        """Every option by its name, and ``output_format``: sorted JSON."""
        return json.dumps({**asdict(self), "output_format": OUTPUT_FORMAT}, sort_keys=True)


def option_type(f: Field) -> type:
    """``bool``, ``float`` or ``str``: the type of :class:`ArchiveOptions` field ``f`` (None aside)."""
    return next(t for t in get_args(_HINTS[f.name]) or (_HINTS[f.name],) if t is not type(None))


_HINTS = get_type_hints(ArchiveOptions)
