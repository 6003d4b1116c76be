"""Training data: per-batch draws for the noise-adaptive rRIM (:mod:`~rrim.export.data.adaptive`), one
seeded dataset for the paper's rRIM and the baselines (:mod:`~rrim.export.data.fixed`)."""
