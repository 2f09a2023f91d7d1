"""Synthetic street scenes: rendering one scene from ``(seed, index)``.

Pedestrians, cars and motorcycles drawn as simple anti-aliased silhouettes (OpenCV polygons and
circles) on cluttered backgrounds, each with the tight box of its own drawn pixels. Scene ``i``
of a dataset with seed ``s`` depends only on ``(s, i)`` (:func:`scene_rng`), so datasets are
reproducible byte for byte and a test set is just another seed. Writing scenes as a dataset,
and the cached default dataset, are :mod:`yolo_cli.data.synth`'s.

Shapes are built in *height units*: the object spans ``y ∈ [0, 1]`` and ``x ∈ [0, width]``,
facing right; one scale factor (the box height in pixels) places it in the image.
"""

from __future__ import annotations

import colorsys
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from yolo_cli.boxes import iou
from yolo_cli.config import DEFAULTS

EMPTY_FRACTION = 0.1  # scenes with no objects at all
MAX_OBJECTS = 8
MIN_HEIGHT = 16  # px; the largest height is half the image
# an object is placed only if this fraction of its pixels stays in view and unoccluded
MIN_VISIBLE = 0.5
MAX_SAME_CLASS_IOU = 0.4  # keeps same-class boxes apart enough to survive NMS at IoU 0.5
MIN_CONTRAST = 70.0  # Euclidean RGB distance between an object's main colour and its backdrop

_SHIFT = 4  # fractional bits of OpenCV drawing coordinates: sub-pixel placement
_PLACEMENT_TRIES = 12


@dataclass
class _Part:
    """One primitive of a silhouette: a polygon ``(K, 2)`` or a circle ``(cx, cy, r)``."""

    role: str
    poly: np.ndarray | None = None
    circle: tuple[float, float, float] | None = None


@dataclass
class SceneDebug:
    """What :func:`render_scene` drew, for checking boxes against pixels.

    masks: ``(N, H, W)`` bool, each object's drawn pixels inside the image (occlusion ignored).
    areas: ``(N,)`` int, each object's full drawn pixel count, parts outside the image included.
    background: ``(H, W, 3)`` uint8 RGB, the scene before any object was drawn.
    clean: ``(H, W, 3)`` uint8 RGB, the scene with its objects before blur, noise and brightness.
    """

    masks: np.ndarray
    areas: np.ndarray
    background: np.ndarray
    clean: np.ndarray


# --- shapes -------------------------------------------------------------------------------


