"""``python -m embedq.cli``: the same as the ``embedq`` command."""

from embedq.cli.main import run

run()
