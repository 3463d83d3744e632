"""Motion models: the 11 DVS128 Gesture classes (front view) and walking (side view).

Poses are joint positions in body units (1 = body height), image orientation (x right, y down), origin
at the pelvis; ``Placement`` turns them into pixels. The subject faces the camera, so the subject's right
arm (joints ``*_r``) is on the image's LEFT, and a rotation that is clockwise as the subject sees it is
counter-clockwise in the image (the camera looks at the rotation plane from the other side). In image
coordinates with y down an increasing angle turns clockwise on screen, so subject-clockwise circles
have a decreasing image angle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
    """Where the figure stands in the image: pelvis position and body height in pixels."""

    pelvis_x: float
    pelvis_y: float
    height_px: float

    def to_pixels(self, joints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        origin = np.array([self.pelvis_x, self.pelvis_y])
        return {name: origin + self.height_px * np.asarray(p, dtype=float) for name, p in joints.items()}


def _direction(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def reach(shoulder: np.ndarray, target: np.ndarray, upper: float, lower: float, outward: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-link inverse kinematics: (elbow, wrist) with the wrist as near ``target`` as the arm allows;
    of the two elbow solutions the one further out (sign ``outward`` in x) and lower is taken."""
    offset = target - shoulder
    distance = float(np.hypot(*offset))
    distance = min(max(distance, abs(upper - lower) + 1e-6, 1e-6), upper + lower - 1e-6)
    unit = offset / (np.hypot(*offset) + 1e-12)
    wrist = shoulder + unit * distance
    cos_shoulder = (upper**2 + distance**2 - lower**2) / (2 * upper * distance)
    angle = np.arccos(np.clip(cos_shoulder, -1, 1))
    base = np.arctan2(unit[1], unit[0])
    candidates = [shoulder + upper * _direction(base + sign * angle) for sign in (1, -1)]
    elbow = max(candidates, key=lambda e: outward * e[0] + 0.5 * e[1])
    return elbow, wrist


def front_skeleton(body: Body) -> dict[str, np.ndarray]:
    """The still parts of a standing figure seen from the front (arms hanging)."""
    neck = np.array([0.0, -body.torso])
    joints = {
        "pelvis": np.zeros(2),
        "neck": neck,
        "head": neck + [0.0, -0.085],
        "shoulder_r": neck + [-body.shoulder_half_width, 0.03],
        "shoulder_l": neck + [body.shoulder_half_width, 0.03],
        "hip_r": np.array([-body.hip_half_width, 0.02]),
        "hip_l": np.array([body.hip_half_width, 0.02]),
    }
    for side, sign in (("r", -1), ("l", 1)):
        joints[f"knee_{side}"] = joints[f"hip_{side}"] + [sign * 0.01, body.thigh]
        joints[f"ankle_{side}"] = joints[f"knee_{side}"] + [0.0, body.shin]
        elbow = joints[f"shoulder_{side}"] + [sign * 0.025, body.upper_arm]
        joints[f"elbow_{side}"] = elbow
        joints[f"wrist_{side}"] = elbow + [sign * 0.01, body.forearm]
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


def random_style(gesture: int, rng: np.random.Generator, tempo: float = 1.0) -> Style:
    """A performance's tempo and size for class index ``gesture`` (0-based), varied as people vary."""
    base = [2.0, 2.5, 2.5, 0.9, 0.9, 0.9, 0.9, 1.6, 2.2, 3.5, 0.8][gesture]
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
    )


def gesture_pose(gesture: int, t: float, style: Style, body: Body) -> dict[str, np.ndarray]:
    """Joints of class index ``gesture`` (0-based, in masnn.datasets.loaders.table.GESTURE_CLASSES order) ``t`` seconds into it."""
    joints = front_skeleton(body)
    arms = _ARM_MOTIONS[gesture](t, style, body, joints)
    joints.update(arms)
    return joints


def rest_pose(t: float, body: Body, sway_seed: int = 0) -> dict[str, np.ndarray]:
    """Standing between gestures: arms down, a little idle sway."""
    joints = front_skeleton(body)
    rng = np.random.default_rng(sway_seed)
    phases = rng.uniform(0, TAU, 4)
    for i, side in enumerate(("r", "l")):
        drift = 0.008 * np.array([np.sin(0.7 * t + phases[2 * i]), np.sin(0.5 * t + phases[2 * i + 1])])
        joints[f"wrist_{side}"] = joints[f"wrist_{side}"] + drift
        joints[f"elbow_{side}"] = joints[f"elbow_{side}"] + drift / 2
    return joints


