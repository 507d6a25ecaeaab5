"""Checking results: how a result compares with the reference.

Every result a benchmark computes is compared with the result of Dask's ``sync`` scheduler
(:func:`compare`): tuples and lists part by part, everything else as arrays. A :class:`Check`
says ``equal``; ``close`` (``numpy.allclose`` with ``rtol=RELATIVE_TOLERANCE, atol=0``, the
largest relative difference kept); or ``mismatch``, which fails the run. :func:`worst` sums up
several checks (the parts of a result, or the runs of a scheduler).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RELATIVE_TOLERANCE = 1e-9
STATUSES = ("equal", "close", "mismatch")


@dataclass(frozen=True)
class Check:
    """How a result compares with the reference."""

    status: str
    max_relative_difference: float | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "mismatch"

    def __str__(self) -> str:
        if self.status == "equal":
            return "equal"
        parts = []
        if self.max_relative_difference is not None:
            parts.append(f"max relative difference {self.max_relative_difference:.3g}")
        if self.detail:
            parts.append(self.detail)
        label = "close" if self.status == "close" else "MISMATCH"
        return f"{label} ({'; '.join(parts)})" if parts else label


def worst(checks: Sequence[Check]) -> Check | None:
    if not checks:
        return None
    chosen = max(checks, key=lambda check: STATUSES.index(check.status))
    differences = [
        check.max_relative_difference
        for check in checks
        if check.max_relative_difference is not None
    ]
    return Check(chosen.status, max(differences, default=None), chosen.detail)


def compare(expected: Any, actual: Any) -> Check:
    """Compare a result with the reference: tuples and lists part by part, everything else as
    arrays (exactly, then within ``RELATIVE_TOLERANCE``)."""
    if isinstance(expected, tuple | list):
        if not isinstance(actual, tuple | list) or len(actual) != len(expected):
            return Check(
                "mismatch", detail=f"{type(actual).__name__} instead of {len(expected)} parts"
            )
        parts = [compare(left, right) for left, right in zip(expected, actual, strict=True)]
        return worst(parts) or Check("equal")
    expected_array, actual_array = np.asarray(expected), np.asarray(actual)
    if expected_array.shape != actual_array.shape:
        return Check(
            "mismatch", detail=f"shape {actual_array.shape} instead of {expected_array.shape}"
        )
    numeric = all(
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        for array in (expected_array, actual_array)
    )
    if not numeric:
        equal = np.array_equal(expected_array, actual_array)
        return Check("equal") if equal else Check("mismatch", detail="values differ")
    if np.array_equal(expected_array, actual_array, equal_nan=True):
        return Check("equal")
    difference = max_relative_difference(expected_array, actual_array)
    if np.allclose(actual_array, expected_array, rtol=RELATIVE_TOLERANCE, atol=0, equal_nan=True):
        return Check("close", difference)
    return Check("mismatch", difference)


def max_relative_difference(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest ``|actual - expected| / |expected|``; NaN in one array only counts as infinite."""
    dtype = np.result_type(expected, actual, np.float64)
    expected, actual = expected.astype(dtype), actual.astype(dtype)
    both_nan = np.isnan(expected) & np.isnan(actual)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(actual - expected) / np.abs(expected)
    relative = np.where((actual == expected) | both_nan, 0.0, relative)
    relative = np.where(np.isnan(relative), np.inf, relative)
    return float(relative.max()) if relative.size else 0.0
