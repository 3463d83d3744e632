"""`masnn live --stream`: the DV network reader (masnn.live.network) on a stream captured from dv-processing's
NetworkWriter: damaged packets skipped and counted, whatever the byte that was hit; timeouts for a server that
accepts and sends nothing, at the first connection and mid-stream."""
from __future__ import annotations

import ctypes
import dataclasses
import struct
import threading
import time

import numpy as np
import pytest
from live_helpers import FAST_BACKOFF, StreamServer, capture_stream, first_packet_at, packet_spans, watchdog

from masnn.datasets.io import lz4_frame
from masnn.datasets.io.aedat4_header import AEDAT4_MAGIC, LZ4, read_header
from masnn.live.network import DAMAGED_IN_A_ROW, RESYNC_BYTES, Damaged, PacketReader, StreamSilent
from masnn.live.pipeline import LiveOptions, LivePipeline
from masnn.live.sources import stream_source
from masnn.live.view import render_dashboard, summary_table

TIMEOUT_S = 0.5
# Where one flipped byte lands in a packet (offsets from the packet's start: 8 header bytes, then the body's
# size prefix, root offset, "EVTS"), and one that lands in its events (x's high byte, t's sixth byte, polarity)
HEADER_HITS = {"stream id": 0, "size": 5, "size prefix": 9, "identifier": 17}
EVENT_HITS = {"x": 9, "t": 5, "polarity": 12}


@pytest.fixture(scope="module")
def stream(live_clip) -> bytes:
    return capture_stream(live_clip[1])


def header_of(stream: bytes):
    return read_header(AEDAT4_MAGIC + stream[: first_packet_at(stream)])


def read_all(stream: bytes, chunk: int = 1 << 16, header=None) -> tuple[list[np.ndarray], list[str]]:
    """Every packet's events and every damage, the stream fed ``chunk`` bytes at a time."""
    reader = PacketReader(header or header_of(stream))
    batches, damage = [], []
    for at in range(first_packet_at(stream), len(stream), chunk):
        reader.feed(stream[at : at + chunk])
        while (item := reader.next()) is not None:
            (damage.append(item.reason) if isinstance(item, Damaged) else batches.append(item))
    return batches, damage


def events_start(stream: bytes, span: tuple[int, int]) -> int:
    """Where a packet's first event lies in the stream: its vector of 16-byte events ends the body."""
    count = len(PacketReader(header_of(stream))._events(np.frombuffer(stream[span[0] + 8 : span[1]], np.uint8)))
    return span[1] - 16 * count


def flipped(stream: bytes, positions) -> bytes:
    damaged = bytearray(stream)
    for position in positions:
        damaged[position] ^= 0x40
    return bytes(damaged)


def test_an_undamaged_stream_gives_every_event_in_any_chunks(stream, live_clip):
    events = live_clip[2]
    for chunk in (7, 1 << 20):  # a packet header split over arrivals, and many packets in one
        batches, damage = read_all(stream, chunk)
        assert damage == []
        got = np.concatenate(batches)
        assert len(got) == len(events)
        for name in ("t", "x", "y", "p"):
            assert np.array_equal(got[name], events[name])


@pytest.mark.parametrize("hit", [*HEADER_HITS, *EVENT_HITS])
def test_one_flipped_byte_skips_exactly_its_packet(stream, hit):
    spans = packet_spans(stream)
    whole, _ = read_all(stream)
    k = len(spans) // 2
    position = spans[k][0] + HEADER_HITS[hit] if hit in HEADER_HITS else events_start(stream, spans[k]) + 16 * 3 + EVENT_HITS[hit]
    for chunk in (13, 1 << 16):
        batches, damage = read_all(flipped(stream, [position]), chunk)
        assert len(damage) == 1, damage
        assert len(batches) == len(whole) - 1  # the packets around it are read in full
        assert all(np.array_equal(a, b) for a, b in zip(batches, whole[:k] + whole[k + 1 :]))


def test_garbage_after_the_header_counts_and_stays_bounded(stream):
    reader = PacketReader(header_of(stream))
    rng = np.random.default_rng(0)
    damaged = 0
    for _ in range(24):
        reader.feed(rng.integers(0, 256, 1 << 18, dtype=np.uint8).tobytes())
        while (item := reader.next()) is not None:
            damaged += isinstance(item, Damaged)
        assert len(reader.buffer) <= 2 << 18  # skipped bytes are dropped, not kept
    assert 1 <= damaged <= 24 * (1 << 18) // RESYNC_BYTES + 1


