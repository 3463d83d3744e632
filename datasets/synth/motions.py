"""Motion models: the 11 DVS128 Gesture classes (front view) and walking (side view), in three dimensions.

Poses are joint positions in body units (1 = body height): x right and y down as in the image, z away from
the camera (depth), origin at the pelvis; ``Placement`` projects them into pixels through a pinhole camera.
The subject faces the camera, so the subject's right arm (joints ``*_r``) is on the image's LEFT, and a rotation
that is clockwise as the subject sees it is counter-clockwise in the image (the camera looks at the rotation
plane from the other side). In image coordinates with y down an increasing angle turns clockwise on screen, so
subject-clockwise circles have a decreasing image angle.

Arms are placed by two-bone inverse kinematics towards a 3D hand target with the elbow pointing down, out and
back, as people hold them: a clap's hands meet in front of the chest with the forearms pointing at the camera
(short on screen), not with the elbows stretched sideways. The body is never still: it sways, breathes and
shifts its weight, and the torso and shoulders follow the arms (``body_motion``), so the resting body shows as
faint outlines, as in real recordings.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

TAU = 2 * np.pi


@dataclass(frozen=True)
class Body:
    """Proportions in body heights."""

    shoulder_half_width: float = 0.12
    upper_arm: float = 0.17
    forearm: float = 0.16
    thigh: float = 0.245
    shin: float = 0.245
    torso: float = 0.30  # pelvis to neck
    hip_half_width: float = 0.065

    def varied(self, rng: np.random.Generator, spread: float = 0.06) -> "Body":
        scale = lambda v: float(v * rng.normal(1.0, spread))  # noqa: E731
        return Body(*(scale(getattr(self, name)) for name in self.__dataclass_fields__))


@dataclass(frozen=True)
class Placement:
    """The camera's view of the figure: the pelvis's pixel position, the body height in pixels at the pelvis's
    depth, the camera's distance to the pelvis in body heights (perspective: nearer parts look larger) and the
    principal point (the image centre)."""

    pelvis_x: float
    pelvis_y: float
    height_px: float
    distance: float = 2.2
    centre: tuple[float, float] = (64.0, 64.0)

    def moved(self, dx: float, dy: float) -> "Placement":
        """The same view with the figure moved by (dx, dy) pixels."""
        return replace(self, pelvis_x=self.pelvis_x + dx, pelvis_y=self.pelvis_y + dy)

    def scale(self, z: float) -> float:
        """Pixels per body unit at depth z (body units behind the pelvis)."""
        return self.height_px * self.distance / max(self.distance + z, 0.05)

    def to_pixels(self, joints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pixel (x, y) of every joint (2D joints are taken at the pelvis's depth)."""
        cx, cy = self.centre
        out = {}
        for name, p in joints.items():
            z = float(p[2]) if len(p) > 2 else 0.0
            ratio = self.distance / max(self.distance + z, 0.05)
            out[name] = np.array([cx + (self.pelvis_x - cx) * ratio + self.height_px * ratio * p[0],
                                  cy + (self.pelvis_y - cy) * ratio + self.height_px * ratio * p[1]])
        return out


def _direction(angle: float, z: float = 0.0) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle), z])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


