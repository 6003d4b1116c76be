"""Compare two rrim output archives (the host's and a container's run of the same job).

    python compare_outputs.py REFERENCE.nc OTHER.nc      # JSON on stdout
    python compare_outputs.py --summary RESULT.json      # that JSON in one line

Equal means: the same variables, dimensions and coordinates; floating-point variables equal to
float32 precision (max |a − b| ≤ 8 ε₃₂ · max |a| per variable, ε₃₂ = 2⁻²³); other variables
identical; the same attributes on every variable and the same global (provenance) attributes apart
from those that name the run rather than the result (:data:`RUN_ATTRIBUTES`). Prints a JSON
summary on stdout; exit status 0 if equal, 1 if not, 2 on bad arguments.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import xarray as xr

#: Global attributes allowed to differ: where and when the job ran, and on which execution provider.
RUN_ATTRIBUTES = frozenset({"history", "date_created", "execution_provider", "host", "hostname"})
#: Tolerance in units of float32's machine epsilon, relative to the variable's largest magnitude.
EPS_FACTOR = 8


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) | ((a != a) & (b != b))))  # NaN equals NaN


def compare(ref: xr.Dataset, other: xr.Dataset) -> dict:
    """Differences between ``ref`` and ``other`` as a JSON-able dict with ``equal`` (bool)."""
    problems: list[str] = []
    variables: dict[str, dict] = {}
    if dict(ref.sizes) != dict(other.sizes):
        problems.append(f"dimensions differ: {dict(ref.sizes)} vs {dict(other.sizes)}")
    names_ref, names_other = set(ref.variables), set(other.variables)
    if names_ref != names_other:
        problems.append(f"variables differ: only in reference {sorted(names_ref - names_other)}, "
                        f"only in other {sorted(names_other - names_ref)}")
    for name in sorted(names_ref & names_other, key=str):
        a, b = ref[name], other[name]
        if a.dims != b.dims or a.shape != b.shape:
            problems.append(f"{name}: dims/shape {a.dims}{a.shape} vs {b.dims}{b.shape}")
            continue
        if not _same_attrs(a.attrs, b.attrs):
            problems.append(f"{name}: attributes differ")
        if np.issubdtype(a.dtype, np.floating):
            x, y = a.values.astype(np.float64), b.values.astype(np.float64)
            scale = float(np.nanmax(np.abs(x))) if np.any(np.isfinite(x)) else 0.0
            diff = float(np.nanmax(np.abs(x - y))) if x.size else 0.0
            tol = EPS_FACTOR * float(np.finfo(np.float32).eps) * scale
            ok = bool(np.array_equal(np.isnan(x), np.isnan(y))) and diff <= tol
            variables[str(name)] = {"max_abs_diff": diff, "max_abs": scale, "tolerance": tol, "equal": ok}
        else:
            ok = _same(a.values, b.values)
            variables[str(name)] = {"identical": ok, "equal": ok}
        if not ok:
            problems.append(f"{name}: values differ")
    differing = sorted(k for k in set(ref.attrs) | set(other.attrs)
                       if k not in RUN_ATTRIBUTES and not _same_value(ref.attrs.get(k), other.attrs.get(k)))
    problems += [f"global attribute {k!r}: {ref.attrs.get(k)!r} vs {other.attrs.get(k)!r}" for k in differing]
    return {"equal": not problems, "problems": problems, "variables": variables,
            "ignored_attributes": {k: [str(ref.attrs.get(k)), str(other.attrs.get(k))]
                                   for k in sorted(RUN_ATTRIBUTES) if k in ref.attrs or k in other.attrs}}


def _same_value(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b
    return _same(a, b)


def _same_attrs(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(_same_value(a[k], b[k]) for k in a)


def summary(result: dict) -> str:
    """One line for a report: the glue's largest difference and what else was compared."""
    if not result["equal"]:
        return "; ".join(result["problems"])
    g = result["variables"].get("glue", {})
    n_equal = sum(v["equal"] for v in result["variables"].values())
    return (f"glue max|Δ| = {g.get('max_abs_diff', float('nan')):.3g} (tolerance {g.get('tolerance', float('nan')):.3g}); "
            f"{n_equal}/{len(result['variables'])} variables equal; global attributes equal "
            f"apart from {', '.join(result['ignored_attributes']) or 'none'}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--summary":
        with open(argv[1]) as f:
            print(summary(json.load(f)))
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with xr.open_dataset(argv[0], decode_cf=False) as ref, xr.open_dataset(argv[1], decode_cf=False) as other:
        result = compare(ref.load(), other.load())
    result.update(reference=argv[0], other=argv[1])
    print(json.dumps(result, indent=1))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
