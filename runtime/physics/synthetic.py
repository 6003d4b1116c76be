"""Seeded synthetic glue functions and scattering-rate spectra (docs/ARCHITECTURE.md §2).

Glue functions x are rows on the Ω grid (n, n_Ω), dimensionless; spectra y = A x (n, n_ω) in meV
plus noise σ·max(y)·ε per spectrum. Every generation setting is a frozen dataclass recorded in the
dataset's attributes, so a NetCDF file states exactly how it was made.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rrim.files import make_temporary, replace_durably
from rrim.physics.grids import Grid
from rrim.physics.operator import ForwardOperator

SPLITS = ("train", "val", "test")
#: Noise levels σ (fraction of max y per spectrum) of the paper's datasets (docs/ARCHITECTURE.md §2).
NOISE_LEVELS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: Dataset sizes N of the paper's datasets (docs/ARCHITECTURE.md §2), split 0.8/0.1/0.1.
DATASET_SIZES = (100, 1000, 10000, 100000)


@dataclass(frozen=True)
class GlueSettings:
    """Gaussian-mixture glue functions: ranges are (low, high), drawn uniformly; energies in meV."""

    n_components: tuple[int, int] = (1, 4)
    centre: tuple[float, float] = (10.0, 350.0)
    width: tuple[float, float] = (5.0, 100.0)
    amplitude: tuple[float, float] = (0.1, 1.0)
    #: low-energy suppression 1 − exp(−(Ω/c)²) with c in meV (physical glue vanishes at Ω → 0).
    low_energy_cutoff: float = 5.0

    def __post_init__(self):
        for name in ("n_components", "centre", "width", "amplitude"):
            lo, hi = _pair(getattr(self, name), name)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name}: expected a finite range (low, high) with low ≤ high, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (lo, hi))
        lo, hi = self.n_components
        if int(lo) != lo or int(hi) != hi or lo < 1:
            raise ValueError(f"n_components: expected integers (low, high) with 1 ≤ low, got {self.n_components!r}")
        object.__setattr__(self, "n_components", (int(lo), int(hi)))
        if self.width[0] <= 0:
            raise ValueError(f"width: Gaussian widths must be > 0 meV, got {self.width!r}")
        if self.amplitude[0] < 0:
            raise ValueError(f"amplitude: amplitudes must be ≥ 0, got {self.amplitude!r}")
        if not (np.isfinite(self.low_energy_cutoff) and self.low_energy_cutoff >= 0):
            raise ValueError(f"low_energy_cutoff: expected a width ≥ 0 meV, got {self.low_energy_cutoff!r}")


def _pair(value, name: str) -> tuple:
    try:
        lo, hi = value
        return lo, hi
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a pair (low, high), got {value!r}") from None


@dataclass(frozen=True)
class DatasetSettings:
    """A synthetic dataset: size, noise level σ (fraction of max y per spectrum), seed and split."""

    n: int = 1000
    sigma: float = 0.0
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    glue: GlueSettings = field(default_factory=GlueSettings)

    def __post_init__(self):
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"n: dataset size must be a positive integer, got {self.n!r}")
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma: noise level must be ≥ 0, got {self.sigma!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed: expected an integer ≥ 0, got {self.seed!r}")
        if len(self.split) != 3 or min(self.split) < 0 or not np.isclose(sum(self.split), 1.0):
            raise ValueError(f"split: three non-negative fractions summing to 1 expected, got {self.split!r}")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "split", tuple(float(f) for f in self.split))

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSettings":
        """Inverse of ``dataclasses.asdict`` (lists from JSON become tuples)."""
        d = dict(d)
        glue = _settings(GlueSettings, d.pop("glue", {}), "glue")
        return _settings(cls, {**d, "glue": glue}, "settings")


def _settings(cls, d: dict, name: str):
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{name}: unknown settings {unknown}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def low_energy_factor(Omega: Grid, cutoff: float) -> np.ndarray:
    """1 − exp(−(Ω/c)²), shape (n_Ω,); 1 everywhere when c = 0."""
    if cutoff <= 0:
        return np.ones(len(Omega))
    return -np.expm1(-(Omega.values / cutoff) ** 2)


@dataclass(frozen=True)
class MixtureParameters:
    """Drawn Gaussian-mixture parameters of ``n`` glue functions with up to k_max components.

    ``n_components`` (n,); ``centre``, ``width`` (meV) and ``amplitude`` (n, k_max), where the
    amplitudes of the unused components (index ≥ n_components) are 0.
    """

    n_components: np.ndarray
    centre: np.ndarray
    width: np.ndarray
    amplitude: np.ndarray
    low_energy_cutoff: float

    @classmethod
    def draw(cls, n: int, rng: np.random.Generator, settings: GlueSettings = GlueSettings()) -> "MixtureParameters":
        """Draw ``n`` parameter sets uniformly within ``settings``' ranges."""
        s = settings
        k = rng.integers(s.n_components[0], s.n_components[1] + 1, size=n)
        kmax = s.n_components[1]
        centre = rng.uniform(*s.centre, size=(n, kmax))
        width = rng.uniform(*s.width, size=(n, kmax))
        amp = rng.uniform(*s.amplitude, size=(n, kmax)) * (np.arange(kmax)[None, :] < k[:, None])
        return cls(k, centre, width, amp, s.low_energy_cutoff)

    def evaluate(self, Omega: Grid) -> np.ndarray:
        """The glue functions on the Ω grid, shape (n, n_Ω), float64, ≥ 0."""
        w = Omega.values
        bumps = np.exp(-0.5 * ((w[None, None, :] - self.centre[..., None]) / self.width[..., None]) ** 2)
        return np.einsum("nk,nkj->nj", self.amplitude, bumps) * low_energy_factor(Omega, self.low_energy_cutoff)[None, :]


