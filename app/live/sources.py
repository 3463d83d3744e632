"""Live event sources for `masnn live`: a DVS camera, a DV network stream (masnn.live.network), a recording
replayed at its own pace.

A ``Source`` opens ``Connection``s; a connection yields event batches (EVENT_DTYPE arrays, or None when nothing
is new yet) until its device goes away or the run stops. Cameras and streams are reopened by the pipeline
after a disconnect; a replay ends with its file.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol
from urllib.parse import urlsplit

import numpy as np

from masnn.datasets.events import as_events
from masnn.datasets.io.aedat4_packets import DECODED_HERE as NETWORK_DECODED
from masnn.datasets.io.readers import open_recording
from masnn.live.network import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, NetworkConnection, connect_stream

DISCOVERY_TIMEOUT_S = 3.0  # `masnn live` with no camera says so within this long, before any model is loaded
CAMERAS_LOOKED_FOR = "DVS128, DAVIS, DVXplorer over USB with dv-processing's discovery"
POLL_S = 0.001  # a live source with nothing new is asked again after this long
PACE_SLICE_US = 5_000  # a paced replay hands events over in slices this long, as a camera would


def dv_message(error: Exception) -> str:
    """dv-processing's error text without its source path, stack trace and boost details."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("RuntimeError: "):
            return line[len("RuntimeError: "):]
    return lines[0].split(" [", 1)[0] if lines else type(error).__name__


# --- sources -------------------------------------------------------------------------------------------

