"""Installing streamproc the way ``make install`` does prints nothing but real problems."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.kafka import REPO_ROOT

pytestmark = pytest.mark.integration


def test_an_editable_install_prints_no_warning_banner(tmp_path: Path) -> None:
    """``pip install -e .`` into a fresh virtual environment succeeds and prints nothing: no
    setuptools banner about the editable install's import strategy."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
            "install", "-q", "--disable-pip-version-check", "--no-deps", "-e", str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output == ""
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import streamproc; print(streamproc.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert Path(check.stdout.strip()) == REPO_ROOT / "streamproc" / "__init__.py"
