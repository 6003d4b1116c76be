"""Integrations of rrim with xarray and Dask.

``import rrim.plugins`` registers the ``.rrim`` accessor on xarray Datasets and DataArrays
(``ds.rrim.invert()``, ``ds.rrim.forward()``); ``import rrim`` alone does not.
"""
from rrim.plugins import accessor  # noqa: F401  (registers the accessor)
