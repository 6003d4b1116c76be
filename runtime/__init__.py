"""rrim: optical scattering rates → electron-boson glue functions I²χ(Ω).

Layers, each importing only those above it in this list (docs/ARCHITECTURE.md): :mod:`rrim.physics`
(the forward model), :mod:`rrim.solvers` (classical inversions), :mod:`rrim.models` (model files and
sessions), :mod:`rrim.inversion` (spectra → glue), :mod:`rrim.io` (archives on disk), :mod:`rrim.jobs`
(files → files), :mod:`rrim.cli`; :mod:`rrim.plugins` (xarray accessor, Dask) beside the jobs. All of
it is torch-free; training and ONNX export are in :mod:`rrim.export` (``pip install rrim[train]``).
The names below are the forward model's public API.
"""
__version__ = "0.1.0"

from rrim.physics.grids import Grid, boson_grid, default_boson_grid, default_omega_grid, omega_grid, uniform_grid
from rrim.physics.kernels import (KERNELS, FunctionKernel, MatrixKernel, get_kernel, register_kernel, shulga_kernel,
                                  allen_kernel)
from rrim.physics.operator import DEFAULT_H, DEFAULT_SCALE, DEFAULT_TEMPERATURE, ForwardOperator, dot_test
from rrim.physics.quantities import coupling_lambda, omega_log
from rrim.physics.units import CM1_PER_MEV, K_B_MEV_PER_K, kelvin_to_mev, to_mev, from_mev

__all__ = [
    "Grid", "boson_grid", "default_boson_grid", "default_omega_grid", "omega_grid", "uniform_grid",
    "KERNELS", "FunctionKernel", "MatrixKernel", "get_kernel", "register_kernel", "shulga_kernel", "allen_kernel",
    "DEFAULT_H", "DEFAULT_SCALE", "DEFAULT_TEMPERATURE", "ForwardOperator", "dot_test",
    "coupling_lambda", "omega_log", "CM1_PER_MEV", "K_B_MEV_PER_K", "kelvin_to_mev", "to_mev", "from_mev",
]
