"""A volumetric human figure drawn as an intensity image, for the synthetic event camera.

A pose is a set of 3D joint positions in body units (``motions.py``); ``Placement`` projects them through a
pinhole camera. Each body part is a capsule (``raster.draw_capsules``): torso, hips, shoulders, neck, head,
upper arms, forearms, hands, thighs and shins, with radii that taper along the limb, shaded by a directional
light with an ambient floor and wearing a texture fixed to the part (cloth weave and folds on the clothing,
faint shading on the skin, hair and eyes on the head). Parts are drawn far to near (painter's order by depth),
so a hand in front of the chest hides it, and a walker's far limbs are behind the body and in its shadow.
Shading and texture make a moving limb change the intensity of the pixels it covers, not only at its outline,
which is what makes real moving hands and sleeves fire as filled blobs of both polarities.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from masnn.datasets.synth.raster import draw_capsules, smooth_texture

SUBPIXEL_BITS = 4  # cv2 drawing at 1/16 pixel (the background's furniture)
_SCALE = 1 << SUBPIXEL_BITS
TEXTURE_SHAPE = (48, 12)  # rows along a part (wrapping), columns across it
TEXELS_PER_BODY_UNIT = 130.0  # about one texel per pixel for a DVS128 Gesture subject
MATERIALS = ("shirt", "sleeve", "trousers", "skin", "head")

# (joint, joint, radius at the first, radius at the second (body heights), material). Virtual joints:
# chest (a little below the neck, so the torso's round top stops at the collar), crown and chin (the head's
# axis), hand_r/hand_l (the fingertips, beyond the wrist along the forearm).
PARTS = (
    ("hip_r", "hip_l", 0.07, 0.07, "trousers"),
    ("pelvis", "chest", 0.085, 0.1, "shirt"),
    ("shoulder_r", "shoulder_l", 0.045, 0.045, "shirt"),
    ("neck", "chin", 0.028, 0.026, "skin"),
    ("chin", "crown", 0.048, 0.052, "head"),
    ("hip_r", "knee_r", 0.062, 0.046, "trousers"),
    ("hip_l", "knee_l", 0.062, 0.046, "trousers"),
    ("knee_r", "ankle_r", 0.044, 0.033, "trousers"),
    ("knee_l", "ankle_l", 0.044, 0.033, "trousers"),
    ("shoulder_r", "elbow_r", 0.038, 0.032, "shirt"),
    ("shoulder_l", "elbow_l", 0.038, 0.032, "shirt"),
    ("elbow_r", "wrist_r", 0.031, 0.024, "sleeve"),
    ("elbow_l", "wrist_l", 0.031, 0.024, "sleeve"),
    ("wrist_r", "hand_r", 0.025, 0.02, "skin"),
    ("wrist_l", "hand_l", 0.025, 0.02, "skin"),
)
FAR_SHADOW = 0.8  # parts well behind the body's plane (a walker's far side) are in its shadow


def _virtual_joints(joints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {name: np.asarray(p, dtype=float) if len(p) == 3 else np.append(np.asarray(p, dtype=float), 0.0) for name, p in joints.items()}
    neck, head = out["neck"], out["head"]
    up = (head - neck) / (np.linalg.norm(head - neck) + 1e-12)
    out["chest"] = neck - 0.055 * up
    out["chin"] = head - 0.03 * up
    out["crown"] = head + 0.025 * up
    for side in ("r", "l"):
        forearm = out[f"wrist_{side}"] - out[f"elbow_{side}"]
        out[f"hand_{side}"] = out[f"wrist_{side}"] + 0.07 * forearm / (np.linalg.norm(forearm) + 1e-12)
    return out


@dataclass(frozen=True)
class Look:
    """What the camera sees of a person and their light: albedos (linear intensity of a surface facing the
    light; ~1.0 = a well-lit white surface), textures per material, and the light's direction and ambient floor."""

    clothing: float = 0.15
    skin: float = 0.55
    trousers: float = 0.12
    hair: float = 0.4  # times the skin's albedo
    long_sleeves: bool = True
    light: tuple = (0.3, -0.6, -0.74)  # unit vector towards the light (x right, y down, z away from the camera)
    ambient: float = 0.45
    # texture rows the cloth's folds slide along a limb between pointing straight down and straight up: sleeves
    # and trouser legs sag towards the lower end under gravity, so a circling arm's folds move along it and each
    # radius of the swept disc fires differently around the circle (fixed folds fire as concentric rings)
    fold_slide: float = 0.0
    textures: np.ndarray = field(default=None, compare=False, repr=False)  # [len(MATERIALS), rows, cols]

    def __post_init__(self):
        if self.textures is None:
            object.__setattr__(self, "textures", np.ones((len(MATERIALS), *TEXTURE_SHAPE), np.float32))

    @classmethod
    def random(cls, rng: np.random.Generator, clothing: float, skin: float, trousers: float) -> "Look":
        shirt = smooth_texture(rng, TEXTURE_SHAPE, rng.uniform(0.1, 0.45), rng.uniform(0.6, 2.5))
        if rng.uniform() < 0.3:  # stripes or checks
            rows = np.arange(TEXTURE_SHAPE[0])[:, None]
            period = rng.integers(3, 9)
            shirt = shirt * (1 + rng.uniform(0.1, 0.4) * np.sign(np.sin(2 * np.pi * rows / period))).astype(np.float32)
        pants = smooth_texture(rng, TEXTURE_SHAPE, rng.uniform(0.05, 0.25), rng.uniform(0.8, 3.0))
        skin_texture = smooth_texture(rng, TEXTURE_SHAPE, rng.uniform(0.08, 0.3), rng.uniform(0.6, 2.0))  # fingers, knuckles, creases
        hair = rng.uniform(0.15, 1.3)
        head = skin_texture.copy()
        head[int(0.07 * TEXELS_PER_BODY_UNIT * rng.uniform(0.85, 1.15)) :] *= hair  # the crown's rows: hair
        eyes = int(0.035 * TEXELS_PER_BODY_UNIT)
        head[eyes, [3, 8]] *= 0.5
        long_sleeves = bool(rng.uniform() < 0.6)
        textures = np.stack([shirt, shirt if long_sleeves else skin_texture, pants, skin_texture, head]).astype(np.float32)
        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-1.0, -0.2), rng.uniform(-1.0, -0.3)])
        light /= np.linalg.norm(light)
        return cls(clothing=clothing, skin=skin, trousers=trousers, hair=hair, long_sleeves=long_sleeves,
                   light=tuple(float(v) for v in light), ambient=float(rng.uniform(0.25, 0.6)),
                   fold_slide=float(rng.uniform(2.0, 8.0)), textures=textures)

    def is_cloth(self, material: str) -> bool:
        """Whether the part wears cloth (its folds slide along the limb) rather than skin."""
        return material in ("shirt", "trousers") or (material == "sleeve" and self.long_sleeves)

    def albedo(self, material: str) -> float:
        if material == "trousers":
            return self.trousers
        return self.clothing if self.is_cloth(material) else self.skin


