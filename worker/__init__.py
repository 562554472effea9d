"""The worker side: model loading, precision, batching, caches. The only part that imports torch,
and only when a real model is loaded."""
