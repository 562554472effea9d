"""The README keeps up with the code: every setting and every command is documented."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from embedq.cli.main import main
from embedq.config.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    missing = [f"EMBEDQ_{name.upper()}" for name in Settings.model_fields
               if f"`EMBEDQ_{name.upper()}`" not in README]
    assert not missing, f"README lacks {missing}"


def test_every_command_is_in_the_readme():
    missing = [name for name in main.commands if f"embedq {name}" not in README]
    assert not missing, f"README lacks {missing}"


def test_help_works_without_a_broker():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "routes" in result.output


def test_the_web_app_example_in_the_readme_is_the_tested_file():
    example = (Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py").read_text()
    assert example[example.index("from collections.abc"):] in README
