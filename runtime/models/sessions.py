"""The one factory for onnxruntime sessions: provider choice, threads, TF32, per-process cache.

``make_session(path, provider)`` with provider ``"auto"`` (CUDA only if the CUDA execution
provider is available *and* a session really loads with it, else CPU), ``"cpu"`` or ``"cuda"``
(:class:`ProviderUnavailable` when CUDA cannot run). Sessions are built from the file's bytes,
whose sha256 is part of the cache key, so a file changed on disk never reuses a stale session.
A :class:`Session` pickles as its description (path, sha256, provider, options) and reopens its
onnxruntime session lazily in the receiving process: onnxruntime sessions never travel.

Threads on the CPU: ``threads`` is how many CPUs a session may use. Its onnxruntime session runs
each call on one intra-op thread, and an :class:`~rrim.inversion.engine.Engine` runs up to
``threads`` calls at once (onnxruntime's ``run`` is thread-safe and releases the GIL): measured on
this model's thin convolutions, two concurrent one-thread calls gave ~2× the throughput of one
two-thread call (benchmarks/PERFORMANCE.md). On CUDA the calls run one after another.

The session cache (:data:`_CACHE`, with the record of CUDA failures) is the one piece of
process-wide state: engines come and go, the onnxruntime sessions they use stay built.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROVIDERS = ("auto", "cpu", "cuda")
_ORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

#: (pid, path, sha256, provider, tf32, threads) → onnxruntime session. The pid keeps a forked child
#: (multiprocessing, Dask workers) from using its parent's session, whose threads did not survive the fork.
_CACHE: dict[tuple, "object"] = {}
_LOCK = threading.Lock()
#: (pid, model path) whose CUDA session failed to load: 'auto' goes straight to CPU afterwards
_CUDA_FAILED: set[tuple] = set()


class ProviderUnavailable(RuntimeError):
    """The requested execution provider (``cuda``) cannot run on this machine."""


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask, so containers and taskset are honoured)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo), else what ``platform`` knows of it."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def onnxruntime():
    """The onnxruntime module, from whichever of its two wheels is installed (onnxruntime, a dependency of
    rrim, or onnxruntime-gpu in its place); an ImportError saying what to install when neither is."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA), "
                          "never both in one environment") from None
    return ort


def available_providers() -> list[str]:
    """onnxruntime's execution providers built into this installation (names as onnxruntime spells them)."""
    return list(onnxruntime().get_available_providers())


