"""Training and ONNX export of the rRIM and its baselines (needs ``pip install rrim[train]``).

Importing this package does not import torch; its submodules ``nets``, ``training`` and
``onnx_export`` do.
"""
