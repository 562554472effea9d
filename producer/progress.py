"""Progress bars for long jobs: shown on a terminal, silent in pipes, logs and CI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(*, total: int | None, enabled: bool | None, unit: str) -> Iterator[tqdm]:
    """A tqdm bar; ``enabled=None`` means "only when stderr is a terminal"."""
    show = sys.stderr.isatty() if enabled is None else enabled
    with tqdm(total=total, disable=not show, unit=unit, unit_scale=True, file=sys.stderr) as bar:
        yield bar
