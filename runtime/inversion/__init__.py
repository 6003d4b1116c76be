"""Spectra in, glue out: the inversion engine, its quality flags, noise estimates, uncertainty bands
and their calibration, the per-spectrum regularization of noise-adaptive models, and batch tuning."""