def _lz4_frame(data: bytes) -> bytes:
    lib = lz4_frame.LIBLZ4
    lib.LZ4F_compressFrameBound.restype = ctypes.c_size_t
    lib.LZ4F_compressFrameBound.argtypes = [ctypes.c_size_t, ctypes.c_void_p]
    lib.LZ4F_compressFrame.restype = ctypes.c_size_t
    lib.LZ4F_compressFrame.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    out = ctypes.create_string_buffer(lib.LZ4F_compressFrameBound(len(data), None))
    size = lib.LZ4F_compressFrame(out, len(out), data, len(data), None)
    return out.raw[:size]


@pytest.mark.skipif(not lz4_frame.AVAILABLE, reason="no liblz4")
def test_an_lz4_stream_is_read_and_its_damage_skipped(stream):
    spans = packet_spans(stream)
    packets = []
    for start, end in spans:
        body = _lz4_frame(stream[start + 8 : end])
        packets.append(stream[start : start + 4] + struct.pack("<i", len(body)) + body)
    compressed = stream[: spans[0][0]] + b"".join(packets)
    header = dataclasses.replace(header_of(stream), compression=LZ4)
    whole, damage = read_all(compressed, 1000, header)
    assert damage == [] and sum(map(len, whole)) == sum(map(len, read_all(stream)[0]))
    middle = packet_spans(compressed)[len(spans) // 2]
    for position in (middle[0] + 5, middle[0] + 30):  # its size, then its compressed bytes
        batches, damage = read_all(flipped(compressed, [position]), 1000, header)
        assert len(damage) == 1 and len(batches) == len(whole) - 1


def test_a_server_that_accepts_and_sends_nothing_times_out(live_classifier):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts connections; nobody answers
        url = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.perf_counter()
        with pytest.raises(StreamSilent, match="connected, but no stream header came within 0.5 s"):
            stream_source(url, read_timeout_s=TIMEOUT_S).connect()
        assert time.perf_counter() - started < TIMEOUT_S + 1
        # the pipeline takes it for a lost connection: retried, on the dashboard, and it stops when asked
        pipeline = LivePipeline(stream_source(url, read_timeout_s=TIMEOUT_S), live_classifier, LiveOptions(backoff_s=FAST_BACKOFF))
        threading.Timer(2.5, pipeline.stop).start()
        with watchdog(pipeline, 20):
            summary = pipeline.run()
        assert time.perf_counter() - started < 2.5 + TIMEOUT_S + 4  # not stuck in a read
    assert summary["predictions"] == 0 and summary["connections"] == 0
    assert "no stream header came within 0.5 s" in pipeline.stats.notices[0]["reason"]
    assert pipeline.ingest.status.startswith("disconnected (") and "attempt" in pipeline.ingest.status


def run_until(pipeline, server, on_tick, on_prediction=None, seconds=30):
    """The pipeline's summary once ``on_tick`` stops it; the server closes whatever happens."""
    try:
        with watchdog(pipeline, seconds):
            return pipeline.run(on_prediction, on_tick)
    finally:
        server.close()


def stop_when_disconnected(p):
    if p.stats.disconnects:
        p.stop()


def test_a_stream_that_goes_silent_is_lost_and_retried(stream, live_classifier):
    server = StreamServer(stream, silent_after=len(packet_spans(stream)) // 2)
    pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{server.port}", read_timeout_s=TIMEOUT_S), live_classifier,
                            LiveOptions(backoff_s=FAST_BACKOFF))

    def stop_at_the_second_attempt(p):
        if "attempt 2" in p.ingest.status:
            p.stop()

    summary = run_until(pipeline, server, stop_at_the_second_attempt, seconds=20)
    assert summary["connections"] == 1 and summary["events"] > 0
    disconnect = next(n for n in pipeline.stats.notices if n["event"] == "disconnect")
    assert disconnect["reason"] == "no data for 0.5 s"


def test_fifty_flipped_bytes_are_skipped_counted_and_the_session_goes_on(stream, live_classifier):
    spans = packet_spans(stream)
    hits, positions = [*HEADER_HITS.values(), *EVENT_HITS.values()], []
    for n, k in enumerate(range(20, 20 + 3 * 50, 3)):  # 50 packets, one byte each, kinds in turn
        offset = hits[n % len(hits)]
        positions.append(spans[k][0] + offset if n % len(hits) < len(HEADER_HITS) else events_start(stream, spans[k]) + 32 + offset)
    server = StreamServer(flipped(stream, positions), packet_s=0.004)
    pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{server.port}", read_timeout_s=TIMEOUT_S), live_classifier,
                            LiveOptions(backoff_s=FAST_BACKOFF))
    records = []
    summary = run_until(pipeline, server, stop_when_disconnected, lambda record, window: records.append(record))
    assert summary["damaged_packets"] == 50  # each hit packet skipped, and counted once
    assert summary["connections"] == 1 and not summary["interrupted"]  # the session went on to the stream's end
    damaged = [n for n in pipeline.stats.notices if n["event"] == "damaged-packet"]
    assert damaged and all(n["skipped"] >= 1 for n in damaged)
    first_damaged_us = struct.unpack_from("<q", stream, events_start(stream, spans[20]))[0]  # its first event's time
    assert any(record["stream_us"][0] > first_damaged_us for record in records)  # windows wholly after it were classified
    from rich.console import Console

    console = Console(record=True, width=140)
    console.print(render_dashboard(pipeline.snapshot()))
    console.print(summary_table(summary))
    text = console.export_text()
    assert "damaged packets" in text and "50 skipped" in text


