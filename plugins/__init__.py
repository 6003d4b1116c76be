"""Integrations of rrim with xarray and Dask."""
