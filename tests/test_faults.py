"""The fault campaign's seeded small version (benchmarks/faults.py --small), run as the
benchmark runs it: every count that must be zero is zero."""

from __future__ import annotations

import json
import sys

from conftest import ROOT, run


def campaign(media, part: str) -> dict:
    proc = run([sys.executable, "benchmarks/faults.py", "--small", "--parts", part, "--media", str(media)], ROOT)
    return json.loads(proc.stdout.splitlines()[-1])[part], proc.stderr


def test_fuzzed_configs_and_params_are_planned_or_refused_in_one_line(media):
    counts, problems = campaign(media, "fuzz")
    assert counts["mutations"] == counts["accepted"] + counts["refused_one_line"] + counts["refused_unclear"] \
        + counts["tracebacks"] + counts["hung"] == 24
    assert counts["refused_unclear"] == counts["tracebacks"] == counts["hung"] == counts["injections"] == 0, problems
