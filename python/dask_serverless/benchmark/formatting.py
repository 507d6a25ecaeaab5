"""How the harness writes numbers: ``-`` for a value that was not measured.

Shared by the console lines of the measurements, the targets and the report.
"""

from __future__ import annotations


def format_number(value: float | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def describe_zero_work(measured: dict) -> str:
    """One line for what a zero-work run of the engine returned."""
    return (
        f"{format_number(measured.get('tasks'), ',')} tasks in "
        f"{format_number(measured.get('batches'), ',')} batches, plan "
        f"{format_number(measured.get('plan_seconds'), '.3f')} s, protocol "
        f"{format_number(measured.get('protocol_seconds'), '.3f')} s, "
        f"{format_number(measured.get('microseconds_per_task'), '.2f')} µs per task"
    )