def _limb(p, q, thickness: float) -> np.ndarray:
    """A straight limb from ``p`` to ``q`` as a quad ``(4, 2)`` of the given thickness."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    d = q - p
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * thickness / 2
    return np.stack([p + n, q + n, q - n, p - n])


def _poly(role: str, points) -> _Part:
    return _Part(role, poly=np.asarray(points, np.float64))


def _circle(role: str, cx: float, cy: float, r: float) -> _Part:
    return _Part(role, circle=(cx, cy, r))


def _car(rng: np.random.Generator) -> list[_Part]:
    """A car seen from the side: body, cabin with windows, lights, two wheels."""
    length = rng.uniform(1.9, 2.6)
    rw = rng.uniform(0.19, 0.23)  # wheel radius
    top = rng.uniform(0.36, 0.46)  # where the cabin meets the body
    bottom = 1 - 0.5 * rw
    wheel_y = 1 - rw
    rear_x = max(rng.uniform(0.13, 0.2) * length, rw + 0.03)
    front_x = min(rng.uniform(0.78, 0.86) * length, length - rw - 0.03)
    cab_rear, cab_front = rng.uniform(0.1, 0.22) * length, rng.uniform(0.62, 0.74) * length
    roof_rear = cab_rear + rng.uniform(0.08, 0.2)
    roof_front = cab_front - rng.uniform(0.25, 0.4)
    d = 0.06  # window inset
    pillar = (roof_rear + roof_front) / 2
    return [
        _poly(
            "paint",
            [
                (0, bottom),
                (0, top + 0.1),
                (0.05 * length, top),
                (0.93 * length, top + 0.05),
                (length, top + 0.17),
                (length, bottom),
            ],
        ),
        _poly(
            "paint",
            [(cab_rear, top + 0.02), (roof_rear, 0), (roof_front, 0), (cab_front, top + 0.02)],
        ),
        _poly(
            "window",
            [
                (cab_rear + 1.6 * d, top),
                (roof_rear + d, d),
                (roof_front - 0.6 * d, d),
                (cab_front - 1.8 * d, top),
            ],
        ),
        _poly("paint", _limb((pillar, 0), (pillar + 0.04, top), 0.05)),
        _poly(
            "headlight",
            [
                (length - 0.05, top + 0.12),
                (length, top + 0.15),
                (length, top + 0.22),
                (length - 0.05, top + 0.22),
            ],
        ),
        _poly(
            "taillight", [(0, top + 0.1), (0.04, top + 0.06), (0.04, top + 0.16), (0, top + 0.16)]
        ),
        _circle("tyre", rear_x, wheel_y, rw),
        _circle("tyre", front_x, wheel_y, rw),
        _circle("hub", rear_x, wheel_y, 0.5 * rw),
        _circle("hub", front_x, wheel_y, 0.5 * rw),
    ]


def _pedestrian(rng: np.random.Generator) -> list[_Part]:
    """A walking person: legs, torso, arms, head, shoes (centred on ``x = 0``, facing right)."""
    hr = rng.uniform(0.06, 0.075)  # head radius
    shoulder_y = 2 * hr + 0.02
    hip_y = rng.uniform(0.5, 0.56)
    half_shoulder, half_hip = rng.uniform(0.08, 0.11), rng.uniform(0.06, 0.085)
    stride, swing = rng.uniform(0.0, 0.15), rng.uniform(0.01, 0.1)
    leg, arm = rng.uniform(0.06, 0.08), rng.uniform(0.045, 0.06)
    hand_y = shoulder_y + rng.uniform(0.3, 0.36)
    shoe_y = 1 - 0.035
    parts = [
        _poly("pants", _limb((-0.04, hip_y - 0.02), (-stride, shoe_y), leg)),
        _poly("pants", _limb((0.04, hip_y - 0.02), (stride, shoe_y), leg)),
        _poly(
            "shirt",
            [
                (-half_shoulder, shoulder_y),
                (half_shoulder, shoulder_y),
                (half_hip, hip_y),
                (-half_hip, hip_y),
            ],
        ),
        _poly(
            "shirt",
            _limb(
                (-half_shoulder + 0.02, shoulder_y + 0.02), (-half_shoulder - swing, hand_y), arm
            ),
        ),
        _poly(
            "shirt",
            _limb((half_shoulder - 0.02, shoulder_y + 0.02), (half_shoulder + swing, hand_y), arm),
        ),
        _circle("skin", -half_shoulder - swing, hand_y, 0.6 * arm),
        _circle("skin", half_shoulder + swing, hand_y, 0.6 * arm),
        _circle("skin", rng.uniform(0.0, 0.02), hr, hr),
    ]
    for x in (-stride, stride):
        parts.append(
            _poly(
                "shoe",
                [(x - 0.03, shoe_y - 0.01), (x + 0.06, shoe_y), (x + 0.06, 1), (x - 0.03, 1)],
            )
        )
    return parts


def _motorcycle(rng: np.random.Generator) -> list[_Part]:
    """A motorcycle with rider from the side: wheels, engine, frame, fork, rider with helmet."""
    length = rng.uniform(1.05, 1.4)
    rw = rng.uniform(0.19, 0.24)
    wy = 1 - rw
    rear, front = rw, length - rw
    bar = (front - 0.12, 0.36)  # handlebar grip
    hip = (0.38 * length, 0.5)
    shoulder = (0.5 * length + rng.uniform(0.0, 0.06), 0.2)
    knee = (0.6 * length, 0.55)
    helmet_r = rng.uniform(0.075, 0.09)
    return [
        _circle("tyre", rear, wy, rw),
        _circle("tyre", front, wy, rw),
        _circle("rim", rear, wy, 0.62 * rw),
        _circle("rim", front, wy, 0.62 * rw),
        _circle("tyre", rear, wy, 0.3 * rw),
        _circle("tyre", front, wy, 0.3 * rw),
        _poly("frame", _limb((rear, wy), (0.42 * length, 0.72), 0.06)),
        _poly(
            "engine",
            [
                (0.36 * length, 0.6),
                (0.66 * length, 0.6),
                (0.6 * length, 0.82),
                (0.42 * length, 0.82),
            ],
        ),
        _poly(
            "frame",
            [
                (0.12 * length, 0.5),
                (0.5 * length, 0.53),
                (0.5 * length, 0.61),
                (0.18 * length, 0.6),
            ],
        ),
        _poly(
            "frame",
            [
                (0.47 * length, 0.52),
                (0.62 * length, 0.44),
                (0.74 * length, 0.49),
                (0.7 * length, 0.62),
                (0.5 * length, 0.63),
            ],
        ),
        _poly("fork", _limb((front, wy), bar, 0.045)),
        _poly("pants", _limb(hip, knee, 0.1)),
        _poly("pants", _limb(knee, (0.52 * length, 0.78), 0.08)),
        _poly("jacket", _limb(hip, shoulder, 0.15)),
        _poly("jacket", _limb(shoulder, bar, 0.06)),
        _circle("helmet", shoulder[0] + 0.04, helmet_r, helmet_r),
    ]


_SHAPES = {"pedestrian": _pedestrian, "car": _car, "motorcycle": _motorcycle}


def _extent(parts: list[_Part]) -> tuple[float, float]:
    """``(x_min, x_max)`` of a silhouette in height units."""
    lo, hi = [], []
    for p in parts:
        if p.poly is not None:
            lo.append(p.poly[:, 0].min())
            hi.append(p.poly[:, 0].max())
        else:
            cx, _, r = p.circle
            lo.append(cx - r)
            hi.append(cx + r)
    return min(lo), max(hi)


def _silhouette(rng: np.random.Generator, kind: str) -> tuple[list[_Part], float]:
    """A random silhouette of ``kind``, mirrored half the time, shifted to ``x_min = 0``.

    Returns the parts and the width in height units.
    """
    parts = _SHAPES[kind](rng)
    lo, hi = _extent(parts)
    mirror = rng.random() < 0.5
    for p in parts:
        if p.poly is not None:
            x = hi - p.poly[:, 0] if mirror else p.poly[:, 0] - lo
            p.poly = np.stack([x, p.poly[:, 1]], axis=1)
        else:
            cx, cy, r = p.circle
            p.circle = (hi - cx if mirror else cx - lo, cy, r)
    return parts, hi - lo


def _draw(canvas: np.ndarray, parts, colours, x0: float, y0: float, scale: float) -> None:
    """Draw ``parts`` (height units) anti-aliased at ``(x0, y0) + scale · (x, y)`` px, in place.

    ``colours`` maps each part's role to a colour; the same call on a zeroed single-channel
    canvas with colour 255 everywhere gives the coverage behind the object's mask and box.
    """
    import cv2

    one = 1 << _SHIFT
    line = cv2.LINE_AA
    for p in parts:
        colour = colours[p.role]
        if p.poly is not None:
            pts = np.round((p.poly * scale + (x0, y0)) * one).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour, line, _SHIFT)
        else:
            cx, cy, r = p.circle
            centre = (round((x0 + cx * scale) * one), round((y0 + cy * scale) * one))
            cv2.circle(
                canvas, centre, max(round(r * scale * one), one // 2), colour, -1, line, _SHIFT
            )


# --- colours ------------------------------------------------------------------------------


def _hsv(rng, s=(0.0, 1.0), v=(0.0, 1.0)) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return (255 * r, 255 * g, 255 * b)


def _grey(rng, lo: float, hi: float) -> tuple[float, float, float]:
    g = rng.uniform(lo, hi)
    return (g, g, g)


def _skin(rng) -> tuple[float, float, float]:
    t = rng.random()
    light, dark = np.array([255, 220, 180]), np.array([95, 60, 40])
    return tuple(float(c) for c in light * (1 - t) + dark * t)


def _colours(rng, kind: str, backdrop: np.ndarray) -> dict[str, tuple]:
    """Colours per role; the main colour is redrawn until it stands out from ``backdrop``."""
    main = _hsv(rng, (0.3, 1.0), (0.35, 1.0))
    for _ in range(10):
        if np.linalg.norm(np.subtract(main, backdrop)) >= MIN_CONTRAST:
            break
        main = _hsv(rng, (0.3, 1.0), (0.35, 1.0))
    if kind == "car":
        return {
            "paint": main,
            "window": _hsv(rng, (0.1, 0.4), (0.55, 0.9))
            if rng.random() < 0.7
            else _grey(rng, 30, 70),
            "headlight": (255, 245, 190),
            "taillight": (210, 30, 30),
            "tyre": _grey(rng, 15, 45),
            "hub": _grey(rng, 140, 210),
        }
    if kind == "pedestrian":
        return {
            "shirt": main,
            "pants": _hsv(rng, (0.2, 0.8), (0.15, 0.6)),
            "skin": _skin(rng),
            "shoe": _grey(rng, 10, 60),
        }
    return {
        "jacket": main,
        "frame": _hsv(rng, (0.5, 1.0), (0.4, 1.0)),
        "helmet": _hsv(rng, (0.0, 1.0), (0.3, 1.0)),
        "pants": _hsv(rng, (0.2, 0.8), (0.15, 0.5)),
        "engine": _grey(rng, 60, 110),
        "fork": _grey(rng, 150, 210),
        "rim": _grey(rng, 120, 190),
        "tyre": _grey(rng, 15, 45),
    }


# --- backgrounds --------------------------------------------------------------------------


def _gradient(top, bottom, rows: int, cols: int) -> np.ndarray:
    """A vertical gradient ``(rows, cols, 3)`` uint8 from ``top`` to ``bottom`` RGB."""
    import cv2

    t = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
    col = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return cv2.resize(col.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST)


def _street(rng, size: int) -> np.ndarray:
    """Sky, a row of buildings with windows, pavement and a road with lane marks."""
    import cv2

    horizon = int(size * rng.uniform(0.25, 0.55))
    kerb = horizon + int((size - horizon) * rng.uniform(0.1, 0.3))
    img = np.empty((size, size, 3), np.uint8)
    img[:horizon] = _gradient(
        _hsv(rng, (0.1, 0.5), (0.6, 1.0)), _hsv(rng, (0.0, 0.3), (0.7, 1.0)), horizon, size
    )
    img[horizon:kerb] = _gradient(_grey(rng, 120, 190), _grey(rng, 110, 180), kerb - horizon, size)
    img[kerb:] = _gradient(_grey(rng, 50, 110), _grey(rng, 70, 140), size - kerb, size)
    x = int(rng.uniform(-40, 0))
    while x < size:
        w, h = int(rng.uniform(0.1, 0.35) * size), int(rng.uniform(0.1, 0.9) * horizon)
        cv2.rectangle(
            img, (x, horizon - h), (x + w, horizon), _hsv(rng, (0.0, 0.5), (0.3, 0.9)), -1
        )
        win = _hsv(rng, (0.0, 0.4), (0.2, 1.0))
        step = int(rng.uniform(8, 20))
        for wy in range(horizon - h + step // 2, horizon - step, step):
            for wx in range(x + step // 2, x + w - step // 2, step):
                cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), win, -1)
        x += w + int(rng.uniform(0, 30))
    lane_y = int(kerb + (size - kerb) * rng.uniform(0.3, 0.9))
    dash, gap = int(rng.uniform(20, 60)), int(rng.uniform(15, 50))
    lane = (240, 240, 240) if rng.random() < 0.6 else (230, 200, 60)
    for lx in range(int(rng.uniform(-dash, 0)), size, dash + gap):
        cv2.rectangle(img, (lx, lane_y - 2), (lx + dash, lane_y + 2), lane, -1)
    return img


def _texture(rng, size: int) -> np.ndarray:
    """Smooth colour noise: two colours mixed by an upsampled random field."""
    import cv2

    cells, small = int(rng.integers(3, 24)), size // 4  # mixing at 1/4 size: the field is smooth
    field = cv2.resize(
        rng.random((cells, cells), dtype=np.float32), (small, small), interpolation=cv2.INTER_CUBIC
    )
    field = np.clip(field, 0, 1)[..., None]
    a, b = np.asarray(_hsv(rng), np.float32), np.asarray(_hsv(rng), np.float32)
    mixed = (a * (1 - field) + b * field).astype(np.uint8)
    return cv2.resize(mixed, (size, size), interpolation=cv2.INTER_LINEAR)


def _stripes(rng, size: int) -> np.ndarray:
    """Parallel bands of random colours at a random angle."""
    import cv2

    img = np.empty((size, size, 3), np.uint8)
    img[:] = np.asarray(_hsv(rng), np.uint8)
    angle = rng.uniform(0, np.pi)
    d = np.array([np.cos(angle), np.sin(angle)]) * 2 * size
    n = np.array([-d[1], d[0]]) / (2 * size)
    period = rng.uniform(10, size / 3)
    centre = np.array([size / 2, size / 2])
    for k in range(-int(size / period) - 1, int(size / period) + 2, 2):
        o = centre + n * k * period
        band = np.array([o - d, o + d, o + d + n * period, o - d + n * period])
        cv2.fillPoly(img, [np.round(band).astype(np.int32)], _hsv(rng), cv2.LINE_AA)
    return img


def _clutter(rng, img: np.ndarray) -> None:
    """Rectangles, lines, blobs and triangles that belong to no class, in place."""
    import cv2

    size = img.shape[0]
    for _ in range(int(rng.integers(0, 9))):
        kind = rng.integers(4)
        colour = _hsv(rng)
        c = rng.uniform(0, size, 2)
        s = size * np.exp(rng.uniform(np.log(0.02), np.log(0.3), 2))
        if kind == 0:
            cv2.rectangle(
                img, tuple((c - s / 2).astype(int)), tuple((c + s / 2).astype(int)), colour, -1
            )
        elif kind == 1:
            q = c + rng.uniform(-0.5, 0.5, 2) * size
            cv2.line(
                img,
                tuple(c.astype(int)),
                tuple(q.astype(int)),
                colour,
                int(rng.integers(1, 8)),
                cv2.LINE_AA,
            )
        elif kind == 2:
            axes = tuple((s / 2).astype(int))
            cv2.ellipse(
                img,
                tuple(c.astype(int)),
                axes,
                rng.uniform(0, 180),
                0,
                360,
                colour,
                -1,
                cv2.LINE_AA,
            )
        else:
            pts = c + rng.uniform(-1, 1, (3, 2)) * s
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, cv2.LINE_AA)


def _background(rng, size: int) -> np.ndarray:
    """A varied backdrop ``(size, size, 3)`` uint8 RGB: street, gradient, texture or stripes."""
    kind = rng.integers(4)
    if kind == 0:
        img = _street(rng, size)
    elif kind == 1:
        img = _gradient(_hsv(rng), _hsv(rng), size, size)
    elif kind == 2:
        img = _texture(rng, size)
    else:
        img = _stripes(rng, size)
    _clutter(rng, img)
    return img


def _camera(rng, img: np.ndarray) -> np.ndarray:
    """Brightness/contrast change, mild blur and sensor noise, as a camera would add."""
    import cv2

    gain, offset = rng.uniform(0.75, 1.2), rng.uniform(-25, 25)
    img = cv2.LUT(img, np.clip(np.arange(256) * gain + offset, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    # Uniform grey-level noise: as good as Gaussian to the eye, and several times cheaper to draw.
    amplitude = int(rng.integers(0, 9))
    noise = rng.integers(-amplitude, amplitude + 1, img.shape[:2], dtype=np.int16)
    return cv2.add(img, cv2.merge([noise] * 3), dtype=cv2.CV_8U)


# --- scenes -------------------------------------------------------------------------------


@dataclass
class _Placement:
    """Where a silhouette lands: its mask on the image region ``window`` and its box."""

    window: tuple[slice, slice]
    mask: np.ndarray  # bool, the drawn pixels inside the image, shaped like ``window``
    area: int  # drawn pixels in all, including those outside the image
    box: np.ndarray  # (4,) float32 xyxy pixels, tight around ``mask``


def _place(parts, x0: float, y0: float, h: float, w: float, size: int) -> _Placement | None:
    """Rasterise ``parts`` at ``(x0, y0)`` with height ``h`` px; ``None`` if mostly off-image."""
    ox, oy = math.floor(x0) - 2, math.floor(y0) - 2  # room for the anti-aliased fringe
    coverage = np.zeros((math.ceil(h) + 5, math.ceil(w) + 5), np.uint8)
    _draw(coverage, parts, defaultdict(lambda: 255), x0 - ox, y0 - oy, h)
    patch = coverage >= 128  # an object's pixel is one it covers at least half of
    area = int(np.count_nonzero(patch))
    r0, c0 = max(0, -oy), max(0, -ox)
    r1, c1 = min(patch.shape[0], size - oy), min(patch.shape[1], size - ox)
    if r1 <= r0 or c1 <= c0:
        return None
    mask = patch[r0:r1, c0:c1]
    if area == 0 or np.count_nonzero(mask) < MIN_VISIBLE * area:
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (
        np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)
        + (ox + c0, oy + r0) * 2
    )
    return _Placement((slice(oy + r0, oy + r1), slice(ox + c0, ox + c1)), mask, area, box)


def render_scene(
    rng: np.random.Generator,
    size: int = DEFAULTS.img_size,
    names: tuple[str, ...] = DEFAULTS.synth_classes,
    debug: bool = False,
):
    """Render one street scene.

    ``names`` lists the classes in label order; each must be ``pedestrian``, ``car`` or
    ``motorcycle``. Returns ``image (size, size, 3)`` uint8 RGB, ``boxes (N, 4)`` float32 xyxy
    pixels (the tight box of each object's drawn pixels, clipped to the image) and
    ``classes (N,)`` int32, in drawing order. A later object may cover an earlier one, but every
    object keeps at least ``MIN_VISIBLE`` of its pixels unoccluded and inside the image.
    With ``debug=True`` a fourth item, :class:`SceneDebug`, holds the masks behind the boxes.
    """
    import cv2

    unknown = [n for n in names if n not in _SHAPES]
    if unknown:
        raise ValueError(f"synthetic classes are {tuple(_SHAPES)}, got {unknown}")
    img = _background(rng, size)
    background = img.copy() if debug else None
    count = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, MAX_OBJECTS + 1))

    owner = np.full((size, size), -1, np.int16)  # the object each pixel shows, -1 for none
    placed: list[_Placement] = []
    classes: list[int] = []
    visible: list[int] = []  # unoccluded in-image pixels per object
    for _ in range(count):
        cls = int(rng.integers(len(names)))
        parts, width = _silhouette(rng, names[cls])
        h = float(
            np.exp(rng.uniform(np.log(MIN_HEIGHT), np.log(min(size / 2, 0.9 * size / width))))
        )
        w = width * h
        for _ in range(_PLACEMENT_TRIES):
            x0, y0 = rng.uniform(-0.3 * w, size - 0.7 * w), rng.uniform(-0.3 * h, size - 0.7 * h)
            p = _place(parts, x0, y0, h, w, size)
            if p is None:
                continue
            same = [q.box for q, c in zip(placed, classes) if c == cls]
            if same and iou(p.box, np.array(same)).max() > MAX_SAME_CLASS_IOU:
                continue
            region = owner[p.window]
            hidden = np.bincount(region[p.mask] + 1, minlength=len(placed) + 1)[1:]
            left = np.array(visible, np.int64) - hidden
            if np.any(left < MIN_VISIBLE * np.array([q.area for q in placed])):
                continue
            break
        else:
            continue
        visible = list(left) + [int(np.count_nonzero(p.mask))]
        region[p.mask] = len(placed)
        x1, y1, x2, y2 = p.box.astype(int)
        backdrop = np.array(cv2.mean(img[y1:y2, x1:x2])[:3])
        _draw(img, parts, _colours(rng, names[cls], backdrop), x0, y0, h)
        placed.append(p)
        classes.append(cls)

    clean = img.copy() if debug else None
    img = _camera(rng, img)
    boxes = np.array([p.box for p in placed], np.float32).reshape(-1, 4)
    classes = np.array(classes, np.int32)
    if not debug:
        return img, boxes, classes
    masks = np.zeros((len(placed), size, size), bool)
    for m, p in zip(masks, placed):
        m[p.window] = p.mask
    areas = np.array([p.area for p in placed], np.int64)
    return img, boxes, classes, SceneDebug(masks, areas, background, clean)


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of the dataset with ``seed``: independent of n and order."""
    return np.random.default_rng([seed, index])
