"""rrim: optical scattering rates → electron-boson glue functions I²χ(Ω).

The forward model (kernels, grids, units, the matrix A and the preconditioner P) lives here and
is torch-free; training and ONNX export are in :mod:`rrim.export` (``pip install rrim[train]``).
"""
from .grids import Grid, boson_grid, default_boson_grid, default_omega_grid, omega_grid, uniform_grid
from .kernels import KERNELS, FunctionKernel, MatrixKernel, get_kernel, register_kernel, shulga_kernel, allen_kernel
from .operator import DEFAULT_H, DEFAULT_SCALE, DEFAULT_TEMPERATURE, ForwardOperator
from .quantities import coupling_lambda, omega_log
from .units import CM1_PER_MEV, K_B_MEV_PER_K, kelvin_to_mev, to_mev, from_mev

__version__ = "0.1.0"

__all__ = [
    "Grid", "boson_grid", "default_boson_grid", "default_omega_grid", "omega_grid", "uniform_grid",
    "KERNELS", "FunctionKernel", "MatrixKernel", "get_kernel", "register_kernel", "shulga_kernel", "allen_kernel",
    "DEFAULT_H", "DEFAULT_SCALE", "DEFAULT_TEMPERATURE", "ForwardOperator",
    "coupling_lambda", "omega_log", "CM1_PER_MEV", "K_B_MEV_PER_K", "kelvin_to_mev", "to_mev", "from_mev",
]
