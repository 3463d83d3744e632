"""`masnn inspect` on bad input: exit code 2 and one 'error:' line naming the file, never a traceback;
a truncated recording is still inspected (exit 0) with one 'warning:' line."""
from __future__ import annotations

import json
import subprocess
import sys

import aedat_test_writers as aw
import numpy as np
import pytest


def inspect(path, *options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", "inspect", str(path), *options],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", aw.BAD_FILES)
def test_bad_input_exits_2_with_one_error_line(tmp_path, case):
    path, problem = aw.BAD_FILES[case](tmp_path)
    result = inspect(path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert problem in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("cut_kind", ["mid-event", "inside the packet header"])
def test_truncated_aedat31_is_inspected_with_one_warning(tmp_path, cut_kind):
    path, _, _, t, _ = aw.truncated_aedat31(tmp_path, cut_kind)
    result = inspect(path, "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(result.stderr.splitlines()) == 1
    assert str(path) in result.stderr and "ends inside an AEDAT 3.1 packet" in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["events"], summary["first_t_us"], summary["last_t_us"]) == (len(t), t[0], t[-1])
    assert (summary["format"], summary["sensor"]) == ("AEDAT 3.1", "128x128")


def test_truncated_aedat2_is_inspected_with_one_warning(tmp_path):
    k = np.arange(300)
    path = tmp_path / "cut.aedat"
    aw.write_aedat2(path, aw.dvs128_address(k % 128, k % 100, k % 2), 500 + 4 * k, cut=5)
    result = inspect(path, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(path) in lines[0]
    summary = json.loads(result.stdout)
    assert (summary["events"], summary["last_t_us"], summary["format"]) == (299, 500 + 4 * 298, "AEDAT 2.0")


def test_truncated_aedat4_is_inspected_with_one_warning(tmp_path):
    k = np.arange(2000)
    t = 1_700_000_000_000_000 + 100 * k
    full, cut = tmp_path / "full.aedat4", tmp_path / "cut.aedat4"
    events = {"t": t, "x": k % 320, "y": k % 240, "p": k % 2}
    # four packets, uncompressed: salvaged with or without liblz4
    aw.write_dv(full, events, "DVXplorer", (320, 240), breaks=(500, 1000, 1500), compression="NONE")
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 5])
    result = inspect(cut, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {cut}: ") and "cut short" in lines[0], result.stderr
    summary = json.loads(result.stdout)
    assert summary["events"] in (500, 1000, 1500)
    assert (summary["first_t_us"], summary["last_t_us"]) == (t[0], t[summary["events"] - 1])
    assert (summary["format"], summary["sensor"], summary["camera"]) == ("AEDAT 4.0", "320x240", "DVXplorer")
