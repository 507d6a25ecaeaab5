"""The examples run as users run them, and print what the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_seed_demo_prints_the_seed_value():
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "0.4999391524251242"


def test_performance_report_example_writes_both_pages(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "performance_report.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == [str(tmp_path / "run.html"), str(tmp_path / "last.html")]
    both = (tmp_path / "run.html").read_text()
    assert "Compute 1 of 2" in both and "Compute 2 of 2" in both
    assert "Compute 1 of 1" in (tmp_path / "last.html").read_text()
