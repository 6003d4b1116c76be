"""Training and ONNX export of the rRIM and its baselines (needs ``pip install rrim[train]``).

Subpackages, imports flowing one way (recipes → training, onnx → nets, data → :mod:`rrim.export.config`):
:mod:`rrim.export.nets` (the PyTorch networks and their checkpoints), :mod:`rrim.export.data` (training
data), :mod:`rrim.export.training` (the training loop, ``rrim train``), :mod:`rrim.export.onnx` (ONNX files,
``rrim export``), :mod:`rrim.export.recipes` (the shipped models, the experiments, ``rrim experiments``);
:mod:`rrim.export.commands` collects the click verbs. Importing a package does not import torch; the
modules that train, export or evaluate do. The runtime never imports any of it but the commands.
"""
