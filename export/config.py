"""Training configuration: frozen dataclasses (the one source of truth for defaults), read from TOML.

A TOML file has up to four tables, each optional, each mapping onto one dataclass below:
``[model]`` → :class:`ModelConfig`, ``[data]`` → :class:`DataConfig`, ``[operator]`` →
:class:`OperatorConfig`, ``[training]`` → :class:`TrainingConfig`. Unknown keys and wrong types are
refused with a ``ValueError`` naming the key. Energies are in meV, temperatures in K. The configurations of
the shipped models and the experiments are in :data:`CONFIGS`.
"""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import numpy as np

from rrim.physics.grids import DEFAULT_BOSON, DEFAULT_OMEGA, uniform_grid
from rrim.physics.operator import DEFAULT_H, DEFAULT_SCALE, DEFAULT_TEMPERATURE, ForwardOperator
from rrim.physics.synthetic import DatasetSettings

#: The committed configurations (export/configs/, installed as rrim.export.configs).
CONFIGS = Path(__file__).parent / "configs"
MODEL_KINDS = ("rrim", "fcn", "cnn")
#: starts x_0 of the rRIM (:class:`rrim.export.nets.recurrent.RRIMSettings`)
X0_KINDS = ("zeros", "tikhonov", "prior")


@dataclass(frozen=True)
class ModelConfig:
    """Which network and its size. ``hidden``/``n_steps``/``x0``/``nonnegative`` are the rRIM's
    and ``regularization``/``correction_steps``/``context``/``global_width`` the rRIM's (see
    :class:`rrim.export.nets.recurrent.RRIMSettings`);
    ``width``/``depth`` the FCN's; ``channels``/``depth`` the CNN's."""

    kind: str = "rrim"
    hidden: int = 32
    n_steps: int = 15
    x0: str = "tikhonov"
    nonnegative: bool = True
    regularization: str = "fixed"
    correction_steps: int = 0
    context: int = 0
    global_width: int = 0
    width: int = 512
    depth: int = 3
    channels: int = 32

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model.kind: expected one of {MODEL_KINDS}, got {self.kind!r}")
        if self.context < 0 or (self.context and self.regularization != "adaptive"):
            raise ValueError(f"model.context: expected an integer ≥ 0, and 0 unless regularization = "
                             f"'adaptive', got {self.context!r}")
        if self.global_width < 0 or (self.global_width and self.regularization != "adaptive"):
            raise ValueError(f"model.global_width: expected an integer ≥ 0, and 0 unless regularization = "
                             f"'adaptive', got {self.global_width!r}")
        for name in ("hidden", "n_steps", "width", "depth", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: expected an integer ≥ 1, got {getattr(self, name)!r}")
        if self.x0 not in X0_KINDS or (self.x0 == "prior" and self.regularization != "adaptive"):
            raise ValueError(f"model.x0: expected one of {X0_KINDS} ('prior' only with regularization = 'adaptive'), "
                             f"got {self.x0!r}")
        if self.regularization not in ("fixed", "adaptive"):
            raise ValueError(f"model.regularization: expected 'fixed' or 'adaptive', got {self.regularization!r}")
        if self.correction_steps < 0 or (self.correction_steps and self.regularization != "adaptive"):
            raise ValueError(f"model.correction_steps: expected an integer ≥ 0, and 0 unless regularization = "
                             f"'adaptive', got {self.correction_steps!r}")


@dataclass(frozen=True)
class DataConfig:
    """Synthetic data (rrim.physics.synthetic): size ``n`` (split 0.8/0.1/0.1), noise level(s) σ, seed.

    ``sigma`` may be a list: each spectrum then gets one of the levels (drawn with the data seed),
    which is noise-robust training; validation and test splits get the same mixture.

    For the adaptive rRIM (drawn afresh for every batch): ``sigma_jitter_decades`` multiplies each
    σ > 0 by 10^u, u uniform in ±half that many decades; ``prior`` is 'gaussian_mixture' (the
    paper's) or 'realistic' (:func:`rrim.physics.glue_families.realistic_prior`); ``fine_factor`` > 1 computes
    the spectra from glue on a grid that many times finer than the model's Ω grid (no inverse
    crime); ``coverage`` 'partial' measures each batch on a mask of
    :func:`rrim.physics.glue_families.coverage_masks` ('full': every ω point).

    For the other models (the paper's rRIM, CNN, FCN: one seeded dataset): ``fresh_noise`` draws the
    training spectra's noise afresh for every batch on the clean spectra, σ drawn from ``sigma`` (as the
    adaptive rRIM gets it); validation and test keep their one draw.
    """

    n: int = 1000
    sigma: float | tuple[float, ...] = 0.0
    seed: int = 0
    sigma_jitter_decades: float = 0.0
    prior: str = "gaussian_mixture"
    fine_factor: int = 1
    coverage: str = "full"
    fresh_noise: bool = False

    def __post_init__(self):
        sigmas = self.sigma if isinstance(self.sigma, tuple) else (self.sigma,)
        if not sigmas or any(s < 0 for s in sigmas):
            raise ValueError(f"data.sigma: expected a noise level ≥ 0 or a non-empty list of them, got {self.sigma!r}")
        DatasetSettings(n=self.n, sigma=0.0, seed=self.seed)  # validates n and seed
        if self.prior not in ("gaussian_mixture", "realistic"):
            raise ValueError(f"data.prior: expected 'gaussian_mixture' or 'realistic', got {self.prior!r}")
        if self.coverage not in ("full", "partial"):
            raise ValueError(f"data.coverage: expected 'full' or 'partial', got {self.coverage!r}")
        if self.fine_factor < 1 or self.sigma_jitter_decades < 0:
            raise ValueError("data.fine_factor: expected an integer ≥ 1; data.sigma_jitter_decades: ≥ 0")

    @property
    def sigmas(self) -> tuple[float, ...]:
        return self.sigma if isinstance(self.sigma, tuple) else (self.sigma,)

    def dataset_settings(self) -> DatasetSettings:
        """The noiseless dataset settings (noise is added by the training data loader)."""
        return DatasetSettings(n=self.n, sigma=0.0, seed=self.seed)


@dataclass(frozen=True)
class GridConfig:
    """A uniform grid: ``n`` points from ``start`` to ``stop`` meV."""

    start: float
    stop: float
    n: int


@dataclass(frozen=True)
class OperatorConfig:
    """The forward operator: kernel, temperature (K), uniform ω and Ω grids (meV), scale s (meV).

    ``temperature_range`` = [low, high] K (empty: the one ``temperature``) trains a physics-as-input
    model over ``n_temperatures`` log-spaced temperatures, one drawn per batch (A(T), P(T) as inputs).
    """

    kernel: str = "shulga"
    temperature: float = DEFAULT_TEMPERATURE
    omega: GridConfig = field(default_factory=lambda: GridConfig(**DEFAULT_OMEGA))
    Omega: GridConfig = field(default_factory=lambda: GridConfig(**DEFAULT_BOSON))
    scale: float = DEFAULT_SCALE
    temperature_range: tuple[float, ...] = ()
    n_temperatures: int = 16

    def __post_init__(self):
        r = self.temperature_range
        if r and not (len(r) == 2 and 0 < r[0] < r[1]):
            raise ValueError(f"operator.temperature_range: expected [low, high] K with 0 < low < high, got {list(r)!r}")
        if self.n_temperatures < 2:
            raise ValueError(f"operator.n_temperatures: expected an integer ≥ 2, got {self.n_temperatures!r}")

    def training_temperatures(self) -> tuple[float, ...]:
        """The temperatures (K) the training draws from: log-spaced over the range, or the one temperature."""
        if not self.temperature_range:
            return (float(self.temperature),)
        return tuple(float(t) for t in np.geomspace(*self.temperature_range, self.n_temperatures))

    def build(self) -> ForwardOperator:
        return ForwardOperator(uniform_grid(self.omega.start, self.omega.stop, self.omega.n, name="omega"),
                               uniform_grid(self.Omega.start, self.Omega.stop, self.Omega.n, name="Omega"),
                               temperature=self.temperature, kernel=self.kernel, scale=self.scale)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimization: Adam(lr), batch size, epochs, early-stopping patience (epochs without a better
    validation loss), loss step weights w_t (empty: all 1), h of P, seed, an optional wall-clock
    budget in seconds (0: none), the gradient-norm clip (0: none) and the output folder.

    Learning-rate schedule: with ``lr_patience`` > 0 the rate is multiplied by ``lr_factor`` after
    that many epochs without a better validation MSE (reduce on plateau); training ends after
    ``patience`` such epochs, or when the rate falls below ``min_lr``. ``chunk_s`` > 0 ends a run
    after that many seconds *unfinished*: the state is saved in the output folder
    (``state.pt``) and the same command resumes it; only a finished run writes ``model.pt``.

    ``loss`` 'mse' is the paper's Σ_t MSE(x_t, x); 'relative' (adaptive rRIM) divides each spectrum's
    squared error by that of the Tikhonov start x_0 (plus 1e-4·mean x², detached), so that every
    noise level counts alike instead of the noisiest dominating.

    ``init_from``: a checkpoint (:func:`rrim.export.nets.checkpoints.save_checkpoint`, path relative to the
    working directory) whose weights start the run (warm start); layers it lacks keep their
    initialization, which must be only the rRIM's coarse or global path (they start at zero).

    ``min_epoch_steps`` > 0: an epoch has at least that many optimizer steps, going through the
    training split more than once (new permutations) where it has fewer batches, so that patience and
    the schedule count comparable training at every N (0: one pass, as before)."""

    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 10
    step_weights: tuple[float, ...] = ()
    h: float = DEFAULT_H
    seed: int = 0
    time_budget_s: float = 0.0
    clip_norm: float = 1.0
    output_dir: str = "runs/default"
    lr_patience: int = 0
    lr_factor: float = 0.5
    min_lr: float = 0.0
    chunk_s: float = 0.0
    loss: str = "mse"
    init_from: str = ""
    min_epoch_steps: int = 0

    def __post_init__(self):
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name}: expected an integer ≥ 1, got {getattr(self, name)!r}")
        for name in ("lr", "h"):
            if not getattr(self, name) > 0:
                raise ValueError(f"training.{name}: expected a number > 0, got {getattr(self, name)!r}")
        if self.loss not in ("mse", "relative"):
            raise ValueError(f"training.loss: expected 'mse' or 'relative', got {self.loss!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"training.lr_factor: expected a number in (0, 1), got {self.lr_factor!r}")
        for name in ("time_budget_s", "seed", "clip_norm", "lr_patience", "min_lr", "chunk_s", "min_epoch_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"training.{name}: expected a value ≥ 0, got {getattr(self, name)!r}")
        if any(w < 0 for w in self.step_weights):
            raise ValueError(f"training.step_weights: weights must be ≥ 0, got {self.step_weights!r}")


@dataclass(frozen=True)
class Config:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self):
        w = self.training.step_weights
        n = self.model.n_steps + (1 if self.model.correction_steps else 0)
        if self.model.kind == "rrim" and w and len(w) != n:
            raise ValueError(f"training.step_weights: expected {n} weights (model.n_steps, plus one for the "
                             f"corrected estimate with model.correction_steps), got {len(w)}")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists); :func:`config_from_dict` inverts it."""
        return _plain(asdict(self))

    def replace(self, **sections) -> "Config":
        """A copy with sections' fields replaced, e.g. ``replace(training={"seed": 1})``."""
        d = self.to_dict()
        for name, values in sections.items():
            if name not in d:
                raise ValueError(f"{name}: unknown configuration section; known: {sorted(d)}")
            d[name] = {**d[name], **values}
        return config_from_dict(d)


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _coerce(value, tp, key: str):
    """``value`` checked against the annotation ``tp`` (int, float, bool, str, tuples, unions, dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[-1])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if hasattr(tp, "__dataclass_fields__"):
        return _build(tp, value, key)
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}[tp]
    if not ok:
        raise ValueError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if tp is float else value


def _build(cls, table, key: str):
    if not isinstance(table, dict):
        raise ValueError(f"{key}: expected a table, got {type(table).__name__} {table!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        prefix = f"{key}." if key else ""
        raise ValueError(f"{prefix}{unknown[0]}: unknown configuration key; known in [{key or 'top level'}]: {sorted(known)}")
    args = {name: _coerce(v, hints[name], f"{key}.{name}" if key else name) for name, v in table.items()}
    return cls(**args)


def config_from_dict(d: dict) -> Config:
    """A :class:`Config` from nested plain dicts; refuses unknown keys and wrong types (``ValueError``)."""
    return _build(Config, d, "")


def load_config(path) -> Config:
    """Read a TOML configuration file (``ValueError`` naming the file and the bad key)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML ({e})") from None
    try:
        config = config_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return config
