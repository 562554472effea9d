"""The scaling commands on the command line: lazy imports, and options that do not mix.

`embedq` imports no prometheus_client before a worker sets up its multiprocess mode: a client
imported earlier counts per process, and the worker's /metrics would miss its pool's texts (the
autoscale, k8s and probe commands keep their heavy imports lazy)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from embedq.cli.main import main


def test_the_command_line_imports_neither_prometheus_client_nor_yaml():
    code = ("import sys, embedq.cli.main; "
            "print('prometheus_client' in sys.modules, 'yaml' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False False"  # PyYAML too: only the worker extra has it


def test_up_refuses_options_that_do_not_mix_with_autoscale():
    result = CliRunner().invoke(main, ["up", "--autoscale", "-c", "2"])
    assert result.exit_code == 2
    assert "--concurrency does not apply with --autoscale" in result.output
    result = CliRunner().invoke(main, ["up", "--cores", "2"])
    assert result.exit_code == 2
    assert "add --autoscale" in result.output
