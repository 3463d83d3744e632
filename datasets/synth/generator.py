"""Synthetic DVS recordings: articulated people in front of a camera, through a DVS pixel model.

A scene (background, clothing, body, distance, lighting, camera shake) is drawn at random per sample;
a motion model (``motions.py``) moves the figure; ``figure.render`` draws linear-intensity frames at
``frame_rate``; the lighting multiplies them (mains flicker for fluorescent light); the pixel model
(``emulator.DvsEmulator``) turns the frame sequence into events with interpolated, sub-millisecond
timestamps. Everything derives from one seed, so a dataset is reproducible bit for bit.

Layouts written here are those of the real datasets, so the same readers and loaders serve both:
- DVS128 Gesture: DvsGesture/userNN_<lighting>.aedat (AEDAT 3.1) + userNN_<lighting>_labels.csv +
  trials_to_train.txt / trials_to_test.txt, split by user; between some gestures, unlabelled interludes
  of no gesture (standing still, fidgeting, a step aside, bobbing down and up, and optionally a cut to another
  camera that sees the person sit down and stand up);
- DVS128 Gait: train|test/<subject id>/<walk>.txt, one "t x y p" line per event.
"""
from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.io.writers import atomic_path, write_aedat4, write_aedat31, write_text
from masnn.datasets.loaders.table import GESTURE_CLASSES
from masnn.datasets.synth.emulator import DvsEmulator, PixelParams
from masnn.datasets.synth.figure import Look, ShakableBackground, make_background, render
from masnn.datasets.synth.motions import (
    Body,
    Gait,
    Idle,
    Interlude,
    Placement,
    body_motion,
    far_side,
    gesture_pose,
    lean_forward,
    random_gait,
    random_style,
    rest_pose,
    sit_pose,
    walk_pose,
    walk_speed,
)

SENSORS = {"dvs128": (128, 128), "davis346": (346, 260), "dvxplorer": (640, 480), "dvxplorer-lite": (320, 240)}
SENSOR_CAMERAS = {"dvs128": "DVS128", "davis346": "DAVIS346", "dvxplorer": "DVXplorer", "dvxplorer-lite": "DVXplorer_Lite"}


@dataclass(frozen=True)
class Lighting:
    """Illumination: mean level (linear; ~1 = a bright room) and mains flicker of the light sources."""

    name: str
    level: float
    flicker_hz: float = 0.0  # 100 Hz (50 Hz mains) or 120 Hz (60 Hz mains) for fluorescent tubes
    flicker_depth: float = 0.0  # relative modulation of the light
    drift: float = 0.0  # slow relative change (clouds, for natural light)

    def gain(self, t: float, phase: float) -> float:
        flicker = self.flicker_depth * np.sin(2 * np.pi * self.flicker_hz * t + phase) if self.flicker_hz else 0.0
        return self.level * (1 + flicker + self.drift * np.sin(2 * np.pi * 0.07 * t + phase))


# name -> uniform ranges of (level, mains flicker depth, slow drift); None: none of it. LEDs flicker (PWM) far above
# the photoreceptor's bandwidth, so not as the camera sees them; daylight through windows drifts with the clouds.
_LIGHTING_RANGES = {
    "fluorescent": ((0.4, 0.8), (0.03, 0.08), None),
    "fluorescent_led": ((0.5, 0.9), (0.01, 0.04), None),
    "lab": ((0.5, 1.0), (0.005, 0.02), None),
    "led": ((0.3, 0.7), None, None),
    "natural": ((0.5, 1.1), None, (0.0, 0.05)),
}
LIGHTINGS = tuple(_LIGHTING_RANGES)  # the order is part of every seed: recordings draw lightings by index


def random_lighting(name: str, rng: np.random.Generator) -> Lighting:
    if name not in _LIGHTING_RANGES:
        raise ValueError(f"unknown lighting {name!r}; known: {', '.join(LIGHTINGS)}")
    level, depth, drift = _LIGHTING_RANGES[name]
    mains = float(rng.choice([100.0, 120.0]))  # drawn for every light: skipping it would change every seed's output
    return Lighting(name, rng.uniform(*level), flicker_hz=mains if depth else 0.0,
                    flicker_depth=rng.uniform(*depth) if depth else 0.0, drift=rng.uniform(*drift) if drift else 0.0)