def _arms_to(targets: dict[str, np.ndarray], body: Body, joints) -> dict[str, np.ndarray]:
    out = {}
    for side, sign in (("r", -1), ("l", 1)):
        if side in targets:
            elbow, wrist = reach(joints[f"shoulder_{side}"], targets[side], body.upper_arm, body.forearm, sign)
            out[f"elbow_{side}"], out[f"wrist_{side}"] = elbow, wrist
    return out


def _clap(t, s, body, joints):
    gap = 0.015 + s.amplitude * 0.11 * (1 + np.cos(TAU * s.frequency * t + s.phase)) / 2
    chest = joints["neck"][1] + 0.17
    return _arms_to({"r": np.array([-gap, chest]), "l": np.array([gap, chest])}, body, joints)


def _wave(side):
    sign = -1 if side == "r" else 1

    def motion(t, s, body, joints):
        shoulder = joints[f"shoulder_{side}"]
        upper_angle = np.pi / 2 - sign * (np.pi / 2 - 0.45)  # out to the side, a little down
        elbow = shoulder + body.upper_arm * _direction(upper_angle)
        swing = s.amplitude * 0.5 * np.sin(TAU * s.frequency * t + s.phase)
        wrist = elbow + body.forearm * _direction(-np.pi / 2 + swing)
        return {f"elbow_{side}": elbow, f"wrist_{side}": wrist}

    return motion


def _circle(side, subject_clockwise):
    # subject-clockwise is screen-counter-clockwise: the image angle decreases
    turn = -1 if subject_clockwise else 1

    def motion(t, s, body, joints):
        shoulder = joints[f"shoulder_{side}"]
        angle = s.phase + turn * TAU * s.frequency * t
        reach_length = (body.upper_arm + body.forearm) * min(0.97, 0.85 * s.amplitude + 0.1)
        wrist = shoulder + reach_length * _direction(angle)
        elbow = shoulder + body.upper_arm * _direction(angle)
        return {f"elbow_{side}": elbow, f"wrist_{side}": wrist}

    return motion


def _arm_roll(t, s, body, joints):
    centre = np.array([0.0, joints["neck"][1] + 0.19])
    radius = 0.05 * s.amplitude
    angle = s.phase + s.direction * TAU * s.frequency * t
    offsets = [radius * np.array([np.cos(a) * 1.2, np.sin(a)]) for a in (angle, angle + np.pi)]
    return _arms_to({"r": centre + [-0.025, 0] + offsets[0], "l": centre + [0.025, 0] + offsets[1]}, body, joints)


def _strike(phase):
    """A drum hit: quick down, slower up; 0 = up, 1 = on the drum."""
    cycle = (phase / TAU) % 1.0
    return np.sin(np.pi * min(cycle / 0.35, 1.0)) if cycle < 0.35 else 0.0


def _air_drums(t, s, body, joints):
    rng = np.random.default_rng(s.seed)
    beat = TAU * s.frequency * t + s.phase
    hit = int(beat // TAU)
    drum_shift = rng.uniform(-0.03, 0.03, size=(hit + 2, 2))  # each hit on a slightly different drum
    targets = {}
    for side, sign, offset in (("r", -1, 0.0), ("l", 1, np.pi)):
        base = np.array([sign * 0.12, joints["neck"][1] + 0.22]) + [drum_shift[hit, 0 if side == "r" else 1], 0]
        targets[side] = base + [0, -0.13 * s.amplitude * (1 - _strike(beat + offset))]
    return _arms_to(targets, body, joints)


def _air_guitar(t, s, body, joints):
    chest = joints["neck"][1]
    strum = 0.05 * s.amplitude * np.sin(TAU * s.frequency * t + s.phase)
    slide = 0.04 * np.sin(TAU * 0.35 * t + s.phase / 2)
    neck_hand = np.array([0.27 + slide, chest + 0.12 - 0.3 * slide])  # subject's left hand out on the neck
    strum_hand = np.array([-0.02, chest + 0.30 + strum])  # right hand strumming at the hip
    return _arms_to({"l": neck_hand, "r": strum_hand}, body, joints)


def _other(t, s, body, joints):
    targets = {}
    rest = front_skeleton(body)
    for i, side in enumerate(("r", "l")):
        waves = s.wander[6 * i : 6 * i + 6]
        dx = sum(a * np.sin(TAU * f * t + p) for f, a, p in waves[:3]) * s.amplitude * 1.5
        dy = sum(a * np.sin(TAU * f * t + p) for f, a, p in waves[3:]) * s.amplitude * 1.5
        targets[side] = rest[f"wrist_{side}"] + [dx, dy - 0.12]
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
    return joints


def far_side(direction: int) -> str:
    """Facing the image's right, a walker shows the camera their left side: the right limbs are far."""
    return "_r" if direction > 0 else "_l"


def walk_speed(gait: Gait) -> float:
    """Body heights per second."""
    return gait.cadence * gait.step_length
