"""The RSS of a process that loads one model the way a worker's pool process does.

`measure_rss` runs this module in a fresh interpreter, which imports only what a worker imports
(the registry, the settings, the model loaders), so the figure is a worker's and not the
evaluation tooling's: run from `precision_eval` itself the child also carried scipy,
scikit-learn and pytrec_eval, about 90 MiB that no worker loads, in every precision's figure.
"""

from __future__ import annotations

import json
import subprocess
import sys

BATCH = 32
_MIB = 2**20


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / _MIB)


def measure_rss(model: str, precision: str, threads: int) -> tuple[float, float]:
    """(RSS after load and one batch, growth over a bare embedq process) in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-m", "embedq.ops.memory_probe", model, precision, str(threads)],
        check=True, capture_output=True, text=True,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    return figures["rss_mib"], figures["model_rss_mib"]


def _rss_probe(model: str, precision: str, threads: int) -> None:
    """Child side of `measure_rss`: check and load as a worker does, embed one batch, report."""
    from embedq.config.registry import Precision, load_registry
    from embedq.config.settings import load_settings
    from embedq.worker.models.loading import check_model, load_encoder

    settings = load_settings()
    registry = load_registry(settings.config_dir)
    before = _rss_mib()
    check_model(registry, model, precision, settings)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    encoder = load_encoder(registry, model, Precision(precision), settings, threads)
    encoder.encode_batch(["a first batch maps the weights that are read lazily"] * BATCH)
    after = _rss_mib()
    print(json.dumps({"rss_mib": after, "model_rss_mib": after - before}))


if __name__ == "__main__":
    _rss_probe(sys.argv[1], sys.argv[2], int(sys.argv[3]))
