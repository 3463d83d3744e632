"""An articulated human figure drawn as an intensity image, for the synthetic event camera.

A pose is a set of 2D joint positions in image pixels (x right, y down), made by the motion models in
``motions.py``. ``render`` draws it over a background: clothing (torso, upper arms, legs) and skin
(head, forearms, hands) are two coverage layers drawn with OpenCV's anti-aliased, sub-pixel lines, then
blended over the background intensity. Anti-aliasing matters: a DVS sees sub-pixel motion as gradual
intensity change, and a hard-edged figure would fire in bursts when an edge jumps a whole pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # cv2 drawing at 1/16 pixel
_SCALE = 1 << SUBPIXEL_BITS

# Limbs: (joint, joint, layer, thickness as a fraction of body height)
CLOTHING_LIMBS = [
    ("neck", "pelvis", 0.16),
    ("shoulder_r", "shoulder_l", 0.07),
    ("hip_r", "hip_l", 0.07),
    ("shoulder_r", "elbow_r", 0.05),
    ("shoulder_l", "elbow_l", 0.05),
    ("hip_r", "knee_r", 0.07),
    ("knee_r", "ankle_r", 0.055),
    ("hip_l", "knee_l", 0.07),
    ("knee_l", "ankle_l", 0.055),
]
SKIN_LIMBS = [
    ("elbow_r", "wrist_r", 0.04),
    ("elbow_l", "wrist_l", 0.04),
]
HEAD_RADIUS = 0.065
HAND_RADIUS = 0.028


@dataclass(frozen=True)
class Look:
    """Intensities (linear, ~1.0 = a well-lit surface) of what the camera sees."""

    clothing: float = 0.15
    skin: float = 0.55
    far_side_dim: float = 0.8  # limbs on the far side (side view) are in shadow


def _point(p) -> tuple[int, int]:
    return int(round(p[0] * _SCALE)), int(round(p[1] * _SCALE))


def _fixed_point(joints: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """All joints in cv2's sub-pixel integer coordinates at once (one rounding for the whole pose)."""
    names = list(joints)
    points = np.rint(np.array([joints[name] for name in names]) * _SCALE).astype(int).tolist()
    return dict(zip(names, map(tuple, points)))


def _draw_limbs(mask, points, limbs, height_px, only=None):
    for a, b, thickness in limbs:
        if a not in points or b not in points or (only is not None and not (a.endswith(only) or b.endswith(only))):
            continue
        width = max(1, int(thickness * height_px + 0.5))
        cv2.line(mask, points[a], points[b], 255, width, cv2.LINE_AA, SUBPIXEL_BITS)
        cv2.circle(mask, points[b], int(width * _SCALE // 2), 255, -1, cv2.LINE_AA, SUBPIXEL_BITS)


def coverage_layers(joints: dict[str, np.ndarray], height_px: float, size: tuple[int, int], far_side: str | None = None):
    """uint8 coverage masks [H, W] of clothing and skin; with ``far_side`` ('_l' or '_r') that side's limbs
    go into their own masks so they can be drawn behind the body and dimmer."""
    width, height = size
    points = _fixed_point(joints)
    hand_radius = int(HAND_RADIUS * height_px * _SCALE)
    names = ("far_clothing", "far_skin", "clothing", "skin") if far_side is not None else ("clothing", "skin")
    layers = {name: np.zeros((height, width), np.uint8) for name in names}
    near = {k: v for k, v in points.items() if far_side is None or not k.endswith(far_side)}
    if far_side is not None:
        far = {k: v for k, v in points.items() if k.endswith(far_side) or k in ("neck", "pelvis")}
        _draw_limbs(layers["far_clothing"], far, CLOTHING_LIMBS, height_px, only=far_side)
        _draw_limbs(layers["far_skin"], far, SKIN_LIMBS, height_px, only=far_side)
        if "wrist" + far_side in far:
            cv2.circle(layers["far_skin"], far["wrist" + far_side], hand_radius, 255, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    _draw_limbs(layers["clothing"], near, CLOTHING_LIMBS, height_px)
    _draw_limbs(layers["skin"], near, SKIN_LIMBS, height_px)
    for hand in ("wrist_r", "wrist_l"):
        if hand in near:
            cv2.circle(layers["skin"], near[hand], hand_radius, 255, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.circle(layers["skin"], points["head"], int(HEAD_RADIUS * height_px * _SCALE), 255, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    return layers


def render(background: np.ndarray, joints: dict[str, np.ndarray], height_px: float, look: Look = Look(), far_side: str | None = None) -> np.ndarray:
    """The scene's linear intensity [H, W] (float32): the figure blended over ``background``."""
    image = background.copy()  # the caller's background stays untouched
    layers = coverage_layers(joints, height_px, (background.shape[1], background.shape[0]), far_side)
    values = {
        "far_clothing": look.clothing * look.far_side_dim,
        "far_skin": look.skin * look.far_side_dim,
        "clothing": look.clothing,
        "skin": look.skin,
    }
    for name, mask in layers.items():  # back to front
        alpha = mask.astype(np.float32) * np.float32(1 / 255)
        image += alpha * (np.float32(values[name]) - image)
    return image


def make_background(size: tuple[int, int], rng: np.random.Generator, level: float = 0.35, contrast: float = 0.3) -> np.ndarray:
    """A static room: a smooth gradient plus a few soft-edged rectangles (furniture, a door frame) whose
    edges fire when the camera shakes, as real backgrounds do."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = 1 + 0.3 * contrast * ((xs / width - 0.5) * rng.uniform(-1, 1) + (ys / height - 0.5) * rng.uniform(-1, 1))
    image = np.full((height, width), level, np.float32) * gradient
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.05, 0.5) * width, rng.uniform(0.05, 0.6) * height
        value = level * (1 + contrast * rng.uniform(-1, 1))
        mask = np.zeros((height, width), np.uint8)
        cv2.rectangle(mask, _point((x0, y0)), _point((x0 + w, y0 + h)), 255, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        alpha = cv2.GaussianBlur(mask, (0, 0), 0.6).astype(np.float32) / 255
        image += alpha * (value - image)
    return np.clip(image, 0.01, None)


@dataclass(frozen=True)
class ShakableBackground:
    """A background that can be moved by a fraction of a pixel cheaply: camera shake.

    For shifts well below a pixel, image(x - d) = image(x) - d . gradient(x) to first order; with the
    gradient computed once this costs two multiply-adds per pixel instead of a resampling.
    """

    image: np.ndarray
    gradient_x: np.ndarray
    gradient_y: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> "ShakableBackground":
        gradient_y, gradient_x = np.gradient(image)
        return cls(image, gradient_x.astype(np.float32), gradient_y.astype(np.float32))

    def shifted(self, dx: float, dy: float) -> np.ndarray:
        return self.image - np.float32(dx) * self.gradient_x - np.float32(dy) * self.gradient_y