def reach(shoulder: np.ndarray, target: np.ndarray, upper: float, lower: float, pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone inverse kinematics in 3D: (elbow, wrist) with the wrist as near ``target`` as the arm allows and
    the elbow bent towards ``pole`` (a direction), as far as the arm's plane allows."""
    offset = target - shoulder
    distance = float(np.linalg.norm(offset))
    axis = offset / distance if distance > 1e-9 else np.array([0.0, 1.0, 0.0])
    distance = min(max(distance, abs(upper - lower) + 1e-6), upper + lower - 1e-6)
    wrist = shoulder + axis * distance
    cos_shoulder = (upper**2 + distance**2 - lower**2) / (2 * upper * distance)
    angle = np.arccos(np.clip(cos_shoulder, -1, 1))
    bend = pole - np.dot(pole, axis) * axis
    if np.linalg.norm(bend) < 1e-9:  # the pole lies along the arm: any perpendicular will do
        bend = np.cross(axis, [0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.cross(axis, [1.0, 0.0, 0.0])
    bend = _unit(bend)
    elbow = shoulder + upper * (np.cos(angle) * axis + np.sin(angle) * bend)
    return elbow, wrist


def _elbow_pole(sign: float) -> np.ndarray:
    """Elbows point down, out to their side and back."""
    return np.array([sign * 0.6, 1.0, 0.5])


def front_skeleton(body: Body) -> dict[str, np.ndarray]:
    """The still parts of a standing figure seen from the front (arms hanging)."""
    neck = np.array([0.0, -body.torso, 0.0])
    joints = {
        "pelvis": np.zeros(3),
        "neck": neck,
        "head": neck + [0.0, -0.085, 0.0],
        "shoulder_r": neck + [-body.shoulder_half_width, 0.03, 0.0],
        "shoulder_l": neck + [body.shoulder_half_width, 0.03, 0.0],
        "hip_r": np.array([-body.hip_half_width, 0.02, 0.0]),
        "hip_l": np.array([body.hip_half_width, 0.02, 0.0]),
    }
    for side, sign in (("r", -1), ("l", 1)):
        joints[f"knee_{side}"] = joints[f"hip_{side}"] + [sign * 0.01, body.thigh, -0.01]
        joints[f"ankle_{side}"] = joints[f"knee_{side}"] + [0.0, body.shin, 0.01]
        elbow = joints[f"shoulder_{side}"] + [sign * 0.03, body.upper_arm, 0.0]
        joints[f"elbow_{side}"] = elbow
        joints[f"wrist_{side}"] = elbow + [sign * 0.01, body.forearm, -0.02]
    return joints


@dataclass(frozen=True)
class Style:
    """How one performance of a gesture goes: tempo, size, and its own random details."""

    frequency: float = 1.0  # repetitions per second
    amplitude: float = 1.0  # 1 = typical size
    phase: float = 0.0
    direction: int = 1  # for arm roll: forward or backward
    seed: int = 0
    wander: tuple = field(default=())  # for "other gestures": random sinusoids
    shape: tuple = field(default=(0.5, 0.5, 0.5, 0.5, 0.5))  # uniform draws in [0, 1): where and how a motion is held


def random_style(gesture: int, rng: np.random.Generator, tempo: float = 1.0) -> Style:
    """A performance's tempo and size for class index ``gesture`` (0-based), varied as people vary."""
    # claps: 1.7-3 a second (a real DVS128 Gesture clap: 2.7, its event rate peaking at 5.4 Hz)
    base = [2.3, 2.5, 2.5, 0.9, 0.9, 0.9, 0.9, 1.6, 2.2, 3.5, 0.8][gesture]
    wander = tuple(
        (rng.uniform(0.3, 1.8), rng.uniform(0.03, 0.1), rng.uniform(0, TAU)) for _ in range(12)
    )
    return Style(
        frequency=base * tempo * rng.uniform(0.75, 1.3),
        amplitude=rng.uniform(0.75, 1.15),
        phase=rng.uniform(0, TAU),
        direction=int(rng.choice([-1, 1])),
        seed=int(rng.integers(1 << 30)),
        wander=wander,
        shape=tuple(float(v) for v in rng.uniform(0, 1, 5)),
    )


def _between(low: float, high: float, draw: float) -> float:
    return low + (high - low) * draw


def _cycle(s: Style, t: float) -> float:
    """How far (radians) the repetitions have gone at t: a tempo that drifts from one repetition to the next
    (people do not move like metronomes), about +-15 % around the style's frequency."""
    drift = sum(a * np.sin(TAU * f * t + p) / (TAU * f) for f, a, p in s.wander[:2]) if s.wander else 0.0
    return TAU * s.frequency * (t + 2.0 * drift)


def _size(s: Style, t: float) -> float:
    """The style's amplitude, varying by about +-10 % from one repetition to the next."""
    if not s.wander:
        return s.amplitude
    f, a, p = s.wander[2]
    return s.amplitude * (1 + 1.5 * a * np.sin(TAU * 0.5 * f * t + p))


def gesture_pose(gesture: int, t: float, style: Style, body: Body) -> dict[str, np.ndarray]:
    """Joints of class index ``gesture`` (0-based, in masnn.datasets.loaders.table.GESTURE_CLASSES order) ``t`` seconds into it."""
    joints = front_skeleton(body)
    arms = _ARM_MOTIONS[gesture](t, style, body, joints)
    joints.update(arms)
    return joints


def rest_pose(t: float, body: Body, sway_seed: int = 0) -> dict[str, np.ndarray]:
    """Standing between gestures: arms down, a little idle drift of the hands."""
    joints = front_skeleton(body)
    rng = np.random.default_rng(sway_seed)
    phases = rng.uniform(0, TAU, 4)
    for i, side in enumerate(("r", "l")):
        drift = 0.008 * np.array([np.sin(0.7 * t + phases[2 * i]), np.sin(0.5 * t + phases[2 * i + 1]), 0.0])
        joints[f"wrist_{side}"] = joints[f"wrist_{side}"] + drift
        joints[f"elbow_{side}"] = joints[f"elbow_{side}"] + drift / 2
    return joints


UPPER_BODY = ("neck", "head", "shoulder_r", "shoulder_l", "elbow_r", "elbow_l", "wrist_r", "wrist_l")


@dataclass(frozen=True)
class Idle:
    """A person's involuntary motion while standing: sway of the upper body about the pelvis, weight shift,
    breathing, small head movements. Amplitudes in body units (radians for the sway), periods of seconds."""

    sway: float = 0.012
    shift: float = 0.006
    breath: float = 0.003
    head: float = 0.006
    follow: float = 0.04  # how much a raised arm lifts its shoulder and leans the torso towards it
    phases: tuple = (0.0, 1.0, 2.0, 3.0, 4.0)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Idle":
        return cls(sway=rng.uniform(0.004, 0.025), shift=rng.uniform(0.002, 0.012), breath=rng.uniform(0.001, 0.005),
                   head=rng.uniform(0.004, 0.02), follow=rng.uniform(0.02, 0.08), phases=tuple(rng.uniform(0, TAU, 5)))

    def scaled(self, gain: float) -> "Idle":
        """The same person moving ``gain`` times as much (the arms' pull on the shoulders unchanged)."""
        return Idle(self.sway * gain, self.shift * gain, self.breath * gain, self.head * gain, self.follow, self.phases)


INTERLUDE_KINDS = ("still", "fidget", "step", "crouch", "sit")
_KIND_SHARES = (0.2, 0.2, 0.3, 0.3)  # of still, fidget, step and crouch; sits take ``sit_share`` off them all


@dataclass(frozen=True)
class View:
    """Another camera's view of the person, for stretches recorded from elsewhere: turned ``yaw`` about the vertical
    (0 = from the front), looking down ``pitch`` from above, rolled ``roll`` about its own axis (radians); the
    person ``size`` times the gesture framing's height, the pelvis at (``x``, ``y``) in fractions of the image."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    size: float = 1.0
    x: float = 0.5
    y: float = 0.5

    @classmethod
    def random(cls, rng: np.random.Generator) -> "View":
        # people recorded sitting down and standing up from a side or from above, small, the camera often rolled
        roll = rng.uniform(-np.pi, np.pi) if rng.uniform() < 0.5 else rng.normal(0.0, 0.15)
        return cls(yaw=rng.uniform(-np.pi, np.pi), pitch=rng.uniform(0.0, 1.2), roll=float(roll),
                   size=rng.uniform(0.4, 0.8), x=rng.uniform(0.3, 0.7), y=rng.uniform(0.3, 0.7))

    def rotation(self) -> np.ndarray:
        """The 3 x 3 matrix taking body coordinates (x right, y down, z away) into this camera's."""
        def turn(angle: float, a: int, b: int) -> np.ndarray:
            m = np.eye(3)
            c, s = np.cos(angle), np.sin(angle)
            m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
            return m

        return turn(self.roll, 0, 1) @ turn(self.pitch, 1, 2) @ turn(-self.yaw, 0, 2)

    def seen(self, joints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The joints turned about the standing pelvis (the origin) as this camera sees them."""
        rotation = self.rotation()
        return {name: rotation @ np.asarray(p, dtype=float) for name, p in joints.items()}

    def placement(self, framing: Placement, sensor_size: tuple[int, int]) -> Placement:
        width, height = sensor_size
        return replace(framing, pelvis_x=self.x * width, pelvis_y=self.y * height, height_px=self.size * framing.height_px)


def sit_pose(seated: float, lean: float, body: Body, joints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``joints`` (standing, pelvis at the origin) sitting down onto a seat behind the person: ``seated`` 0 stands,
    1 sits with the thighs level. The pelvis goes down and back, the feet stay planted, the knees come forward
    (two-bone inverse kinematics), and the upper body leans ``lean`` radians towards the camera. Returns a new dict."""
    out = lean_forward(joints, lean)
    # seated, the hip is a thigh behind the knee and a shin above the ankle (a little less: the foot's height)
    drop = np.array([0.0, 0.95 * body.thigh, body.thigh]) * seated
    for name in out:
        if not name.startswith("ankle"):
            out[name] = out[name] + drop
    for side in ("r", "l"):
        out[f"knee_{side}"], _ = reach(out[f"hip_{side}"], out[f"ankle_{side}"], body.thigh, body.shin, np.array([0.0, 0.0, -1.0]))
    return out


@dataclass(frozen=True)
class Interlude:
    """A stretch with no gesture in it, as people fill the time between gestures: standing still, fidgeting
    (swaying and looking around), stepping sideways and back, or bobbing down and up (sitting down and standing
    up, crouching, leaning forward as people do), or, seen by another camera (``view``), sitting down and standing
    up again and again. The whole body moves; the arms only hang. ``amplitude``: how many times the person's idle
    motion for still and fidget, how far the pelvis travels (body heights) for step and crouch, the largest lean
    in units of 0.7 radians (40 degrees) for sit; one way of the trip takes ``travel_s``, with a human velocity profile (smoothstep)."""

    kind: str
    duration: float
    amplitude: float
    travel_s: float = 0.5
    direction: int = 1
    view: View | None = None

    @classmethod
    def random(cls, rng: np.random.Generator, duration: float, sit_share: float = 0.0) -> "Interlude":
        """With ``sit_share`` 0 the draws are those of the kinds without sits, so their recordings stay the same."""
        kind = str(rng.choice(INTERLUDE_KINDS, p=[*(share * (1 - sit_share) for share in _KIND_SHARES), sit_share]))
        amplitude = {"still": rng.uniform(0.1, 0.5), "fidget": rng.uniform(2.5, 5.0), "step": rng.uniform(0.08, 0.3),
                     "crouch": rng.uniform(0.08, 0.35)}.get(kind, 0.0)
        interlude = cls(kind, duration, float(amplitude), duration * rng.uniform(0.25, 0.45), int(rng.choice([-1, 1])))
        if kind != "sit":
            return interlude
        return replace(interlude, amplitude=rng.uniform(0.5, 0.9), travel_s=rng.uniform(0.8, 1.4), view=View.random(rng))

    def seated(self, t: float) -> float:
        """For sit: 0 standing, 1 seated, t seconds in. Down, a pause of a quarter of the trip, up, a pause, and
        again; ``direction`` -1 starts seated."""
        pause = 0.25 * self.travel_s
        period = 2 * (self.travel_s + pause)
        into = (t + (period / 2 if self.direction < 0 else 0.0)) % period
        half = period / 2
        way = _smoothstep(min(into % half, self.travel_s) / self.travel_s)
        return way if into < half else 1.0 - way

    def sit_lean(self, t: float) -> float:
        """For sit: the upper body's lean forward (radians), largest halfway down or up, as the weight leaves the
        seat or the feet."""
        seated = self.seated(t)
        return 0.7 * self.amplitude * 4 * seated * (1 - seated)

    def idle_gain(self, t: float) -> float:
        """The idle motion's gain t seconds in: eased from 1 to the interlude's over 0.3 s at both ends."""
        if self.kind not in ("still", "fidget"):
            return 1.0
        ease = _smoothstep(min(t, self.duration - t) / 0.3)
        return 1.0 + (self.amplitude - 1.0) * ease

    def _away(self, t: float) -> float:
        """0 where the person stood, 1 at the far end of the trip: away, a hold, and back before the end."""
        margin = 0.05 * self.duration
        return _smoothstep((t - margin) / self.travel_s) - _smoothstep((t - (self.duration - margin - self.travel_s)) / self.travel_s)

    def offset(self, t: float) -> tuple[float, float]:
        """(x, y) of the whole body t seconds in, body heights."""
        if self.kind not in ("step", "crouch"):
            return 0.0, 0.0
        away = self._away(t)
        if self.kind == "step":  # a step bobs the body up a little as the weight passes over the foot
            return self.direction * self.amplitude * away, -0.01 * np.sin(np.pi * away)
        return 0.0, self.amplitude * away

    def lean(self, t: float) -> float:
        """How far (radians) the upper body leans towards the camera t seconds in: people sitting down or standing
        up lean forward to keep their balance, the more the deeper they go (about 7-30 degrees)."""
        return 1.5 * self.amplitude * self._away(t) if self.kind == "crouch" else 0.0


def lean_forward(joints: dict[str, np.ndarray], angle: float) -> dict[str, np.ndarray]:
    """The torso turned ``angle`` radians about the pelvis towards the camera (-z): the head and shoulders come
    down on screen and nearer, and the arms, hanging, move with their shoulders. Returns a new dict; the legs stay."""
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    out = {name: np.array(p, dtype=float) for name, p in joints.items()}
    for name in ("neck", "head", "shoulder_r", "shoulder_l"):
        y, z = out[name][1], out[name][2]
        out[name][1], out[name][2] = cos_a * y - sin_a * z, sin_a * y + cos_a * z
    for side in ("r", "l"):
        moved = out[f"shoulder_{side}"] - joints[f"shoulder_{side}"]
        for name in (f"elbow_{side}", f"wrist_{side}"):
            out[name] += moved
    return out


def body_motion(joints: dict[str, np.ndarray], t: float, idle: Idle) -> dict[str, np.ndarray]:
    """The pose with the body moving under the arms: the upper body sways about the pelvis and leans towards a
    raised arm, a raised arm lifts its shoulder, the chest breathes, the head moves on its own, and the whole
    person shifts their weight. Returns a new dict; the input is not changed."""
    ph = idle.phases
    out = {name: np.array(p, dtype=float) for name, p in joints.items()}
    lean = 0.0
    for side, sign in (("r", -1.0), ("l", 1.0)):
        if f"wrist_{side}" in out and f"shoulder_{side}" in out:
            raised = max(0.0, (out[f"shoulder_{side}"][1] - out[f"wrist_{side}"][1]) / 0.3)  # 1 = hand 0.3 above
            out[f"shoulder_{side}"][1] -= idle.follow * 0.3 * min(raised, 1.0)
            lean += sign * idle.follow * 0.2 * min(raised, 1.0)
    angle = idle.sway * np.sin(TAU * 0.23 * t + ph[0]) + lean
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    breath = idle.breath * np.sin(TAU * 0.25 * t + ph[1])
    for name in UPPER_BODY:
        if name in out:
            x, y = out[name][0], out[name][1]
            out[name][0], out[name][1] = cos_a * x - sin_a * y, sin_a * x + cos_a * y + (-breath if "shoulder" in name else 0.0)
    if "head" in out:
        out["head"] = out["head"] + idle.head * np.array([np.sin(TAU * 0.31 * t + ph[2]), 0.5 * np.sin(TAU * 0.4 * t + ph[3]), 0.0])
    shift = np.array([idle.shift * np.sin(TAU * 0.11 * t + ph[4]), 0.0, 0.0])
    return {name: p + shift for name, p in out.items()}


def _arms_to(targets: dict[str, np.ndarray], body: Body, joints) -> dict[str, np.ndarray]:
    out = {}
    for side, sign in (("r", -1), ("l", 1)):
        if side in targets:
            elbow, wrist = reach(joints[f"shoulder_{side}"], targets[side], body.upper_arm, body.forearm, _elbow_pole(sign))
            out[f"elbow_{side}"], out[f"wrist_{side}"] = elbow, wrist
    return out


def _clap(t, s, body, joints):
    # The elbows stay low, forward of the body and mostly inside the shoulders; the forearms swing about them, so
    # the hands open and close in front of the chest and the upper arms hardly move: the moving region is the
    # hands' and forearms' compact blob, as in the real recordings. People clap unevenly: one hand often does most
    # of the moving, and the hands often meet off the midline (a real DVS128 Gesture clap sits wholly on the
    # subject's right, about 0.2 body heights from the midline), both elbows shifted towards that side.
    cycle = _cycle(s, t) + s.phase
    # the real clap's moving region is about 50 x 30 pixels, the size of the real drumming's: wide-opening hands on
    # rising forearms (with the hands at elbow height and half the opening, synthetic claps made half that area)
    opening = _size(s, t) * _between(0.6, 1.3, s.shape[1]) * (1 + np.cos(cycle)) / 2  # radians, per hand at most
    right_share = _between(0.35, 1.0, s.shape[3])
    meet = np.array([_between(-0.15, 0.15, s.shape[2]), 0.0, 0.0])
    raise_hands = body.forearm * _between(0.2, 0.7, s.shape[0]) - 0.02 * np.sin(cycle)  # forearms rising
    out = {}
    for side, sign, share in (("r", -1, right_share), ("l", 1, 1.35 - right_share)):
        shoulder = joints[f"shoulder_{side}"]
        # both elbows shift with the hands, so the forearms meet as in a centred clap and none reaches across
        sideways = np.clip(sign * body.upper_arm * _between(-0.45, 0.05, s.shape[0]) + meet[0], -0.8 * body.upper_arm, 0.8 * body.upper_arm)
        down, forward = _unit(np.array([1.0, _between(0.5, 1.0, s.shape[4])])) * np.sqrt(body.upper_arm**2 - sideways**2)
        elbow = shoulder + np.array([sideways, down, -forward])
        target = meet + [sign * 0.015, elbow[1] - raise_hands, 0.0]
        flat = np.hypot(target[0] - elbow[0], target[1] - elbow[1])
        target[2] = elbow[2] - np.sqrt(max(body.forearm**2 - flat**2, 0.01 * body.forearm**2))
        x, y, z = _unit(target - elbow)
        c, k = np.cos(opening * share), np.sin(opening * share)
        direction = np.array([c * x - sign * k * z, y, sign * k * x + c * z])  # turned outwards about the vertical
        out[f"elbow_{side}"], out[f"wrist_{side}"] = elbow, elbow + body.forearm * direction
    return out


def _wave(side):
    sign = -1 if side == "r" else 1

    def motion(t, s, body, joints):
        shoulder = joints[f"shoulder_{side}"]
        upper_angle = np.pi / 2 - sign * (np.pi / 2 - _between(0.25, 0.6, s.shape[0]))  # out to the side, a little down
        elbow = shoulder + body.upper_arm * _direction(upper_angle, -0.1)
        swing = _size(s, t) * 0.5 * np.sin(_cycle(s, t) + s.phase)
        wrist = elbow + body.forearm * _unit(_direction(-np.pi / 2 + swing, -_between(0.0, 0.4, s.shape[1])))
        return {f"elbow_{side}": elbow, f"wrist_{side}": wrist}

    return motion


def _circle(side, subject_clockwise):
    # subject-clockwise is screen-counter-clockwise: the image angle decreases
    turn = -1 if subject_clockwise else 1
    sign = -1 if side == "r" else 1

    def motion(t, s, body, joints):
        shoulder = joints[f"shoulder_{side}"]
        arm = body.upper_arm + body.forearm
        angle = s.phase + turn * _cycle(s, t)
        # a straight arm sweeps a cone: the hand's circle is centred out to the side of the shoulder, wider up
        # and down than across (the arm cannot cross the chest), and comes forward where the circle is small; the
        # real DVS128 Gesture circle is 1.6 times as tall as wide, its centre a quarter of its height out from the
        # shoulder
        outward = sign * arm * _between(0.05, 0.5, s.shape[0])
        across, up_down = arm * _between(0.4, 0.8, s.shape[1]) * _size(s, t), arm * _between(0.8, 0.97, s.shape[2])
        planar = np.array([outward + across * np.cos(angle), up_down * np.sin(angle)])
        planar *= min(1.0, 0.98 * arm / (np.hypot(*planar) + 1e-9))
        depth = -np.sqrt(max(arm**2 - planar @ planar, 0.0))
        wrist = shoulder + np.array([planar[0], planar[1], depth])
        elbow = shoulder + (wrist - shoulder) * body.upper_arm / arm
        return {f"elbow_{side}": elbow, f"wrist_{side}": wrist}

    return motion


def _arm_roll(t, s, body, joints):
    # forearms rolling around each other in front of the chest, forwards or backwards: the hands circle in
    # the body's side plane (up-down and towards the camera), half a turn apart
    centre = np.array([0.0, joints["neck"][1] + _between(0.15, 0.24, s.shape[0]), -_between(0.16, 0.24, s.shape[1])])
    radius = _between(0.04, 0.1, s.shape[2]) * _size(s, t)
    angle = s.phase + s.direction * _cycle(s, t)
    spread = _between(0.02, 0.05, s.shape[3])
    targets = {}
    for side, sign, a in (("r", -1, angle), ("l", 1, angle + np.pi)):
        targets[side] = centre + [sign * spread + 0.3 * radius * np.cos(a), radius * np.sin(a), radius * np.cos(a)]
    return _arms_to(targets, body, joints)


def _strike(phase, share):
    """A drum hit, down and up again over ``share`` of the cycle, the hand resting up for the rest of it; 0 = up,
    1 = on the drum."""
    cycle = (phase / TAU) % 1.0
    return np.sin(np.pi * cycle / share) if cycle < share else 0.0


def _air_drums(t, s, body, joints):
    # Each hit lands on another drum of the kit, spread across the front of the belly (the hands cross the
    # body's midline, as real air drummers' do); a hand moves to its next drum as it rises. Drummers range from
    # quick hits with a pause between to hands that never stop (a real DVS128 Gesture drummer's hands rise and
    # fall like a sine, 1.8 times a second, in turn): a hit takes 35-95 % of the cycle.
    rng = np.random.default_rng(s.seed)
    beat = _cycle(s, t) + s.phase
    reach_x = _between(0.05, 0.11, s.shape[3])
    drums = rng.uniform([-reach_x, -0.04], [reach_x, 0.04], size=(int(beat // TAU) + 3, 2, 2))  # (hit, hand, x / y)
    lift = _between(0.12, 0.3, s.shape[0]) * _size(s, t)
    share = _between(0.35, 0.95, s.shape[4])
    targets = {}
    for hand, (side, sign, offset) in enumerate((("r", -1, 0.0), ("l", 1, np.pi))):
        phase = beat + offset
        hit, into = int(phase // TAU), (phase / TAU) % 1.0
        travel = _smoothstep((into - share / 2) / (1 - share / 2))  # from the drum on
        drum = (1 - travel) * drums[hit, hand] + travel * drums[hit + 1, hand]
        base = np.array([sign * _between(0.02, 0.1, s.shape[1]) + drum[0],
                         joints["neck"][1] + _between(0.24, 0.38, s.shape[2]) + drum[1], -0.2])
        up = 1 - _strike(phase, share)
        targets[side] = base + [0, -lift * up, 0.05 * up]
    return _arms_to(targets, body, joints)


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _air_guitar(t, s, body, joints):
    chest = joints["neck"][1]
    strum = _between(0.04, 0.07, s.shape[0]) * _size(s, t) * np.sin(_cycle(s, t) + s.phase)
    slide = 0.04 * np.sin(TAU * 0.35 * t + s.phase / 2)
    neck_hand = np.array([0.27 + slide, chest + _between(0.08, 0.16, s.shape[1]) - 0.3 * slide, -0.12])  # subject's left hand on the neck
    strum_hand = np.array([-0.02, chest + _between(0.26, 0.32, s.shape[2]) + strum, -0.15])  # right hand strumming at the hip
    return _arms_to({"l": neck_hand, "r": strum_hand}, body, joints)


def _other(t, s, body, joints):
    targets = {}
    rest = front_skeleton(body)
    for i, side in enumerate(("r", "l")):
        waves = s.wander[6 * i : 6 * i + 6]
        dx = sum(a * np.sin(TAU * f * t + p) for f, a, p in waves[:3]) * s.amplitude * 1.5
        dy = sum(a * np.sin(TAU * f * t + p) for f, a, p in waves[3:]) * s.amplitude * 1.5
        targets[side] = rest[f"wrist_{side}"] + [dx, dy - 0.12, -0.1 - 0.5 * abs(dx)]
    return _arms_to(targets, body, joints)


_ARM_MOTIONS = [
    _clap,
    _wave("r"),
    _wave("l"),
    _circle("r", subject_clockwise=True),
    _circle("r", subject_clockwise=False),
    _circle("l", subject_clockwise=True),
    _circle("l", subject_clockwise=False),
    _arm_roll,
    _air_drums,
    _air_guitar,
    _other,
]


@dataclass(frozen=True)
class Gait:
    """A walker's style: what identifies a person in DVS128 Gait. Angles in radians."""

    cadence: float = 1.8  # steps per second
    step_length: float = 0.38  # body heights per step
    hip_swing: float = 0.38
    knee_flex: float = 0.9
    arm_swing: float = 0.35
    elbow_flex: float = 0.35
    lean: float = 0.03  # torso tilt forward
    bob: float = 0.012  # pelvis rise and fall
    stature: float = 1.0  # height relative to an average adult
    body: Body = Body()

    def varied(self, rng: np.random.Generator, spread: float) -> "Gait":
        """The same person on another walk or day: every trait jittered by a relative ``spread``."""
        values = {name: float(getattr(self, name) * rng.normal(1.0, spread)) for name in self.__dataclass_fields__ if name != "body"}
        return Gait(**values, body=self.body.varied(rng, spread / 2))


def random_gait(rng: np.random.Generator) -> Gait:
    """A new identity: proportions and walking style drawn from ranges adults show."""
    return Gait(
        cadence=rng.uniform(1.55, 2.1),
        step_length=rng.uniform(0.3, 0.45),
        hip_swing=rng.uniform(0.28, 0.48),
        knee_flex=rng.uniform(0.6, 1.15),
        arm_swing=rng.uniform(0.1, 0.6),
        elbow_flex=rng.uniform(0.1, 0.6),
        lean=rng.uniform(-0.02, 0.09),
        bob=rng.uniform(0.006, 0.02),
        stature=rng.uniform(0.88, 1.12),  # about 1.55 m to 1.95 m
        body=Body().varied(rng, 0.08),
    )


def walk_pose(t: float, gait: Gait, direction: int, phase0: float = 0.0) -> dict[str, np.ndarray]:
    """Side view of a walker at ``t`` s, pelvis at the origin (the caller moves it), facing ``direction``
    (+1: towards the image's right). The far side's joints keep their own names; see ``far_side``."""
    body = gait.body
    phase = phase0 + TAU * gait.cadence / 2 * t  # one gait cycle = two steps
    pelvis = np.array([0.0, -gait.bob * np.cos(2 * phase)])
    neck = pelvis + [direction * gait.lean * body.torso, -body.torso]
    joints = {"pelvis": pelvis, "neck": neck, "head": neck + [direction * 0.015, -0.085]}
    for side, offset in (("r", 0.0), ("l", np.pi)):
        leg_phase = phase + offset
        thigh = gait.hip_swing * np.sin(leg_phase)
        knee = gait.knee_flex * max(0.0, np.cos(leg_phase)) ** 1.5 + 0.08
        hip = pelvis + [0.0, 0.02]
        knee_point = hip + body.thigh * np.array([direction * np.sin(thigh), np.cos(thigh)])
        ankle = knee_point + body.shin * np.array([direction * np.sin(thigh - knee), np.cos(thigh - knee)])
        joints[f"hip_{side}"], joints[f"knee_{side}"], joints[f"ankle_{side}"] = hip, knee_point, ankle
        swing = -gait.arm_swing * np.sin(leg_phase)  # arms swing against the same side's leg
        shoulder = neck + [0.0, 0.03]
        elbow = shoulder + body.upper_arm * np.array([direction * np.sin(swing), np.cos(swing)])
        forearm = swing + gait.elbow_flex
        wrist = elbow + body.forearm * np.array([direction * np.sin(forearm), np.cos(forearm)])
        joints[f"shoulder_{side}"], joints[f"elbow_{side}"], joints[f"wrist_{side}"] = shoulder, elbow, wrist
    # seen from the side, the body's width lies along the depth: the far side's limbs sit behind the near ones
    far = far_side(direction)
    depth = {"pelvis": 0.0, "neck": 0.0, "head": 0.0}
    for name in joints:
        if name not in depth:
            width = body.shoulder_half_width * 0.8 if name.split("_")[0] in ("shoulder", "elbow", "wrist") else body.hip_half_width
            depth[name] = width if name.endswith(far) else -width
    return {name: np.append(p, depth[name]) for name, p in joints.items()}


def far_side(direction: int) -> str:
    """Facing the image's right, a walker shows the camera their left side: the right limbs are far."""
    return "_r" if direction > 0 else "_l"


def walk_speed(gait: Gait) -> float:
    """Body heights per second."""
    return gait.cadence * gait.step_length
