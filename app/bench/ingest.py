"""`masnn bench ingest`: the ingestion layer's speed and memory targets, measured, never asserted in tests.

- framing: ToFrames vs tonic.transforms.ToFrame on the same 4 million events, one thread, same output;
- AEDAT 3.1 reading rate (events/s) from a file in the page cache;
- AEDAT 4.0 file -> frames vs dv-processing's bare decode (getNextEventBatch until the end);
- peak resident memory while framing a recording of about 1 GB, in a fresh process.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from masnn.bench.common import DVS128, best_time, moving_blob_events


def bench_framing(n_events: int) -> list[dict]:
    import tonic

    from masnn.datasets.transforms.framing import ToFrames

    rows = []
    cases = [
        ("MA-SNN window: 0.9 s, dt 15 ms, T 60", 900_000, dict(start_time=0, end_time=900_000), dict(n_frames=60, start=0)),
        ("6 s recording, dt 15 ms, every window", 6_000_000, {}, {}),
    ]
    for name, duration, tonic_args, our_args in cases:
        events = moving_blob_events(n_events, duration)
        theirs = tonic.transforms.ToFrame(sensor_size=(*DVS128, 2), time_window=15_000, **tonic_args)
        ours = ToFrames(DVS128, time_window=15_000, **our_args)
        ours(events[:100])  # compile outside the timing
        same = bool(np.array_equal(theirs(events), ours(events)))
        tonic_s = best_time(lambda: theirs(events), 3)
        ours_s = best_time(lambda: ours(events), 7)
        rows.append(dict(case=name, events=n_events, tonic_s=tonic_s, masnn_s=ours_s, speedup=tonic_s / ours_s, identical=same))
    return rows


def _count_events(path) -> int:
    from masnn.datasets.io.readers import open_recording

    with open_recording(path) as recording:
        return sum(len(chunk) for chunk in recording.chunks())


def bench_aedat31(workdir: Path, n_events: int = 20_000_000) -> dict:
    from masnn.datasets.io.writers import write_aedat31

    path = workdir / "bench.aedat"
    pieces = (moving_blob_events(2_000_000, 1_000_000, seed=i, t0=i * 1_000_000) for i in range(n_events // 2_000_000))
    write_aedat31(path, pieces)
    _count_events(path)  # warm the page cache and the compiled decoder
    seconds = best_time(lambda: _count_events(path), 3)
    return dict(events=n_events, file_mb=path.stat().st_size / 2**20, seconds=seconds, events_per_s=n_events / seconds)


def bench_aedat4(workdir: Path, n_events: int = 5_000_000) -> dict:
    import dv_processing as dv

    from masnn.datasets.io.readers import open_recording
    from masnn.datasets.io.writers import write_aedat4
    from masnn.datasets.transforms.pipeline import FramingConfig, iter_recording_frames

    path = workdir / "bench.aedat4"
    write_aedat4(path, moving_blob_events(n_events, 10_000_000, t0=1_700_000_000_000_000), DVS128)

    def bare_decode():
        reader = dv.io.MonoCameraRecording(str(path))
        count = 0
        while (batch := reader.getNextEventBatch()) is not None:
            count += batch.size()
        return count

    config = FramingConfig(n_frames=None)

    def to_frames():
        with open_recording(path) as recording:
            return sum(int(block.sum()) for block in iter_recording_frames(recording, config))

    assert bare_decode() == n_events and to_frames() == n_events
    bare = best_time(bare_decode, 3)
    ours = best_time(to_frames, 3)
    return dict(events=n_events, dv_decode_s=bare, masnn_frames_s=ours, ratio=bare / ours)


_MEMORY_PROBE = """
import sys, json
from masnn.datasets.transforms.pipeline import FramingConfig, iter_recording_frames
from masnn.datasets.io.readers import open_recording
from masnn.bench.common import peak_resident_mb
config = FramingConfig(n_frames=None)
frames = events = 0
with open_recording(sys.argv[1]) as recording:
    for block in iter_recording_frames(recording, config):
        frames += len(block); events += int(block.sum())
print(json.dumps(dict(frames=frames, events=events, peak_rss_mb=peak_resident_mb())))
"""


def bench_memory(workdir: Path, size_mb: int) -> dict:
    from masnn.datasets.io.writers import write_aedat31

    path = workdir / "big.aedat"
    n_pieces = max(1, size_mb * 2**20 // (2_000_000 * 8))
    pieces = (moving_blob_events(2_000_000, 1_000_000, seed=i, t0=i * 1_000_000) for i in range(n_pieces))
    write_aedat31(path, pieces)
    warm = workdir / "warm.aedat"
    write_aedat31(warm, moving_blob_events(1000, 100_000))

    def probe(recording_path):
        result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(recording_path)], capture_output=True, text=True, check=True)
        return json.loads(result.stdout)

    # numba compiles on a first run (hundreds of MB, once); its cache makes later runs the steady state
    first_run_peak = probe(warm)["peak_rss_mb"]
    started = time.perf_counter()
    report = probe(path)
    report.update(file_mb=path.stat().st_size / 2**20, seconds=time.perf_counter() - started, tiny_file_peak_rss_mb=first_run_peak)
    path.unlink()
    return report


def run_ingest_benchmarks(n_events: int, big_mb: int, workdir: Path | None, console=None) -> dict:
    def say(text):
        if console is not None:
            console.print(text)

    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        scratch = Path(scratch)
        results = {}
        results["framing"] = framing = bench_framing(n_events)
        for row in framing:
            say(f"framing  {row['case']}: tonic {row['tonic_s'] * 1e3:.1f} ms, masnn {row['masnn_s'] * 1e3:.1f} ms "
                f"-> {row['speedup']:.1f}x (target 15x), identical={row['identical']}")
        results["aedat31"] = r = bench_aedat31(scratch)
        say(f"AEDAT 3.1 read: {r['events'] / 1e6:.0f} M events in {r['seconds'] * 1e3:.0f} ms -> {r['events_per_s'] / 1e6:.0f} M events/s (target 200)")
        results["aedat4"] = r = bench_aedat4(scratch)
        say(f"AEDAT 4 -> frames: dv-processing decode {r['dv_decode_s'] * 1e3:.0f} ms, masnn file->frames {r['masnn_frames_s'] * 1e3:.0f} ms "
            f"-> {100 * r['ratio']:.0f}% of the bare decode rate (target 90%)")
        results["memory"] = r = bench_memory(scratch, big_mb)
        say(f"memory: framed a {r['file_mb']:.0f} MB AEDAT 3.1 recording ({r['events'] / 1e6:.0f} M events, {r['frames']} frames) "
            f"with peak RSS {r['peak_rss_mb']:.0f} MB (target < 300 MB)")
    return results
