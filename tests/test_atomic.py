"""atomic_path: the final name appears only complete, a temporary never outlives its writer for long: removed on
any exit Python sees, and a killed writer's leftover removed by the next write in that folder, never a live one's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from masnn.datasets.io import writers
from masnn.datasets.io.writers import atomic_path

WRITER = r"""
import sys, threading, time
from masnn.datasets.io.writers import atomic_path
folder, how = sys.argv[1], sys.argv[2]

def write():
    with atomic_path(folder + "/out.bin") as temporary:
        temporary.write_bytes(b"half")
        print("writing", flush=True)
        if how == "exit":
            sys.exit(3)
        time.sleep(60)

if how == "daemon":  # the interpreter exits while a daemon thread is inside the block
    threading.Thread(target=write, daemon=True).start()
    time.sleep(0.5)
else:
    write()
"""


def temporaries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(folder, pid: int, host: str = writers._HOST, stem: str = "last", suffix: str = ".pt"):
    path = folder / f".{stem}.masnn-{host}-{pid}-7.tmp{suffix}"
    path.write_bytes(b"torn")
    return path


def test_the_final_name_appears_only_complete(tmp_path):
    target = tmp_path / "frames.npy"
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"complete")
        assert not target.exists() and temporary.parent == tmp_path and temporary.suffix == ".npy"
    assert target.read_bytes() == b"complete" and temporaries(tmp_path) == []


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SystemExit])
def test_a_failed_block_leaves_no_temporary_and_the_old_file(tmp_path, error):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise error()
    assert target.read_bytes() == b"old" and temporaries(tmp_path) == []


def test_a_dead_writers_temporary_goes_with_the_next_write_in_that_folder(tmp_path):
    pid = dead_pid()
    stale = [leftover(tmp_path, pid), tmp_path / f".frames.{pid}.140245934581568.tmp.npy"]  # and the older name
    stale[1].write_bytes(b"torn")
    with atomic_path(tmp_path / "best.pt") as temporary:
        temporary.write_bytes(b"new")
    assert temporaries(tmp_path) == [] and (tmp_path / "best.pt").exists()


def test_a_live_writers_temporary_is_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = leftover(tmp_path, sleeper.pid)
        fresh_foreign = leftover(tmp_path, dead_pid(), host="0badc0de", stem="cache")  # another host: its pid says nothing
        with atomic_path(tmp_path / "last.pt") as temporary:
            temporary.write_bytes(b"new")
        assert temporaries(tmp_path) == sorted([live.name, fresh_foreign.name])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_earlier_process_with_this_pid_and_old_foreign_ones_are_stale(tmp_path):
    mine = leftover(tmp_path, os.getpid())  # a container's pid comes round again after a restart
    foreign = leftover(tmp_path, 123, host="0badc0de", stem="cache")
    day_ago = time.time() - writers.FOREIGN_STALE_S - 60
    os.utime(foreign, (day_ago, day_ago))
    unrelated = tmp_path / ".notes.tmp.txt"  # not a masnn temporary
    unrelated.write_text("mine")
    assert sorted(writers.remove_stale_temporaries(tmp_path)) == sorted([mine, foreign])
    assert temporaries(tmp_path) == [unrelated.name]


def _start_writer(folder, how: str) -> subprocess.Popen:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), how], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    return writer


def test_kill_9_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    writer = _start_writer(tmp_path, "sleep")
    assert len(temporaries(tmp_path)) == 1
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert len(temporaries(tmp_path)) == 1  # nothing runs after kill -9
    with atomic_path(tmp_path / "other.bin") as temporary:
        temporary.write_bytes(b"x")
    assert temporaries(tmp_path) == [] and not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize("how", ["exit", "daemon"])
def test_exits_python_sees_remove_the_temporary(tmp_path, how):
    writer = _start_writer(tmp_path, how)
    writer.wait(20)
    assert temporaries(tmp_path) == [] and not (tmp_path / "out.bin").exists()


def test_the_frame_cache_removes_a_killed_runs_entries_when_it_opens(tmp_path):
    from masnn.datasets.loaders.cache import FrameCache

    stale = leftover(tmp_path, dead_pid(), stem="0123abcd", suffix=".npy")
    FrameCache(tmp_path)
    assert not stale.exists()