def test_a_stream_of_nothing_but_damage_is_lost_and_retried(stream, live_classifier):
    spans = packet_spans(stream)
    ruined = flipped(stream, [events_start(stream, span) + EVENT_HITS["x"] for span in spans[5:]])  # all after the fifth
    server = StreamServer(ruined, packet_s=0.001)
    pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{server.port}", read_timeout_s=TIMEOUT_S), live_classifier,
                            LiveOptions(backoff_s=FAST_BACKOFF))
    summary = run_until(pipeline, server, stop_when_disconnected, seconds=20)
    disconnect = next(n for n in pipeline.stats.notices if n["event"] == "disconnect")
    assert disconnect["reason"] == f"the stream is unreadable ({DAMAGED_IN_A_ROW} damaged packets in a row)"
    assert summary["damaged_packets"] == DAMAGED_IN_A_ROW


def test_off_a_terminal_each_notice_is_a_line_and_ctrl_c_ends_the_wait(live_classifier, monkeypatch, request):
    import _thread
    import io
    import signal
    import socket

    from rich.console import Console

    from masnn.live.pipeline import run_live

    # A process started in the background by a script (`cmd &`) begins with SIGINT ignored, and Python then keeps
    # it ignored: a simulated Ctrl-C does nothing and the run would serve for ever (the test hung that way under a
    # backgrounded ci-like). A terminal's Ctrl-C reaches masnn live with Python's handler, as here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    output = io.StringIO()
    pipelines = []
    run = LivePipeline.run
    monkeypatch.setattr(LivePipeline, "run", lambda self, *args: pipelines.append(self) or run(self, *args))

    def press_ctrl_c_once_serving():
        # once a notice is printed the run is in its serving loop (an interrupt in the warm-up's native code
        # could be lost); if the run has not taken it within 30 s, stop it: the test then fails instead of hanging
        deadline = time.monotonic() + 30
        while "disconnect: " not in output.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()
        while not (pipelines and pipelines[0].interrupted) and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        if pipelines and not pipelines[0].interrupted:
            pipelines[0].stop()

    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        threading.Thread(target=press_ctrl_c_once_serving, daemon=True).start()
        summary = run_live(stream_source(url, read_timeout_s=TIMEOUT_S), live_classifier, LiveOptions(backoff_s=FAST_BACKOFF),
                           Console(file=output, width=200))
    lines = output.getvalue().splitlines()
    assert summary["interrupted"] and summary["predictions"] == 0
    assert any(line.startswith("disconnect: ") and "no stream header came within 0.5 s" in line for line in lines), lines
    assert any("(interrupted)" in line for line in lines)