@dataclass(frozen=True)
class Scene:
    """Everything about a recording that is not the motion itself."""

    sensor_size: tuple[int, int]
    background: np.ndarray
    look: Look
    body: Body
    placement: Placement
    lighting: Lighting
    shake_px: float  # standard deviation of the camera's slow wobble, pixels
    flicker_phase: float
    seed: int
    # the lens's veiling glare: this share of each pixel's light comes from a blur of the image over glare_px
    # (pixels). A moving arm then changes the light faintly for a dozen pixels around it, which fires the
    # pixels near a threshold there: the scattered events real recordings show around moving limbs
    glare: float = 0.0
    glare_px: float = 6.0


def random_scene(sensor_size, lighting_name: str, rng: np.random.Generator, body: Body | None = None,
                 placement: Placement | None = None) -> Scene:
    """A random look, background and lighting; ``placement`` defaults to DVS128 Gesture's framing."""
    width, height = sensor_size
    background_level = rng.uniform(0.2, 0.6)
    background = make_background(sensor_size, rng, level=background_level, contrast=rng.uniform(0.1, 0.5))
    clothing = background_level * float(rng.choice([rng.uniform(0.15, 0.5), rng.uniform(1.6, 2.6)]))
    trousers = background_level * rng.uniform(0.2, 2.0)
    look = Look.random(rng, clothing=clothing, skin=rng.uniform(0.4, 0.9), trousers=trousers)
    side = min(width, height)
    if placement is None:
        # DVS128 Gesture: the subject seen from the head down to the thighs, roughly centred, the head 15-20
        # pixels wide at 128 x 128 with its top 23-58 pixels below the frame's top edge (the upper body in the
        # lower two thirds; subjects stand nearer or further and the camera sits higher or lower)
        height_px = side * rng.uniform(1.05, 1.5)
        crown = side * rng.uniform(0.18, 0.45)
        placement = Placement(width / 2 + side * rng.uniform(-0.08, 0.08), crown + 0.41 * height_px, height_px)
    placement = Placement(placement.pelvis_x, placement.pelvis_y, placement.height_px, distance=rng.uniform(1.6, 3.0),
                          centre=(width / 2, height / 2))
    return Scene(
        sensor_size=tuple(sensor_size),
        background=background,
        look=look,
        body=body or Body().varied(rng),
        placement=placement,
        lighting=random_lighting(lighting_name, rng),
        shake_px=rng.uniform(0.02, 0.25),
        flicker_phase=rng.uniform(0, 2 * np.pi),
        seed=int(rng.integers(1 << 31)),
        glare=rng.uniform(0.0, 0.3),
        glare_px=side * rng.uniform(0.03, 0.08),
    )