@dataclass(frozen=True)
class Session:
    """An onnxruntime session for one model file, provider and options; ``provider`` is the one that ran.

    ``run(feeds)`` returns the first output. Pickles as its description; the receiving process
    rebuilds (and caches) the onnxruntime session on first use.
    """

    path: str
    sha256: str
    requested: str
    provider: str
    tf32: bool
    threads: int

    def __reduce__(self):
        return _reopen, (self.path, self.sha256, self.requested, self.provider, self.tf32, self.threads)

    @property
    def ort_session(self):
        key = _key(self.path, self.sha256, self.provider, self.tf32, self.threads)
        sess = _CACHE.get(key)
        if sess is None:
            data = _read_verified(Path(self.path), self.sha256)
            sess = _build(data, self.provider, self.tf32, self.threads, self.path)
            with _LOCK:
                sess = _CACHE.setdefault(key, sess)
        return sess

    def input_names(self) -> list[str]:
        return [i.name for i in self.ort_session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the model on float32 ``feeds`` (name → array); returns the first output. On CUDA through
        I/O binding (:func:`run_bound`)."""
        if self.provider == "cuda":
            return run_bound(self.ort_session, feeds, "cuda")
        return self.ort_session.run(None, feeds)[0]


def run_bound(sess, feeds: dict[str, np.ndarray], device: str) -> np.ndarray:
    """One call with I/O binding: inputs copied to ``device`` once, the output allocated there by
    onnxruntime and copied back once (no per-node host round trips); returns the first output."""
    binding = sess.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(array))
    binding.bind_output(sess.get_outputs()[0].name, device)
    sess.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]


def _key(path: str, sha256: str, provider: str, tf32: bool, threads: int) -> tuple:
    return (os.getpid(), path, sha256, provider, tf32, threads)


def _reopen(path, sha256, requested, provider, tf32, threads) -> Session:
    return Session(path, sha256, requested, provider, tf32, threads)


def _read_verified(path: Path, sha256: str | None) -> bytes:
    from rrim.files import read_regular
    from rrim.models.loading import MAX_MODEL_BYTES

    try:
        data = read_regular(path, MAX_MODEL_BYTES)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{path}: cannot read model file ({getattr(e, 'strerror', None) or e})") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        from rrim.models.modelfile import ModelFileError

        raise ModelFileError(f"{path}: sha256 changed since the model was verified; refusing to run it")
    return data


def _session_options(threads: int):
    ort = onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep: a shared machine
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: onnxruntime's warnings would flood the 3 a.m. log
    return so


def _build(data: bytes, provider: str, tf32: bool, threads: int, source: str):
    """An ``ort.InferenceSession`` on ``provider`` ('cpu' or 'cuda') from a self-contained model's bytes
    (one whose tensors name external files is refused); raises on failure."""
    from rrim.models.onnx_bytes import check_self_contained

    check_self_contained(data, source)

    if provider == "cuda":
        providers = [("CUDAExecutionProvider", {"use_tf32": "1" if tf32 else "0"}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    # CPU: one intra-op thread per call, parallel calls (Engine.run) use the other CPUs
    intra = threads if provider == "cuda" else 1
    sess = onnxruntime().InferenceSession(data, sess_options=_session_options(intra), providers=providers)
    if provider == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
        # onnxruntime falls back to CPU silently when CUDA libraries or the driver are missing
        raise ProviderUnavailable(f"{source}: CUDAExecutionProvider did not load (onnxruntime fell back to CPU)")
    return sess


def make_session(model_path, provider: str = "auto", *, tf32: bool = False, threads: int | None = None,
                 sha256: str | None = None) -> Session:
    """A cached session for ``model_path`` on ``provider`` ('auto', 'cpu' or 'cuda').

    ``threads``: CPUs the session may use (default: those available to this process) — on the CPU as
    concurrent one-thread calls (:meth:`rrim.inversion.engine.Engine.run`), on CUDA as intra-op threads. ``tf32``: allow
    TF32 matrix products on CUDA (off by default: it changes results at the 1e-3 level).
    ``sha256``: if given, the file's bytes must match it (:class:`~rrim.models.modelfile.ModelFileError`).
    Raises :class:`ProviderUnavailable` for 'cuda' when CUDA cannot run; 'auto' then uses CPU.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider: expected one of {PROVIDERS}, got {provider!r}")
    if threads is None:
        threads = available_cpus()
    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads: expected an integer ≥ 1, got {threads!r}")
    threads = int(threads)
    path = Path(model_path).resolve()
    cuda_built = _ORT_NAMES["cuda"] in available_providers()
    if provider == "cuda" and not cuda_built:
        raise ProviderUnavailable(
            "provider 'cuda': this onnxruntime has no CUDAExecutionProvider "
            f"(available: {available_providers()}); replace onnxruntime by onnxruntime-gpu (README, GPU) or use --provider cpu")
    # 'auto' tries CUDA first unless this onnxruntime lacks it or it already failed in this process
    cuda_viable = cuda_built and (os.getpid(), str(path)) not in _CUDA_FAILED
    candidates = ["cuda", "cpu"] if provider == "auto" and cuda_viable else ["cpu"] if provider == "auto" else [provider]
    if sha256 is not None and _key(str(path), sha256, candidates[0], bool(tf32), threads) in _CACHE:
        # a cached session was built from bytes with this digest: no need to reread
        return Session(str(path), sha256, provider, candidates[0], bool(tf32), threads)
    data = _read_verified(path, sha256)
    digest = sha256 or sha256_bytes(data)
    for choice in candidates:
        key = _key(str(path), digest, choice, bool(tf32), threads)
        if key in _CACHE:
            return Session(str(path), digest, provider, choice, bool(tf32), threads)
        try:
            sess = _build(data, choice, bool(tf32), threads, str(path))
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            if choice != "cuda":
                raise
            if provider == "cuda":
                if isinstance(e, ProviderUnavailable):
                    raise
                raise ProviderUnavailable(f"provider 'cuda': session failed to load ({e})") from None
            _CUDA_FAILED.add((os.getpid(), str(path)))
            log.warning("%s: CUDA did not load (%s); running on CPU", path.name, e)
            continue
        with _LOCK:
            _CACHE.setdefault(key, sess)
        return Session(str(path), digest, provider, choice, bool(tf32), threads)
    raise ProviderUnavailable(f"{path}: no execution provider could load the model")  # unreachable for 'auto'


def clear_cache() -> None:
    """Drop every cached onnxruntime session of this process."""
    with _LOCK:
        _CACHE.clear()
        _CUDA_FAILED.clear()
