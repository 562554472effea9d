"""pyarrow, imported only by the jobs that read or write Parquet.

The producer stays light: ``import embedq.producer`` never imports pyarrow, and text, JSON
lines and CSV jobs writing ``.npy`` run without it. A job that needs it and does not find it
says which extra to install.
"""

from __future__ import annotations

from typing import Any

from embedq.config.errors import MissingExtraError


def require_pyarrow(purpose: str) -> Any:  # pyarrow ships no type information
    """The ``pyarrow`` module with ``pyarrow.parquet`` loaded, or `MissingExtraError`."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs pyarrow, which is not installed here; install the files extra: "
            "pip install 'embedq[files]'") from exc
    return pyarrow
