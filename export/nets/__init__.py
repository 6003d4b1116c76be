"""The PyTorch networks: the rRIM (:mod:`~rrim.export.nets.recurrent`), the FCN/CNN baselines
(:mod:`~rrim.export.nets.baselines`), and their checkpoint files (:mod:`~rrim.export.nets.checkpoints`)."""
