"""Options several commands share, and the settings and registry they read, defined once."""

from __future__ import annotations

import click

from embedq.config.registry import Registry, load_registry
from embedq.config.settings import Settings, load_settings

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON instead of a table.")


def context() -> tuple[Settings, Registry]:
    """This process's settings (``EMBEDQ_*``) and the registry of their config folder."""
    settings = load_settings()
    return settings, load_registry(settings.config_dir)