def veiling_glare(image: np.ndarray, share: float, sigma_px: float) -> np.ndarray:
    """``image`` through a lens that spreads ``share`` of every pixel's light over a Gaussian of ``sigma_px``
    pixels around it (light leaving the view is mirrored back in, so a uniform image is unchanged)."""
    if share <= 0:
        return image
    halo = cv2.GaussianBlur(image, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    return (1 - np.float32(share)) * image + np.float32(share) * halo


PoseAt = Callable[[float], tuple[dict, Placement, str | None]]


def simulate(scene: Scene, pose_at: PoseAt, duration: float, t0_us: int, params: PixelParams, frame_rate: float = 500.0, chunk_s: float = 1.0) -> Iterator[np.ndarray]:
    """Events of ``duration`` seconds of the scene, in chunks of about ``chunk_s`` seconds (bounded memory).

    ``pose_at(t)`` gives the joints (body units), the placement and the far side (or None) at t seconds.
    """
    rng = np.random.default_rng(scene.seed)
    n_frames = int(round(duration * frame_rate))
    shake = np.zeros(2)
    shake_smoothing = np.exp(-1 / (0.5 * frame_rate))  # the wobble wanders on a 0.5 s time scale

    background = ShakableBackground.of(scene.background)

    def frame(i: int) -> np.ndarray:
        nonlocal shake
        t = i / frame_rate
        joints, placement, hidden = pose_at(t)
        shake = shake * shake_smoothing + rng.normal(0, scene.shake_px * np.sqrt(1 - shake_smoothing**2), 2)
        # the whole view moves with the camera: background and figure alike
        moved = placement.moved(*shake)
        image = render(background.shifted(*shake), joints, moved, scene.look, hidden)
        image = veiling_glare(image, scene.glare, scene.glare_px)
        return image * np.float32(scene.lighting.gain(t, scene.flicker_phase))

    emulator = DvsEmulator(frame(0), t0_us, params, rng=np.random.default_rng(scene.seed + 1))
    pending, pending_until = [], chunk_s
    for i in range(1, n_frames + 1):
        t_us = t0_us + int(round(i * 1e6 / frame_rate))
        events = emulator.step(frame(i), t_us)
        if len(events):
            pending.append(events)
        if i / frame_rate >= pending_until:
            yield np.concatenate(pending, dtype=EVENT_DTYPE) if pending else np.zeros(0, EVENT_DTYPE)
            pending, pending_until = [], pending_until + chunk_s
    if pending:
        yield np.concatenate(pending, dtype=EVENT_DTYPE)


def random_pixel_params(rng: np.random.Generator) -> PixelParams:
    """One camera's pixel parameters, drawn over the range DVS128 recordings show (bias settings differ between
    cameras and sessions): contrast thresholds and their ON/OFF balance, mismatch, refractory period, the
    photoreceptor's bandwidth and its spread over the array, where the references start, readout repeats (of
    ON events), the OFF rebounds after ON events, and the noise of the array."""
    threshold = rng.uniform(0.1, 0.25)
    balance = rng.uniform(0.85, 1.18)  # ON / OFF threshold ratio
    return PixelParams(
        threshold_on=threshold * np.sqrt(balance), threshold_off=threshold / np.sqrt(balance),
        threshold_mismatch=rng.uniform(0.015, 0.06), refractory_us=int(rng.uniform(300, 600)),
        cutoff_hz=float(np.exp(rng.uniform(np.log(40.0), np.log(600.0)))), background_rate_hz=rng.uniform(0.02, 0.15),
        background_on_fraction=rng.uniform(0.5, 0.8), shot_noise_rate_hz=rng.uniform(0.01, 0.08),
        hot_pixel_fraction=rng.uniform(0.0, 5e-4), background_spread=rng.uniform(1.0, 2.0),
        cutoff_mismatch=rng.uniform(0.2, 0.7), reference_spread=1.0, repeat_fraction=rng.uniform(0.12, 0.25),
        # as the real DVS128 Gesture clips: 17-19 % of the ON events repeated, each copy copied again about half
        # the time; a third of the ON events followed by an OFF 0.2-0.8 ms later
        repeat_on_only=True, repeat_more=rng.uniform(0.4, 0.6),
        rebound_fraction=rng.uniform(0.25, 0.45), rebound_us=rng.uniform(400.0, 600.0),
    )


def ideal_pixels(params: PixelParams, rng: np.random.Generator) -> PixelParams:
    """``params`` without the imperfections measured on real clips: one bandwidth for the whole array, drawn from
    120-800 Hz (not down to 40 Hz), references at rest, no readout repeats, no rebounds. Motion then fires crisp
    edges, the generator's pixels before they were fitted to the real ones."""
    return replace(params, cutoff_hz=rng.uniform(120.0, 800.0), cutoff_mismatch=0.0, reference_spread=0.0,
                   repeat_fraction=0.0, rebound_fraction=0.0)


def pixel_params_for(lighting: Lighting, base: PixelParams) -> PixelParams:
    """Dim light: more shot noise and slower photoreceptors are in the emulator's intensity model; the
    background rate rises in the dark as leak noise dominates."""
    return replace(base, background_rate_hz=base.background_rate_hz * (1.5 if lighting.level < 0.5 else 1.0))


# ---------------------------------------------------------------- DVS128 Gesture layout


PIXEL_MODELS = ("measured", "ideal")  # GesturePreset.pixels


@dataclass(frozen=True)
class GesturePreset:
    gesture_s: tuple[float, float] = (5.0, 7.0)  # each gesture's length, uniform in this range
    gap_s: tuple[float, float] = (0.6, 2.0)  # rest between gestures
    # unlabelled stretches with no gesture (Interlude: still, fidgeting, a step, a crouch), each after a
    # different gesture: what training without gestures learns from (masnn.datasets.loaders.gesture.no_gesture_samples)
    interludes: int = 2
    interlude_s: tuple[float, float] = (3.0, 5.0)
    # the share of interludes in which another camera sees the person sit down and stand up (Interlude's "sit")
    sit_share: float = 0.0
    lightings: tuple[str, ...] = LIGHTINGS
    frame_rate: float = 500.0
    # "measured": the camera's pixels as measured on real DVS128 Gesture clips (random_pixel_params); "ideal":
    # the same cameras without the measured imperfections (ideal_pixels), an easier first stage of training
    pixels: str = "measured"

    def __post_init__(self):
        if self.pixels not in PIXEL_MODELS:
            raise ValueError(f"pixels must be one of {PIXEL_MODELS}, got {self.pixels!r}")


GESTURE_PRESETS = {
    "full": GesturePreset(),
    "small": GesturePreset(gesture_s=(2.0, 2.5), gap_s=(0.3, 0.6), interlude_s=(1.8, 2.4), lightings=("lab", "fluorescent"),
                           frame_rate=400.0),
    "tiny": GesturePreset(gesture_s=(0.6, 0.8), gap_s=(0.1, 0.2), interludes=0, lightings=("lab",), frame_rate=300.0),
}


def split_users(n_users: int) -> tuple[list[int], list[int]]:
    """The real split keeps users 24-29 of 29 for testing: the last ~20% of users (at least one)."""
    n_test = max(1, round(n_users * 6 / 29)) if n_users > 1 else 0
    users = list(range(1, n_users + 1))
    return users[: n_users - n_test], users[n_users - n_test :]


def _recording_rng(seed: int, user: int, lighting: str, *stream: int) -> np.random.Generator:
    """One recording's generator; ``stream`` entries give it others of its own (the interludes' is 11)."""
    return np.random.default_rng([seed, user, LIGHTINGS.index(lighting) if lighting in LIGHTINGS else 99, *stream])


def gesture_recording(user: int, lighting: str, seed: int, preset: GesturePreset, params: PixelParams | None = None, sensor_size=(128, 128)):
    """(event chunks, labels): one user performing the 11 gestures in order under one lighting; ``params`` None
    draws the camera's pixel parameters (``random_pixel_params``)."""
    rng = _recording_rng(seed, user, lighting)
    params = random_pixel_params(np.random.default_rng([seed, user, 7])) if params is None else params
    user_rng = np.random.default_rng([seed, user])  # the same person under every lighting
    body = Body().varied(user_rng)
    tempo = user_rng.uniform(0.85, 1.15)
    idle = Idle.random(user_rng)
    scene = random_scene(sensor_size, lighting, rng, body=body)
    if preset.pixels == "ideal":
        params = ideal_pixels(params, np.random.default_rng([seed, user, 8]))
        scene = replace(scene, glare=0.0)
    t0_us = int(rng.integers(5_000_000, 60_000_000))
    # the interludes draw from their own generator: the gestures' lengths, gaps and styles are those without them
    interlude_rng = _recording_rng(seed, user, lighting, 11)
    after = set(interlude_rng.choice(len(GESTURE_CLASSES) - 1, size=preset.interludes, replace=False).tolist())
    timeline, interludes = [], []  # (start s, end s, class index, style); (start s, Interlude)
    t = rng.uniform(*preset.gap_s)
    for gesture in range(len(GESTURE_CLASSES)):
        length = rng.uniform(*preset.gesture_s)
        timeline.append((t, t + length, gesture, random_style(gesture, rng, tempo)))
        t += length + rng.uniform(*preset.gap_s)
        if gesture in after:
            interlude = Interlude.random(interlude_rng, interlude_rng.uniform(*preset.interlude_s), preset.sit_share)
            interludes.append((t, interlude))
            t += interlude.duration + interlude_rng.uniform(*preset.gap_s)
    duration = t
    sway = int(rng.integers(1 << 30))

    def pose_at(time: float):
        for start, interlude in interludes:
            if not start <= time < start + interlude.duration:
                continue
            into = time - start
            if interlude.view is not None:
                # the recording cuts to the other camera and back: one frame in which the whole figure changes
                joints = sit_pose(interlude.seated(into), interlude.sit_lean(into), body, rest_pose(time, body, sway))
                joints = interlude.view.seen(body_motion(joints, time, idle))
                return joints, interlude.view.placement(scene.placement, sensor_size), None
            dx, dy = interlude.offset(into)
            placement = scene.placement.moved(dx * scene.placement.height_px, dy * scene.placement.height_px)
            joints = lean_forward(rest_pose(time, body, sway), interlude.lean(into))
            return body_motion(joints, time, idle.scaled(interlude.idle_gain(into))), placement, None
        for start, end, gesture, style in timeline:
            if start <= time < end:
                # ease in and out of the gesture from the rest pose over 0.3 s
                joints = gesture_pose(gesture, time - start, style, body)
                blend = min(1.0, (time - start) / 0.3, (end - time) / 0.3)
                if blend < 1:
                    rest = rest_pose(time, body, sway)
                    joints = {k: blend * v + (1 - blend) * rest[k] for k, v in joints.items()}
                return body_motion(joints, time, idle), scene.placement, None
        return body_motion(rest_pose(time, body, sway), time, idle), scene.placement, None

    labels = [(g + 1, t0_us + int(start * 1e6), t0_us + int(end * 1e6)) for start, end, g, _ in timeline]
    chunks = simulate(scene, pose_at, duration, t0_us, pixel_params_for(scene.lighting, params), preset.frame_rate)
    return chunks, labels


def _write_gesture_recording(job) -> tuple[str, int]:
    folder, user, lighting, seed, preset = job
    name = f"user{user:02d}_{lighting}"
    chunks, labels = gesture_recording(user, lighting, seed, preset)
    count = 0

    def counted():
        nonlocal count
        for chunk in chunks:
            count += len(chunk)
            yield chunk

    write_aedat31(Path(folder) / f"{name}.aedat", counted(), camera="DVS128")
    with atomic_path(Path(folder) / f"{name}_labels.csv") as temporary:
        temporary.write_text("class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in labels))
    return name, count


def write_gesture_dataset(out: Path, users: int = 29, seed: int = 0, preset: GesturePreset = GESTURE_PRESETS["full"], workers: int | None = None, progress=None) -> dict:
    """The DVS128 Gesture original layout under ``out``/DvsGesture. Returns a summary."""
    folder = Path(out) / "DvsGesture"
    folder.mkdir(parents=True, exist_ok=True)
    train_users, test_users = split_users(users)
    jobs = [(str(folder), user, lighting, seed, preset) for user in range(1, users + 1) for lighting in preset.lightings]
    counts = {}
    with _pool(workers) as pool:
        for name, count in pool.imap(_write_gesture_recording, jobs):
            counts[name] = count
            if progress:
                progress(name)
    for split, members in (("train", train_users), ("test", test_users)):
        names = [f"user{u:02d}_{lighting}.aedat" for u in members for lighting in preset.lightings]
        with atomic_path(folder / f"trials_to_{split}.txt") as temporary:
            temporary.write_text("".join(f"{name}\n" for name in names))
    return {"recordings": len(jobs), "samples": len(jobs) * len(GESTURE_CLASSES), "events": sum(counts.values()), "folder": str(folder)}


# ---------------------------------------------------------------- DVS128 Gait layout


def walker_placement(gait: Gait, seed: int, session: int) -> Placement:
    """Where a walker stands (x = 0) before crossing: one fixed camera per session and one walking line, so the
    feet of everyone meet the same ground row and a taller person looks taller (stature is part of who they
    are)."""
    camera = np.random.default_rng([seed, 1000 + session])
    pixels_per_stature, ground_y = 128 * camera.uniform(0.54, 0.58), 128 * camera.uniform(0.9, 0.93)
    height_px = pixels_per_stature * gait.stature
    leg = gait.body.thigh + gait.body.shin + 0.02  # pelvis to ankle: the hip sits 0.02 below the pelvis
    return Placement(0.0, ground_y - leg * height_px, height_px)


def gait_recording(subject: int, session: int, walk: int, seed: int, duration: float = 4.4, params: PixelParams = PixelParams(), frame_rate: float = 400.0):
    """Event chunks of one walk of ``subject`` across the field of view (DVS128)."""
    identity = random_gait(np.random.default_rng([seed, subject]))
    session_gait = identity.varied(np.random.default_rng([seed, subject, session]), 0.03)
    rng = np.random.default_rng([seed, subject, session, walk])
    gait = session_gait.varied(rng, 0.02)
    # lighting varies walk by walk in both sessions, so it never tells the sessions apart
    scene = random_scene((128, 128), str(rng.choice(LIGHTINGS)), rng, body=gait.body,
                         placement=walker_placement(gait, seed, session))
    direction = int(rng.choice([-1, 1]))
    speed_px = walk_speed(gait) * scene.placement.height_px
    crossing = 128 + 0.6 * scene.placement.height_px
    start_x = -0.3 * scene.placement.height_px if direction > 0 else 128 + 0.3 * scene.placement.height_px
    start_x += direction * rng.uniform(0, max(0.0, crossing - speed_px * duration))
    phase0 = rng.uniform(0, 2 * np.pi)
    hidden = far_side(direction)

    def pose_at(t: float):
        placement = replace(scene.placement, pelvis_x=start_x + direction * speed_px * t)
        return walk_pose(t, gait, direction, phase0), placement, hidden

    t0_us = int(rng.integers(1_000_000, 30_000_000))
    return simulate(scene, pose_at, duration, t0_us, pixel_params_for(scene.lighting, params), frame_rate)


def _write_gait_walk(job) -> int:
    path, subject, session, walk, seed, duration = job
    events = np.concatenate(list(gait_recording(subject, session, walk, seed, duration)), dtype=EVENT_DTYPE)
    write_text(path, events)
    return len(events)


def write_gait_dataset(out: Path, subjects: int = 20, walks: int = 20, seed: int = 0, duration: float = 4.4, workers: int | None = None, progress=None) -> dict:
    """train/<id>/*.txt from session 0 and test/<id>/*.txt from session 1, as the real split by folder."""
    jobs = []
    for subject in range(1, subjects + 1):
        for session, split in ((0, "train"), (1, "test")):
            folder = Path(out) / split / f"{subject:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [(str(folder / f"{walk:03d}.txt"), subject, session, walk, seed, duration) for walk in range(walks)]
    total = 0
    with _pool(workers) as pool:
        for count in pool.imap(_write_gait_walk, jobs):
            total += count
            if progress:
                progress(None)
    return {"walks": len(jobs), "events": total, "folder": str(out)}


# ---------------------------------------------------------------- one clip


def write_action_clip(out: Path, action: str, sensor: str = "dvs128", seed: int = 0, duration: float = 3.0, lighting: str = "lab", frame_rate: float = 500.0) -> int:
    """One AEDAT 4.0 file of one gesture (a class name from GESTURE_CLASSES) at any sensor's resolution."""
    gesture = _gesture_index(action)
    if sensor not in SENSORS:
        raise ValueError(f"unknown sensor {sensor!r}; known: {', '.join(SENSORS)}")
    size = SENSORS[sensor]
    rng = np.random.default_rng([seed, gesture])
    scene = random_scene(size, lighting, rng)
    style = random_style(gesture, rng)
    t0_us = 1_700_000_000_000_000 + int(rng.integers(0, 10**9))  # AEDAT 4.0 carries Unix time

    idle = Idle.random(rng)

    def pose_at(t: float):
        return body_motion(gesture_pose(gesture, t, style, scene.body), t, idle), scene.placement, None

    events = np.concatenate(list(simulate(scene, pose_at, duration, t0_us, PixelParams(), frame_rate)), dtype=EVENT_DTYPE)
    write_aedat4(out, events, size, camera=SENSOR_CAMERAS[sensor])
    return len(events)


def _gesture_index(action: str) -> int:
    names = [name.replace("-", " ") for name in GESTURE_CLASSES]
    key = action.strip().lower().replace("-", " ").replace("_", " ")
    if key.isdigit() and 1 <= int(key) <= len(names):
        return int(key) - 1
    if key in names:
        return names.index(key)
    matches = [i for i, name in enumerate(names) if name.startswith(key)]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"unknown action {action!r}; choose one of: {', '.join(GESTURE_CLASSES)}")


@contextmanager
def _pool(workers: int | None):
    """Processes that render recordings, their results in order (``imap``). Leaving the block terminates the
    workers: idle once every result is read, and stopped at once when interrupted (Ctrl-C, SIGTERM) or failed,
    where a ``ProcessPoolExecutor`` would first finish the recordings it had started and queued."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        yield _SerialPool()
        return
    with multiprocessing.Pool(workers) as pool:
        yield pool


class _SerialPool:
    @staticmethod
    def imap(fn, jobs):
        return map(fn, jobs)
