"""What the benchmarks report of repeated measurements: the median, and every run."""

from __future__ import annotations

import statistics


def median_and_runs(name: str, values: list[float], digits: int) -> dict:
    """`{name: median, name_runs: [each run]}`, rounded to `digits`."""
    return {name: round(statistics.median(values), digits), f"{name}_runs": [round(v, digits) for v in values]}
