"""ONNX files of trained rRIMs: export, checks and golden files (:mod:`~rrim.export.onnx.export`),
``rrim export`` (:mod:`~rrim.export.onnx.command`, click only), and FLOP counts of a graph
(:mod:`~rrim.export.onnx.flops`)."""
