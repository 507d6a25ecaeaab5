"""Checks of user arguments: a bad value fails at construction, with the valid range."""

from __future__ import annotations

import math
import numbers
import operator
import os
import shutil
import warnings
from typing import Any

from dask_serverless.errors import ConfigurationError


def check_integer(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an ``int`` in ``[low, high]``; a float is accepted only when whole."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(
            f"{name} must be a whole number between {low} and {high}, not {value!r}"
        )
    if isinstance(value, numbers.Integral):
        number = operator.index(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        number = int(float(value))
    else:
        raise ConfigurationError(
            f"{name} must be a whole number between {low} and {high}, not {value!r}"
        )
    if not low <= number <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, not {value!r}")
    return number


def check_number(
    name: str, value: object, low: float, high: float, exclusive: bool = False
) -> float:
    """``value`` as a ``float`` in ``[low, high]`` (``(low, high]`` when ``exclusive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{name} must be a number, not {value!r}")
    number = float(value)
    above_low = number > low if exclusive else number >= low
    if not (math.isfinite(number) and above_low and number <= high):
        bound = "above" if exclusive else "at least"
        raise ConfigurationError(
            f"{name} must be {bound} {low:g} and at most {high:g}, not {value!r}"
        )
    return number


def check_executable(name: str, path: object) -> str:
    """An executable file, given by path or found on ``PATH``."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"{name} must be the path of an executable, not {path!r}")
    text = os.fspath(path)
    found = shutil.which(text) if os.sep not in text else text
    if found is None or not (os.path.isfile(found) and os.access(found, os.X_OK)):
        raise ConfigurationError(f"{name} {text!r} is not an executable file")
    return found


def renamed_keywords(given: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """Values passed under former keyword names, under their new names (with a
    ``FutureWarning`` each); any other unknown keyword is a ``TypeError``, as Python's own."""
    unknown = sorted(set(given) - set(renames))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    renamed = {}
    for former, value in given.items():
        new = renames[former]
        warnings.warn(
            f"{former}= is deprecated, use {new}= (same meaning)", FutureWarning, stacklevel=3
        )
        renamed[new] = value
    return renamed
