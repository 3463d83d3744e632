"""Augmentation recipes named by a short spec, for configs and the command line (`masnn train --augment SPEC`).

A spec is comma-separated ``name=value`` items, each optionally ``@p``, the probability of applying it (default
below); ``value`` is one number or a range ``low-high``:

    scale=0.8-1.25    zoom factor range (log-uniform); one number a means 1/a-a
    rotate=10         angle, uniformly in +-10 degrees
    shear=0.1         shear factors, uniformly in +-0.1
    shift=0.1         translation, uniformly in +-0.1 of the sensor's side
    stretch=0.8-1.25  time-stretch factor range (log-uniform); one number a means 1/a-a
    drop=0.3          EventDrop: one of random events / a time slice / an area, ratio uniformly in 0-0.3
    polarity=0.2      one polarity loses a fraction uniformly in 0-0.2 of its events
    mix=0.3           each event changes polarity with probability r, r uniformly in 0-0.3
    invert=0.5        the probability that a crop's polarities are all inverted (the scene's negative, its
                      motion unchanged)
    noise=0.02-0.3    background noise, Hz per pixel (one number a means 0-a)
    hot=2             0-2 hot pixels firing at 10-100 Hz (a range low-high: low-high of them)

"" (the empty spec) means no augmentation; "identity" means the augmented data path with nothing applied (its
frames equal the unaugmented ones). Whatever order the spec gives, the transforms run in the order above: the
geometry, then time, then the drops, then the events added (so noise is never dropped or moved, and its rate is
the one asked for).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from masnn.datasets.transforms.augment import (
    BackgroundNoise,
    Compose,
    DropArea,
    DropEvents,
    DropTimeSlice,
    HotPixels,
    OneOf,
    PolarityBalance,
    PolarityMix,
    RandomApply,
    TimeStretch,
)
from masnn.datasets.transforms.augment_spatial import AffineChain, RandomRotation, RandomScale, RandomShear, RandomShift

IDENTITY = "identity"

# Recommended for synthetic -> real DVS128 Gesture (the preset gesture-cpu-sim2real); the reasons are in the report
# of issue 17: framing and camera pose differ (scale, rotate, shear, shift), people move at their own pace
# (stretch), the renderer's textures fire differently (drop, polarity), and a real sensor adds noise and hot pixels
# (about 0.1 Hz per pixel in the real clips' silent background; the range brackets it, on top of the renderer's own
# noise).
RECOMMENDED = "scale=0.8-1.25,rotate=10,shear=0.1,shift=0.1,stretch=0.8-1.25,drop=0.3,polarity=0.2,noise=0.02-0.3,hot=2"


def _factor(a: float) -> tuple[float, float]:
    if a <= 0:
        raise ValueError(f"a factor must be positive, got {a:g}")
    return (a, 1 / a) if a < 1 else (1 / a, a)


@dataclass(frozen=True)
class _Kind:
    build: Callable  # (sensor_size, (low, high)) -> transform
    one_number: Callable[[float], tuple[float, float]]  # what a single value means
    p: float  # default probability
    takes_range: bool = True
    geometric: bool = False  # the geometric steps run as one AffineChain (one map, one rounding)


KINDS: dict[str, _Kind] = {  # in the order they run
    "scale": _Kind(lambda s, v: RandomScale(s, v, subpixel=False), _factor, 1.0, geometric=True),
    "rotate": _Kind(lambda s, v: RandomRotation(s, v[1], subpixel=False), lambda a: (-a, a), 1.0, False, True),
    "shear": _Kind(lambda s, v: RandomShear(s, v[1], subpixel=False), lambda a: (-a, a), 1.0, False, True),
    "shift": _Kind(lambda s, v: RandomShift(s, v[1]), lambda a: (-a, a), 1.0, False, True),
    "stretch": _Kind(lambda s, v: TimeStretch(v), _factor, 1.0),
    # EventDrop applies identity or one of its three drops, each a quarter of the time: hence 0.75
    "drop": _Kind(lambda s, v: OneOf((DropEvents(v), DropTimeSlice(v), DropArea(s, v))), lambda a: (0.0, a), 0.75),
    "polarity": _Kind(lambda s, v: PolarityBalance(v), lambda a: (0.0, a), 0.5),
    "mix": _Kind(lambda s, v: PolarityMix(v), lambda a: (0.0, a), 1.0),
    # inverting every polarity is mixing them with certainty; the value is the probability (RandomApply checks it)
    "invert": _Kind(lambda s, v: RandomApply(PolarityMix((1.0, 1.0)), v[1]), lambda a: (a, a), 1.0, False),
    "noise": _Kind(lambda s, v: BackgroundNoise(s, v), lambda a: (0.0, a), 1.0),
    "hot": _Kind(lambda s, v: HotPixels(s, (int(v[0]), int(v[1]))), lambda a: (0.0, a), 0.5),
}
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_ITEM = re.compile(rf"^(?P<name>[a-z]+)=(?P<low>{_NUMBER})(?:-(?P<high>{_NUMBER}))?(?:@(?P<p>{_NUMBER}))?$")


@dataclass(frozen=True)
class Recipe:
    """A parsed spec: (name, (low, high), p) items in the order they run."""

    items: tuple[tuple[str, tuple[float, float], float], ...] = ()
    identity: bool = False

    def __bool__(self) -> bool:
        """Whether training takes the augmented path (any item, or "identity")."""
        return self.identity or bool(self.items)

    def build(self, sensor_size: tuple[int, int]) -> Compose:
        """The transform for events of a ``sensor_size`` (width, height) sensor."""
        sensor_size = tuple(sensor_size)
        geometry, steps = [], []
        for name, bounds, p in self.items:
            transform = KINDS[name].build(sensor_size, bounds)
            if KINDS[name].geometric:
                geometry.append((transform, p))
            else:
                steps.append(transform if p >= 1 else RandomApply(transform, p))
        if geometry:  # first: the geometric kinds come first in KINDS
            steps.insert(0, AffineChain(sensor_size, tuple(geometry)))
        return Compose(tuple(steps))

    def __str__(self) -> str:
        if self.identity:
            return IDENTITY
        parts = []
        for name, (low, high), p in self.items:
            suffix = "" if p == KINDS[name].p else f"@{p:g}"
            value = f"{high:g}" if not KINDS[name].takes_range else f"{low:g}-{high:g}"
            parts.append(f"{name}={value}{suffix}")
        return ",".join(parts)


def parse_augment(spec: str) -> Recipe:
    """The recipe of ``spec`` (see the module docstring); ValueError names the fault and the valid names."""
    if not isinstance(spec, str):
        raise ValueError(f"an augmentation spec is a string such as {RECOMMENDED!r}, not {spec!r}")
    spec = "".join(spec.split())
    if spec == IDENTITY:
        return Recipe(identity=True)
    found: dict[str, tuple[tuple[float, float], float]] = {}
    for item in filter(None, spec.split(",")):
        match = _ITEM.match(item)
        name = item.split("=")[0]
        if name not in KINDS:
            raise ValueError(f"unknown augmentation {name!r} in {spec!r}; valid: {', '.join(KINDS)} (or '{IDENTITY}' alone)")
        if match is None:
            raise ValueError(f"cannot read {item!r}: write name=value, name=low-high, optionally @probability")
        if name in found:
            raise ValueError(f"augmentation {name!r} given twice in {spec!r}")
        kind = KINDS[name]
        low, high = float(match["low"]), match["high"]
        if high is not None and not kind.takes_range:
            raise ValueError(f"{name} takes one number (a symmetric +- range), not {item!r}")
        bounds = kind.one_number(low) if high is None else (low, float(high))
        p = kind.p if match["p"] is None else float(match["p"])
        if bounds[0] > bounds[1] or not 0 <= p <= 1:
            raise ValueError(f"{item!r}: need low <= high and a probability in [0, 1]")
        kind.build((128, 128), bounds)  # each transform checks its own values
        found[name] = (bounds, p)
    return Recipe(tuple((name, *found[name]) for name in KINDS if name in found))


def build_augmentation(spec: str, sensor_size: tuple[int, int]) -> Compose:
    return parse_augment(spec).build(sensor_size)


__all__ = ["IDENTITY", "KINDS", "RECOMMENDED", "Recipe", "build_augmentation", "parse_augment"]
