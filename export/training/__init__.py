"""Training: the loop, its resumable state and prediction (:mod:`~rrim.export.training.loop`), and
``rrim train`` (:mod:`~rrim.export.training.command`, click only)."""