class Connection(Protocol):
    name: str
    sensor_size: tuple[int, int]
    lost: str  # why batches() ended
    damaged: int  # packets skipped as damaged (network streams; 0 elsewhere)
    damage: str  # why the newest one was

    def batches(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        """Canonical event arrays as they arrive; None when there is nothing new yet."""

    def close(self) -> None: ...


@dataclass
class Source:
    """Where events come from. ``connect`` opens a connection or raises OSError / EventFileError naming the
    problem. A source that ``reconnects`` is reopened when it ends (cameras, streams); otherwise its end is
    the end of the run. ``speed``: stream seconds per wall second (0: unpaced, as fast as it is read)."""

    name: str
    connect: Callable[[], Connection]
    reconnects: bool = True
    lossless: bool = False  # the reader waits for the classifier instead of dropping windows
    speed: float = 1.0


class DvConnection:
    """A dv-processing input (camera or network reader) as batches of canonical events."""

    def __init__(self, reader, name: str):
        if not reader.isEventStreamAvailable():
            raise OSError(f"{name}: has no event stream")
        resolution = reader.getEventResolution()
        if resolution is None:
            raise OSError(f"{name}: the event stream does not give its resolution")
        self.reader, self.name = reader, name
        self.sensor_size = (int(resolution[0]), int(resolution[1]))
        self.lost = ""
        self.damaged, self.damage = 0, ""

    def batches(self, stop):
        while not stop.is_set():
            try:
                batch = self.reader.getNextEventBatch()
            except RuntimeError as error:  # the device or the peer went away mid-read
                self.lost = dv_message(error)
                return
            if batch is None:
                if not self.reader.isRunning():
                    self.lost = "the stream ended"
                    return
                yield None
            elif batch.size():
                yield as_events(batch.numpy())

    def close(self):
        self.reader = None


def discover_cameras(timeout_s: float = DISCOVERY_TIMEOUT_S) -> list:
    """dv-processing's USB discovery (its DeviceDescriptors), in a daemon thread so that a slow USB bus ends the
    wait after ``timeout_s`` (OSError) rather than the user's patience."""
    import dv_processing as dv

    found: list = []
    failure: list[BaseException] = []

    def discover():
        try:
            found.extend(dv.io.camera.discover())
        except Exception as error:  # noqa: BLE001 - reported to the caller below
            failure.append(error)

    worker = threading.Thread(target=discover, name="masnn-camera-discovery", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise OSError(f"no DVS camera found: looking for one ({CAMERAS_LOOKED_FOR}) took over {timeout_s:g} s")
    if failure:
        raise OSError(f"no DVS camera found: dv-processing's discovery failed ({dv_message(failure[0])})")
    return found


def check_camera(serial: str | None = None, timeout_s: float = DISCOVERY_TIMEOUT_S) -> None:
    """OSError unless a camera (the one with ``serial``, if given) is attached: before any model is loaded, so
    that `masnn live` without a camera fails at once, saying what it looked for."""
    cameras = discover_cameras(timeout_s)
    if not cameras:
        raise OSError(f"no DVS camera found (looked for {CAMERAS_LOOKED_FOR}: none connected, "
                      "or not readable by this user: see the udev rules in the README)")
    serials = [str(camera.serialNumber) for camera in cameras]
    if serial is not None and serial not in serials:
        raise OSError(f"camera {serial}: not found (cameras found: {', '.join(serials)})")


def camera_source(serial: str | None = None) -> Source:
    name = f"camera {serial}" if serial else "camera"

    def connect():
        import dv_processing as dv

        try:
            camera = dv.io.camera.open(serial) if serial else dv.io.camera.open()
        except IndexError:  # dv-processing's answer when discovery found no camera at all
            raise OSError("no DVS camera found (none connected, or not readable by this user)") from None
        except RuntimeError as error:
            raise OSError(f"{name}: cannot be opened ({dv_message(error)})") from None
        return DvConnection(camera, f"camera {camera.getCameraName()}")

    return Source(name, connect)


def parse_stream_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # out of range or not a number
        port = None
    if parts.scheme != "tcp" or not parts.hostname or not port or parts.path not in ("", "/"):
        raise ValueError(f"--stream {url!r}: expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:7777")
    return parts.hostname, port


def stream_source(url: str, connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S) -> Source:
    """A DV network stream, read by masnn.live.network: a server that does not answer within ``connect_timeout_s``
    is an error; one that sends nothing for ``read_timeout_s`` (the header included) is a lost connection."""
    host, port = parse_stream_url(url)
    if connect_timeout_s <= 0 or read_timeout_s <= 0:
        raise ValueError(f"stream timeouts must be positive, got {connect_timeout_s} s and {read_timeout_s} s")

    def connect():
        sock, header, rest = connect_stream(host, port, url, connect_timeout_s, read_timeout_s)
        if header.compression in NETWORK_DECODED:
            return NetworkConnection(sock, header, rest, url, read_timeout_s)
        sock.close()
        return _dv_stream(host, port, url)

    return Source(url, connect)


def _dv_stream(host: str, port: int, url: str) -> DvConnection:
    """A stream compressed as masnn does not decode (Zstandard): dv-processing's reader, on a new connection.
    The server has just sent a header, so its constructor's wait for one (holding the GIL, no timeout) is short;
    what masnn.live.network guards against (a damaged packet header aborts the process) applies to it."""
    import dv_processing as dv

    try:
        reader = dv.io.NetworkReader(host, port)
    except RuntimeError as error:
        raise OSError(f"{url}: cannot connect ({dv_message(error)})") from None
    return DvConnection(reader, url)


class Pacer:
    """Holds events back until the wall clock reaches their stream time, scaled by ``speed`` (0: no waiting)."""

    def __init__(self, speed: float):
        self.speed = speed
        self.origin: tuple[float, int] | None = None  # (wall, stream time) of the first event

    def wait_for(self, t_us: int, stop: threading.Event) -> bool:
        """False when ``stop`` was set (while waiting or before)."""
        if not self.speed:
            return not stop.is_set()
        if self.origin is None:
            self.origin = (time.perf_counter(), t_us)
        delay = self.origin[0] + (t_us - self.origin[1]) / 1e6 / self.speed - time.perf_counter()
        return not stop.wait(delay) if delay > 0 else not stop.is_set()


def time_slices(events: np.ndarray, slice_us: int) -> list[np.ndarray]:
    """Time-sorted events cut at multiples of ``slice_us`` (views, no copy)."""
    t = events["t"]
    first = int(t[0])
    edges = np.arange(first - first % slice_us + slice_us, int(t[-1]) + 1, slice_us)
    return [piece for piece in np.split(events, np.searchsorted(t, edges)) if len(piece)]


class ReplayConnection:
    def __init__(self, path: Path, speed: float):
        self.recording = open_recording(path)
        self.name, self.sensor_size, self.speed = f"replay {path}", self.recording.info.sensor_size, speed
        self.lost = "end of the recording"
        self.damaged, self.damage = 0, ""

    def batches(self, stop):
        pacer = Pacer(self.speed)
        for chunk in self.recording.chunks():
            for piece in time_slices(chunk, PACE_SLICE_US) if self.speed else [chunk]:
                if not pacer.wait_for(int(piece["t"][-1]), stop):
                    return
                yield piece

    def close(self):
        self.recording.close()


def replay_source(path: str | Path, speed: float = 1.0) -> Source:
    """A recording played as a live stream: real speed by default; speed 0 plays it as fast as the
    classifier goes, classifying every window."""
    if speed < 0:
        raise ValueError(f"--speed must be 0 (unpaced) or positive, got {speed}")
    path = Path(path)
    with open_recording(path):  # an unreadable file fails here, before any model is loaded
        pass
    return Source(f"replay {path}", lambda: ReplayConnection(path, speed), reconnects=False, lossless=speed == 0, speed=speed)
