"""The deploy progress line: rewritten in place on a terminal, one line per step elsewhere."""

from __future__ import annotations

import io
import time

from dask_serverless import _progress
from dask_serverless._progress import DeployProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_one_line_rewritten_while_a_step_lasts(monkeypatch):
    monkeypatch.setattr(_progress, "REDRAW_SECONDS", 0.05)
    terminal = Terminal()
    progress = DeployProgress("LambdaCluster ds-1", stream=terminal)
    progress.step("creating the role")
    time.sleep(0.3)
    progress.step("creating the bucket")
    progress.finish("ready")
    text = terminal.getvalue()
    # Each drawing goes back to the start of the line and clears it; only the end has a newline.
    assert text.count("\n") == 1 and text.endswith(" s\n")
    drawings = [part for part in text.split("\r\x1b[K") if part]
    role = [part for part in drawings if "[1] creating the role" in part]
    assert len(role) >= 3, drawings  # redrawn while the step lasted
    assert any("[2] creating the bucket" in part for part in drawings)
    assert drawings[-1].startswith("LambdaCluster ds-1: ready in ")
    # The redrawing thread stopped with the start.
    assert progress._redraw is not None and not progress._redraw.is_alive()


def test_elsewhere_each_step_is_one_line_and_disabled_shows_nothing():
    stream = io.StringIO()
    progress = DeployProgress("LambdaCluster ds-2", stream=stream)
    progress.step("creating the role")
    progress.step("creating the bucket")
    progress.finish("failed")
    lines = stream.getvalue().splitlines()
    assert lines[:2] == [
        "LambdaCluster ds-2: creating the role",
        "LambdaCluster ds-2: creating the bucket",
    ]
    assert lines[2].startswith("LambdaCluster ds-2: failed in ") and len(lines) == 3
    quiet = io.StringIO()
    progress = DeployProgress("LambdaCluster ds-3", enabled=False, stream=quiet)
    progress.step("creating the role")
    progress.finish("ready")
    assert quiet.getvalue() == ""
    assert [text for text, _ in progress.steps] == ["creating the role"]


def test_a_broken_stream_does_not_stop_the_start():
    stream = io.StringIO()
    stream.close()
    progress = DeployProgress("LambdaCluster ds-4", stream=stream)
    progress.step("creating the role")
    progress.finish("ready")
    assert not progress.enabled
