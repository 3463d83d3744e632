"""`masnn bench live`: the live pipeline fed from memory at a camera's top event rate.

A synthetic DAVIS346 source (a blob circling the sensor plus noise, ``masnn.bench.ingest.moving_blob_events``)
hands the pipeline one batch per millisecond of stream time, paced by the wall clock as a camera would,
by default at 12 million events/s, the DAVIS346's maximum. The events come from a pool of a quarter second
replayed with shifted timestamps, so the benchmark's own memory stays small and fixed; the reader thread
(framing) and the classifier run exactly as they do for a camera. Measured: the input rate sustained,
whether ingestion kept up (stream time vs wall time), predictions/s, dropped windows, latency from a
window's last event arriving to its prediction, peak resident memory.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from masnn.bench.common import moving_blob_events, peak_resident_mb, resident_mb
from masnn.datasets.events import concatenate
from masnn.live.pipeline import LiveOptions, LivePipeline
from masnn.live.sources import Pacer, Source

DAVIS346 = (346, 260)
POOL_S = 0.25
POOL_PIECES = 10  # the pool is generated piecewise: one 3 M-event call would hold ~200 MB of temporaries
STREAM_T0_US = 1_700_000_000_000_000  # Unix-time microseconds, as a DV camera stamps them


class SyntheticConnection:
    """``seconds`` of events at ``rate``/s in batches of ``batch_us``, handed over when their time is due."""

    lost = "end of the synthetic stream"

    def __init__(self, rate: float, seconds: float, sensor=DAVIS346, batch_us: int = 1000, seed: int = 0):
        self.name, self.sensor_size, self.batch_us = f"synthetic {sensor[0]}x{sensor[1]} at {rate / 1e6:g} M events/s", sensor, batch_us
        self.pool_us = int(POOL_S * 1e6) // batch_us * batch_us
        piece_us = self.pool_us // POOL_PIECES
        per_piece = int(rate * piece_us / 1e6)
        self.pool = concatenate([moving_blob_events(per_piece, piece_us, sensor, seed + i, t0=i * piece_us) for i in range(POOL_PIECES)])
        self.bounds = np.searchsorted(self.pool["t"], np.arange(0, self.pool_us + 1, batch_us))
        self.n_batches = int(seconds * 1e6 // batch_us)

    def batch(self, k: int) -> np.ndarray:
        turn, j = divmod(k, len(self.bounds) - 1)
        events = self.pool[self.bounds[j] : self.bounds[j + 1]].copy()
        events["t"] += STREAM_T0_US + turn * self.pool_us
        return events

    def batches(self, stop):
        pacer = Pacer(1.0)
        for k in range(self.n_batches):
            events = self.batch(k)
            # a camera hands a batch over once its time span has passed
            if not pacer.wait_for(STREAM_T0_US + (k + 1) * self.batch_us, stop):
                return
            yield events

    def close(self):
        pass


def untrained_checkpoint(folder: Path) -> Path:
    """A gesture model as `masnn train --preset gesture-cpu-small` makes it, with random weights; BatchNorm
    gains raised so that every layer spikes (a silent network would understate the work)."""
    import torch

    from masnn.checkpoint import model_checkpoint, save_checkpoint
    from masnn.datasets.loaders.table import GESTURE_CLASSES
    from masnn.models import create_model
    from masnn.training.config import load_config

    config = load_config(preset="gesture-cpu-small", overrides={"class_names": list(GESTURE_CLASSES)})
    with torch.random.fork_rng(devices=[]):  # the same weights every time; the caller's RNG state is left as it was
        torch.manual_seed(0)
        model = create_model(config.model, **{k: v for k, v in config.model_args().items() if k != "name"})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.mul_(4.0)
    path = folder / "untrained.pt"
    save_checkpoint(model_checkpoint(model, dataclasses.asdict(config)), path)
    return path


def load_classifier(weights: str | None, device: str):
    """The given weights, else the shipped default model, else an untrained one (no model shipped yet)."""
    from masnn.classify import Classifier

    if weights is not None:
        return Classifier.load(weights, device), str(weights)
    try:
        return Classifier.load(None, device), "shipped default"
    except ValueError:
        with tempfile.TemporaryDirectory(prefix="masnn-bench-") as folder:
            return Classifier.load(untrained_checkpoint(Path(folder)), device), "untrained (no shipped model)"


def run_live_benchmark(rate: float = 12e6, seconds: float = 15.0, weights: str | None = None, device: str = "cpu",
                       stride_ms: float = 100.0, batch_us: int = 1000) -> dict:
    classifier, model = load_classifier(weights, device)
    connection = SyntheticConnection(rate, seconds, DAVIS346, batch_us)
    source = Source(connection.name, lambda: connection, reconnects=False)
    pipeline = LivePipeline(source, classifier, LiveOptions(stride_ms=stride_ms))
    load = os.getloadavg()[0]
    resident_at_first_prediction = []

    def on_prediction(record, window):
        if not resident_at_first_prediction:
            resident_at_first_prediction.append(resident_mb())

    summary = pipeline.run(on_prediction)
    resident_at_end = resident_mb()
    ingest = pipeline.ingest
    offered = connection.n_batches * (len(connection.pool) / (len(connection.bounds) - 1))
    return {
        "model": model, "device": str(classifier.device), "sensor": list(DAVIS346), "seconds": seconds, "batch_ms": batch_us / 1000,
        "offered_events_per_s": rate, "events_offered": int(offered), "events_ingested": ingest.events,
        "sustained_events_per_s": summary["events_per_s_mean"],
        "lag_ms": {"final": 1e3 * ingest.lag_s, "max": 1e3 * ingest.max_lag_s},
        "kept_up": bool(ingest.events >= 0.99 * offered and ingest.lag_s < 0.1),
        "predictions": summary["predictions"], "predictions_per_s": summary["predictions_per_s"],
        "stride_ms": summary["model"]["stride_us"] / 1000, "windows": summary["windows"], "dropped_windows": summary["dropped_windows"],
        "latency_ms": summary["latency_ms"], "model_latency_ms": summary["model_latency_ms"],
        "handoff_high_water": summary["handoff"]["high_water"],
        "reader_cpu_share": summary["reader_cpu_share"],
        "peak_rss_mb": peak_resident_mb(),
        "rss_mb": {"first_prediction": (resident_at_first_prediction or [None])[0], "end": resident_at_end}, "event_pool_mb": connection.pool.nbytes / 2**20,
        "cores": os.cpu_count(), "load_average_at_start": load, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def benchmark_table(result: dict):
    from rich.table import Table

    table = Table(title=f"live pipeline, {result['sensor'][0]}x{result['sensor'][1]} synthetic stream, {result['seconds']:g} s, "
                        f"{result['model']} model on {result['device']}", show_header=False)
    latency, model = result["latency_ms"], result["model_latency_ms"]
    rows = [
        ("input offered", f"{result['offered_events_per_s'] / 1e6:.2f} M events/s in {result['batch_ms']:g} ms batches"),
        ("input sustained", f"{result['sustained_events_per_s'] / 1e6:.2f} M events/s ({result['events_ingested']:,} of {result['events_offered']:,})"),
        ("kept up", f"{'yes' if result['kept_up'] else 'NO'} (stream lag at the end {result['lag_ms']['final']:.0f} ms, max {result['lag_ms']['max']:.0f} ms)"),
        ("predictions", f"{result['predictions']} ({result['predictions_per_s']:.1f}/s, one per {result['stride_ms']:g} ms of stream)"),
        ("windows dropped", f"{result['dropped_windows']} of {result['windows']} (hand-off held at most {result['handoff_high_water']})"),
        ("latency, event to prediction", f"p50 {latency['p50'] or 0:.1f} ms, p99 {latency['p99'] or 0:.1f} ms (target p99 <= 100 ms)"),
        ("model latency", f"p50 {model['p50'] or 0:.1f} ms, p99 {model['p99'] or 0:.1f} ms"),
        ("reader thread", f"{100 * (result['reader_cpu_share'] or 0):.0f}% of one core (reading, framing, windows)"),
        ("peak RSS", f"{result['peak_rss_mb']:.0f} MB (of which the event pool {result['event_pool_mb']:.0f} MB); "
                     f"resident {result['rss_mb']['first_prediction'] or 0:.0f} MB at the first prediction, {result['rss_mb']['end']:.0f} MB at the end"),
        ("machine", f"{result['cores']} cores, load average {result['load_average_at_start']:.2f} at the start"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
