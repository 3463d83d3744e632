"""Where rendered frames go: an H.264 mp4 (PyAV) or an animated GIF (OpenCV), written frame by frame."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

GIF_MAX_FRAMES = 1500  # a GIF is encoded from all its frames at once: about 1 GB of 640 x 360 frames
H264_CRF = "20"  # x264 quality (lower: better, larger); event frames are sharp-edged, so a little under the default 23


class Mp4Sink:
    """H.264 (libx264, yuv420p, faststart) through PyAV, whose wheels carry FFmpeg with libx264: what browsers
    play, unlike the MPEG-4 part 2 that OpenCV's own writer offers. The frame size is even, as yuv420p needs."""

    def __init__(self, path: Path, dt_us: int, size: tuple[int, int]):
        import av

        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            self.stream = self.container.add_stream("libx264", rate=Fraction(1_000_000, dt_us).limit_denominator(100_000))
        except (av.error.FFmpegError, ValueError) as error:
            self.container.close()
            raise OSError(f"{path}: PyAV's FFmpeg has no H.264 encoder ({error})") from None
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": H264_CRF, "preset": "medium"}
        self.count = 0
        self.av = av

    def write(self, image: np.ndarray) -> None:
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.count
        self.count += 1
        self.container.mux(self.stream.encode(frame))

    def close(self, complete: bool) -> None:
        try:
            if complete:
                self.container.mux(self.stream.encode(None))  # what the encoder still holds
        finally:
            self.container.close()


class GifSink:
    """OpenCV writes animated GIFs only whole (``imwriteanimation``), so frames are held until the end."""

    def __init__(self, path: Path, dt_us: int, size: tuple[int, int]):
        self.path, self.dt_us = path, dt_us
        self.frames: list[np.ndarray] = []

    def write(self, image: np.ndarray) -> None:
        if len(self.frames) >= GIF_MAX_FRAMES:
            raise ValueError(f"a GIF keeps every frame in memory and stops at {GIF_MAX_FRAMES} frames "
                             f"({GIF_MAX_FRAMES * self.dt_us / 1e6:.0f} s); render a longer recording to .mp4")
        self.frames.append(image)

    def close(self, complete: bool) -> None:
        if not complete:
            return
        if not self.frames:
            return
        animation = cv2.Animation()
        animation.frames, animation.durations, animation.loop_count = self.frames, gif_durations(len(self.frames), self.dt_us), 0
        if not cv2.imwriteanimation(str(self.path), animation):
            raise OSError(f"{self.path}: OpenCV could not write the GIF")


def gif_durations(count: int, dt_us: int) -> list[int]:
    """Frame durations in ms. GIF counts in hundredths of a second, so a 45 ms bin cannot be one frame's delay;
    rounding the cumulative end times instead alternates 40 and 50 ms and keeps the whole in real time. (Browsers
    slow delays under 20 ms down to 100 ms, so GIFs of bins under 20 ms play slowly there.)"""
    ends = np.round(np.arange(count + 1) * dt_us / 10_000) * 10
    return np.diff(ends).astype(int).tolist()