def render(background: np.ndarray, joints: dict[str, np.ndarray], placement, look: Look = Look(), far_side: str | None = None) -> np.ndarray:
    """The scene's linear intensity [H, W] (float32): the figure (3D joints in body units, projected by
    ``placement``) drawn over ``background``. ``far_side`` is accepted for the walkers' callers and ignored:
    depth alone puts a walker's far limbs behind the body and in its shadow."""
    image = background.copy()  # the caller's background stays untouched
    points = _virtual_joints(joints)
    pixels = placement.to_pixels(points)
    parts = [part for part in PARTS if part[0] in points and part[1] in points]
    n = len(parts)
    ends = np.empty((n, 2, 2))
    radii = np.empty((n, 2))
    albedo = np.empty(n)
    texture_index = np.empty(n, np.int64)
    texels = np.empty(n)
    shift = np.zeros(n)
    depth = np.empty(n)
    for k, (a, b, ra, rb, material) in enumerate(parts):
        za, zb = points[a][2], points[b][2]
        ends[k, 0], ends[k, 1] = pixels[a], pixels[b]
        scale_a, scale_b = placement.scale(za), placement.scale(zb)
        radii[k] = ra * scale_a, rb * scale_b
        depth[k] = (za + zb) / 2
        albedo[k] = look.albedo(material) * (FAR_SHADOW if depth[k] > 0.03 else 1.0)
        texture_index[k] = MATERIALS.index(material)
        texels[k] = TEXELS_PER_BODY_UNIT / (0.5 * (scale_a + scale_b))
        if look.is_cloth(material):
            # the limb's downward slope on screen, fading to nothing as it turns towards the camera (where its
            # on-screen direction is undefined): continuous in the pose, so no frame jumps
            axis = ends[k, 1] - ends[k, 0]
            shift[k] = -look.fold_slide * axis[1] / max(float(np.hypot(*axis)), 2.0 * float(radii[k].max()), 1e-9)
    order = np.argsort(-depth, kind="stable")  # far to near; ties keep the table's order (torso before arms)
    draw_capsules(image, ends[order], radii[order], albedo[order], texture_index[order], look.textures, texels[order],
                  shift[order], np.asarray(look.light, dtype=np.float64), float(look.ambient))
    return image


def _point(p) -> tuple[int, int]:
    return int(round(p[0] * _SCALE)), int(round(p[1] * _SCALE))


def make_background(size: tuple[int, int], rng: np.random.Generator, level: float = 0.35, contrast: float = 0.3) -> np.ndarray:
    """A static office: a smooth gradient, cubicle walls and a desk (a band across the lower part of the view,
    its edge often running behind the subject, as in DVS128 Gesture), a few soft-edged rectangles (chairs,
    shelves, a door frame), and a faint wall texture. Its edges fire when the camera shakes, as real
    backgrounds do; otherwise it is silent."""
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
    if rng.uniform() < 0.7:  # the desk: from its edge to the bottom of the view, over part of the width
        top = rng.uniform(0.7, 0.95) * height
        left, right = sorted(rng.uniform(-0.3, 1.3, 2) * width)
        mask = np.zeros((height, width), np.uint8)
        cv2.rectangle(mask, _point((left, top)), _point((right, height + 2)), 255, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        alpha = cv2.GaussianBlur(mask, (0, 0), 0.5).astype(np.float32) / 255
        image += alpha * (level * rng.uniform(0.5, 1.6) - image)
    wall = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), rng.uniform(1.0, 4.0))
    image *= 1 + rng.uniform(0.0, 0.08) * wall / max(float(wall.std()), 1e-6)
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
