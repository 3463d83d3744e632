"""The fuzzer's CI share: seeded corruptions of every format through `masnn inspect`, `frames` and `classify`, each
with a time limit; no run may crash, hang, blow up memory, print a traceback, print more than its one line, or read a
value that is wrong on purpose without a word. The long run is `masnn bench fuzz` (see the README)."""
from __future__ import annotations

import pytest
from real_data import REAL_DATA

from masnn.bench.fuzz import GOOD, Case, outcome, run_fuzz


def test_outcomes_are_sorted_as_a_user_sees_them():
    case = Case("npy", "x = 65541", "/tmp/bad.npy", "inspect", expect_fault=True)
    assert outcome(case, "hang", None, "") == "hang"
    assert outcome(case, "died", -11, "") == "crash"
    assert outcome(case, "died", -9, "") == "memory"
    assert outcome(case, "done", 1, "Traceback (most recent call last):\n  ...\nValueError: x") == "traceback"
    assert outcome(case, "done", 2, "error: /tmp/bad.npy: x = 65541 does not fit int16\n") == "refused"
    assert outcome(case, "done", 2, "error: x does not fit int16\n") == "unclean"  # no file named
    assert outcome(case, "done", 2, "warning: /tmp/bad.npy: cut\nerror: /tmp/bad.npy: no events\n") == "unclean"
    assert outcome(case, "done", 0, "warning: /tmp/bad.npy: 3 events dropped\n") == "salvaged"
    assert outcome(case, "done", 0, "") == "silently wrong"
    assert outcome(Case("npy", "flip", "/tmp/x.npy", "inspect", False), "done", 0, "") == "read"
    assert outcome(case, "done", 0, "ERROR: event type not recognised: 0x7.\n") == "unclean"


@pytest.mark.parametrize("command", ["inspect", "frames", "select", "classify"])
def test_corrupt_recordings_never_crash_hang_or_lie(command):
    real = REAL_DATA if REAL_DATA.is_dir() else None
    result = run_fuzz(per_kind=1, commands=(command,), seed=11, real=real, timeout=60.0)
    bad = [f"{r['outcome']}: {r['seed']} {r['mutation']}: {r['stderr']}" for r in result["cases"] if r["outcome"] not in GOOD]
    assert result["runs"] >= 40
    assert not bad, "\n".join(bad)


def test_every_format_is_fuzzed(tmp_path):
    from masnn.bench.fuzz import make_seeds
    from masnn.datasets.io.readers import detect_format

    seeds = make_seeds(tmp_path, REAL_DATA if REAL_DATA.is_dir() else None)
    formats = {detect_format(path) for path in seeds.values()}
    assert {"AEDAT 4.0", "AEDAT 3.1", "numpy .npy", "numpy .npz", "text t x y p"} <= formats
    if REAL_DATA.is_dir():
        assert {"AEDAT 2.0", "Prophesee"} <= formats
