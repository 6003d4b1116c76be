"""The forward model, torch-free: units, grids, kernels, the operator A (and A/s, P, its SVD), derived
quantities (λ, ω_ln), the impurity term, and the synthetic glue and spectra drawn from it."""
