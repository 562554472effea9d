"""Model loading and precision: where a model's files are, how it is placed and run.

The rest of the worker sees a model only through the `Encoder` protocol (`encoder.py`):
count tokens, encode one batch. Backends: sentence-transformers on torch (`torch_encoder`),
ONNX Runtime int8 (`onnx_encoder`) and the deterministic hashing model (`hashing_encoder`).
"""
