"""The code stays within the project's flake8 rules (setup.cfg [flake8]; flake8 comes with `.[dev]`)."""
from pathlib import Path
import subprocess
import sys

PROJECT = Path(__file__).resolve().parents[1]


def test_flake8_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "flake8", "src", "benchmarks", "tests"], cwd=PROJECT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
