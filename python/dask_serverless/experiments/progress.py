"""The progress line of an experiment, on standard error: ``runs 3/20, eta 0:41``.

``runs`` counts timed runs (warm-ups are not runs of the tables' figures); the estimate of the
time left counts every compute, warm-ups included, at the mean pace so far (cluster starts
included). On a terminal the line is rewritten in place; elsewhere (a log, a pipe) each update
is a line of its own, so that nothing is lost to carriage returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``0:41``, ``12:03``, ``1:02:03``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, seconds_left = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds_left:02d}"
    return f"{minutes}:{seconds_left:02d}"


class Progress:
    """Counts computes and timed runs; writes the line after each (when enabled)."""

    def __init__(
        self,
        timed_runs: int,
        computes: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.timed_runs = timed_runs
        self.computes = computes
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock or time.monotonic
        self._started = self._clock()
        self.runs_done = 0
        self.computes_done = 0
        self._width = 0
        self._in_place = enabled and self.stream.isatty()

    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far; None before the first compute."""
        if not self.computes_done:
            return None
        elapsed = self._clock() - self._started
        return elapsed / self.computes_done * (self.computes - self.computes_done)

    def line(self, what: str = "") -> str:
        eta = self.eta_seconds()
        text = f"runs {self.runs_done}/{self.timed_runs}, eta "
        text += "-" if eta is None else format_duration(eta)
        return f"{text} ({what})" if what else text

    def advance(self, timed: bool, what: str = "") -> None:
        """One compute done: a timed run, or a warm-up."""
        self.computes_done += 1
        if timed:
            self.runs_done += 1
        self.show(what)

    def show(self, what: str = "") -> None:
        if not self.enabled:
            return
        text = self.line(what)
        if self._in_place:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the line rewritten in place."""
        if self._in_place and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
