"""Shaded, textured capsules drawn into an intensity image: the volumetric body parts of ``figure.py``.

A capsule is a segment A-B (projected pixel positions) swept by a radius that varies linearly from A to B,
seen as a rounded cylinder: each covered pixel gets the surface normal of the cylinder (or of the end cap)
under it, n = ((P - C) / r, -sqrt(1 - |P - C|^2 / r^2)) with C the nearest point of the axis (z points away
from the camera), a Lambert shade ``ambient + (1 - ambient) max(0, n . light)``, and a texture value read from
coordinates fixed to the capsule (along the axis in pixels plus the part's slide, across it in radii), so a
moving limb carries its texture with it and fires inside its moving region, not only along its outline, as real
skin and cloth do; the slide lets cloth folds move along a limb (``figure.py``).
Coverage is 1 inside the radius and falls linearly to 0 over one pixel (anti-aliased: a sub-pixel motion
changes intensities gradually instead of jumping whole pixels). Capsules are drawn in the given order (the
caller sorts them far to near) and blended over what is already there.
"""
from __future__ import annotations

import cv2
import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _texture_at(texture, along, across):
    """Bilinear sample of texture [rows, cols]: rows wrap along the axis, columns span the width (clamped)."""
    rows, cols = texture.shape
    r = along % rows
    c = min(max(across, 0.0), cols - 1.0)
    r0, c0 = int(r), int(c)
    r1, c1 = (r0 + 1) % rows, min(c0 + 1, cols - 1)
    fr, fc = r - r0, c - c0
    top = texture[r0, c0] * (1 - fc) + texture[r0, c1] * fc
    bottom = texture[r1, c0] * (1 - fc) + texture[r1, c1] * fc
    return top * (1 - fr) + bottom * fr


@numba.njit(cache=True, nogil=True)
def draw_capsules(image, ends, radii, albedo, texture_index, textures, texels_per_px, texture_shift, light, ambient):
    """Draw capsules into ``image`` [H, W] (float32, in place).

    ends [n, 2, 2]: pixel (x, y) of A and B; radii [n, 2]: pixels at A and B; albedo [n]; texture_index [n]:
    which of ``textures`` [k, rows, cols] each capsule wears; texels_per_px [n]: texture rows per pixel along
    the axis (the texture's scale on screen); texture_shift [n]: texture rows the pattern has slid along the axis
    (cloth folds moving on a limb); light [3]: unit vector towards the light (x right, y down, z away
    from the camera, so a light beside the camera has a negative z); ambient: the shade facing away from it.
    """
    height, width = image.shape
    for k in range(ends.shape[0]):
        ax, ay, bx, by = ends[k, 0, 0], ends[k, 0, 1], ends[k, 1, 0], ends[k, 1, 1]
        ra, rb = radii[k, 0], radii[k, 1]
        vx, vy = bx - ax, by - ay
        length2 = vx * vx + vy * vy
        length = np.sqrt(length2)
        ux, uy = (vx / length, vy / length) if length > 1e-9 else (1.0, 0.0)
        reach = max(ra, rb) + 1.0
        x0, x1 = max(int(np.floor(min(ax, bx) - reach)), 0), min(int(np.ceil(max(ax, bx) + reach)), width - 1)
        y0, y1 = max(int(np.floor(min(ay, by) - reach)), 0), min(int(np.ceil(max(ay, by) + reach)), height - 1)
        texture = textures[texture_index[k]]
        cols = texture.shape[1]
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                px, py = x - ax, y - ay
                t = (px * vx + py * vy) / length2 if length2 > 1e-18 else 0.0
                t = min(max(t, 0.0), 1.0)
                qx, qy = px - t * vx, py - t * vy  # from the axis to the pixel
                distance = np.sqrt(qx * qx + qy * qy)
                radius = ra + t * (rb - ra)
                coverage = min(max(radius + 0.5 - distance, 0.0), 1.0)
                if coverage <= 0.0 or radius <= 0.0:
                    continue
                nx, ny = qx / radius, qy / radius
                planar = nx * nx + ny * ny
                if planar > 1.0:
                    scale = 1.0 / np.sqrt(planar)
                    nx, ny, planar = nx * scale, ny * scale, 1.0
                nz = -np.sqrt(1.0 - planar)
                lambert = max(nx * light[0] + ny * light[1] + nz * light[2], 0.0)
                shade = ambient + (1.0 - ambient) * lambert
                across = (ux * py - uy * px) / radius  # -1 .. 1 across the width
                value = albedo[k] * shade * _texture_at(texture, t * length * texels_per_px[k] + texture_shift[k], (across + 1.0) * 0.5 * (cols - 1))
                image[y, x] += np.float32(coverage * (value - image[y, x]))


def smooth_texture(rng: np.random.Generator, shape: tuple[int, int], contrast: float, grain: float) -> np.ndarray:
    """A random texture around 1.0 (cloth weave, folds, skin shading): white noise blurred over ``grain`` texels,
    scaled to a standard deviation of ``contrast``, never below 0.2."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if grain > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), grain, borderType=cv2.BORDER_REFLECT)
    noise /= max(float(noise.std()), 1e-6)
    return np.clip(1.0 + contrast * noise, 0.2, None).astype(np.float32)
