"""Lint and format are part of the test command, so CI (which runs the README's test command) checks them too."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_ruff_check_and_format_are_clean():
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"