def gaussian_mixture(Omega: Grid, n: int, rng: np.random.Generator, settings: GlueSettings = GlueSettings()) -> np.ndarray:
    """``n`` random mixtures of Gaussians on the Ω grid, shape (n, n_Ω), float64, ≥ 0."""
    return MixtureParameters.draw(n, rng, settings).evaluate(Omega)


def add_noise(y: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """y + σ·max(y)·ε per spectrum (rows), ε ~ N(0, 1); returns a new array."""
    y = np.asarray(y, dtype=np.float64)
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma: noise level must be ≥ 0, got {sigma!r}")
    if sigma == 0:
        return y.copy()
    return y + sigma * np.max(np.abs(y), axis=-1, keepdims=True) * rng.standard_normal(y.shape)


def split_indices(n: int, fractions, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded disjoint, sorted index sets {'train', 'val', 'test'} covering range(n).

    Sizes are the rounded cumulative fractions, so they always add up to n.
    """
    perm = rng.permutation(n)
    cuts = np.rint(np.cumsum(fractions)[:2] * n).astype(int).clip(0, n)
    return {name: np.sort(part) for name, part in zip(SPLITS, np.split(perm, cuts))}


@dataclass
class SyntheticDataset:
    """Glue functions ``x`` (n, n_Ω), clean ``y_clean`` and noisy ``y`` (n, n_ω, meV), and the split."""

    operator: ForwardOperator
    settings: DatasetSettings
    x: np.ndarray
    y_clean: np.ndarray
    y: np.ndarray
    splits: dict[str, np.ndarray]

    def subset(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one split: 'train', 'val' or 'test'."""
        if name not in self.splits:
            raise ValueError(f"split: unknown split {name!r}; expected one of {SPLITS}")
        i = self.splits[name]
        return self.x[i], self.y[i]

    def attributes(self) -> dict:
        """Every generation setting, as NetCDF-safe attributes.

        ``settings_json`` and ``operator_json`` are exact (they rebuild the dataset); the flat
        ``sigma``, ``seed``, …, ``glue_centre`` copies are for people reading the header.
        """
        flat = {k: v for k, v in asdict(self.settings).items() if k != "glue"}
        flat.update({f"glue_{k}": v for k, v in asdict(self.settings.glue).items()})
        return {
            "title": "rrim synthetic glue functions and scattering rates",
            "generator": "rrim.physics.synthetic.make_dataset",
            "settings_json": json.dumps(asdict(self.settings)),
            "operator_json": json.dumps(self.operator.describe()),
            **{k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()},
            "temperature_K": self.operator.temperature, "kernel": self.operator.kernel.name,
            "scale_meV": self.operator.scale,
        }


def make_dataset(operator: ForwardOperator, settings: DatasetSettings = DatasetSettings()) -> SyntheticDataset:
    """Generate a seeded dataset: Gaussian-mixture glue, y = A x, noise, train/val/test split.

    Independent child streams of ``np.random.SeedSequence(seed)`` draw glue, noise and split, so
    changing σ leaves the glue functions and the split unchanged.
    """
    glue_rng, noise_rng, split_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(3))
    x = gaussian_mixture(operator.Omega, settings.n, glue_rng, settings.glue)
    y_clean = operator.forward(x)
    y = add_noise(y_clean, settings.sigma, noise_rng)
    return SyntheticDataset(operator, settings, x, y_clean, y, split_indices(settings.n, settings.split, split_rng))


def to_xarray(ds: SyntheticDataset):
    """The dataset as an ``xarray.Dataset`` (dims spectrum, omega, Omega; energies in meV)."""
    import xarray as xr

    split_code = np.zeros(ds.settings.n, dtype=np.int8)
    for code, name in enumerate(SPLITS):
        split_code[ds.splits[name]] = code
    out = xr.Dataset(
        {
            "glue": (("spectrum", "Omega"), ds.x, {"long_name": "glue function I²χ(Ω)", "units": "1"}),
            "scattering_rate": (("spectrum", "omega"), ds.y, {"long_name": "optical scattering rate 1/τ (noisy)", "units": "meV"}),
            "scattering_rate_clean": (("spectrum", "omega"), ds.y_clean, {"long_name": "noiseless 1/τ = A x", "units": "meV"}),
            "split": (("spectrum",), split_code, {"flag_values": np.arange(3, dtype=np.int8), "flag_meanings": " ".join(SPLITS)}),
        },
        coords={"omega": ("omega", ds.operator.omega.values, {"units": "meV", "long_name": "optical energy ω"}),
                "Omega": ("Omega", ds.operator.Omega.values, {"units": "meV", "long_name": "boson energy Ω"})},
        attrs=ds.attributes(),
    )
    out["temperature"] = ((), ds.operator.temperature, {"units": "K"})
    return out


def write_dataset(ds: SyntheticDataset, path) -> Path:
    """Write to NetCDF4 atomically and durably (a temporary beside ``path``, then
    :func:`rrim.files.replace_durably`)."""
    path = Path(path)
    tmp = make_temporary(path)
    try:
        to_xarray(ds).to_netcdf(tmp, engine="netcdf4")
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_dataset(path) -> SyntheticDataset:
    """Read a dataset written by :func:`write_dataset`, rebuilding operator and settings from its attributes."""
    import xarray as xr

    with xr.open_dataset(path, engine="netcdf4") as f:
        f.load()
    missing = [k for k in ("settings_json", "operator_json") if k not in f.attrs]
    missing += [k for k in ("glue", "scattering_rate", "scattering_rate_clean", "split") if k not in f.variables]
    if missing:
        raise ValueError(f"{path}: not an rrim synthetic dataset (lacks {missing})")
    settings = DatasetSettings.from_dict(json.loads(f.attrs["settings_json"]))
    operator = ForwardOperator.from_description(json.loads(f.attrs["operator_json"]))
    code = f["split"].values
    splits = {name: np.flatnonzero(code == i) for i, name in enumerate(SPLITS)}
    return SyntheticDataset(operator, settings, f["glue"].values, f["scattering_rate_clean"].values,
                            f["scattering_rate"].values, splits)
