"""Model files and sessions: the ONNX model-file contract, loading and checking installed or own
models, and the onnxruntime sessions that run them."""
