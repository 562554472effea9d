"""Model loading and precision: where a model's files are, what computes it here, and why.

The rest of the worker sees a model only through the `Encoder` protocol (`encoder.py`):
count tokens, encode one batch. Encoders: sentence-transformers on torch (`torch_encoder`),
ONNX Runtime fp32 or int8 graphs (`onnx_encoder`, built by `onnx_export` / `onnx_fusion`) and
the deterministic hashing model (`hashing_encoder`). Which one serves a (model, precision) on
this CPU is measured and cached by `selection` (`cpu`, `probe`, `decision`, `fallback`).
"""
