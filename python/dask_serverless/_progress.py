"""The deploy progress line: what a cluster's start is doing, and for how long.

Starting a ``LambdaCluster`` takes from seconds (a cached package, a warm account) to minutes
(a first package build, IAM's propagation of a new role, a large package to upload): the user
sees each step as it begins and the time spent so far. On a terminal one line is rewritten in
place (every ``REDRAW_SECONDS`` while a step lasts, so that a long wait visibly moves); elsewhere
(a log file, a notebook's captured stream) each step is one line, written once. The last line
says how long the whole start took. ``LambdaCluster(progress=False)`` shows nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

#: How often the line is rewritten on a terminal while a step lasts.
REDRAW_SECONDS = 0.5


class DeployProgress:
    """Shows the steps of one start on ``stream`` (standard error by default)."""

    def __init__(self, title: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.title = title
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _is_terminal(self.stream)
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._redraw: threading.Thread | None = None

    def step(self, text: str) -> None:
        """A new step begins."""
        with self._lock:
            self.steps.append((text, time.monotonic()))
            if not self.enabled:
                return
            if self.interactive:
                self._draw()
                if self._redraw is None:
                    self._redraw = threading.Thread(
                        target=self._keep_drawing, name="dask-serverless-deploy", daemon=True
                    )
                    self._redraw.start()
            else:
                self._write(f"{self.title}: {text}\n")

    def finish(self, text: str) -> None:
        """The start is over (``text`` says how it ended); the line is left on the screen."""
        self._stop_drawing()
        if not self.enabled:
            return
        line = f"{self.title}: {text} in {time.monotonic() - self.started:.1f} s"
        if self.interactive:
            self._write(f"\r\x1b[K{line}\n")
        else:
            self._write(f"{line}\n")

    def _keep_drawing(self) -> None:
        while not self._stopped.wait(REDRAW_SECONDS):
            with self._lock:
                self._draw()

    def _stop_drawing(self) -> None:
        self._stopped.set()
        if self._redraw is not None and self._redraw is not threading.current_thread():
            self._redraw.join()

    def _draw(self) -> None:
        text, began = self.steps[-1]
        now = time.monotonic()
        self._write(
            f"\r\x1b[K{self.title}: [{len(self.steps)}] {text} ({now - began:.1f} s; "
            f"{now - self.started:.1f} s in all)"
        )

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stream must not stop the start.
            self.enabled = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
