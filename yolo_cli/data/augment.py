"""Training augmentation, box-aware, one training image at a time, in numpy/OpenCV: the course's
mirroring, random cropping, colour shifting and AlexNet's PCA colour augmentation, with
YOLOv5's scale jitter and mosaic of four images.

Geometry: each source image becomes one :class:`Tile` — a source window resized onto a
rectangle of the ``size × size`` input — scaled by a random factor of its letterbox size
(``scale``, with a mild aspect jitter). A plain training image is one tile anywhere on the
input: scaled up, a random window of it fills the input (a crop); scaled down, it sits at a
random spot on grey (a zoom-out). A mosaic is four tiles, one per quadrant around a random
junction, each image against the junction and a random window of it filling its quadrant
when it is larger. Integer windows keep the box transform exact to the pixel. Colour
operations are pointwise, per tile, so grey stays grey. A mirror of the whole input comes last.

Labels: an object keeps its label (its box clipped to what shows) when at least
``min_visible`` of its area shows and the clipped box is at least ``min_box`` pixels wide and
tall. Whatever shows of the others is painted grey (``erase_dropped``), except where it lies
inside a kept box: a network shown a third of an unlabelled raccoon learns that raccoon parts
are background.

Every random choice comes from the ``np.random.Generator`` passed in, so a seeded generator
gives the same result every time. Images are ``(H, W, 3)`` uint8 RGB; boxes ``(N, 4)`` float32
xyxy pixels of the image they belong to; classes ``(N,)`` int32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from yolo_cli.boxes import Letterbox, area, clip, letterbox_image
from yolo_cli.config import DEFAULTS


@dataclass(frozen=True)
class Augmentation:
    """Strength of each augmentation. ``0`` (or ``None`` for ``pca``) switches an operation off.

    mirror_p: probability of a horizontal mirror.
    scale: each image is resized to its letterbox size times ``U(scale[0], scale[1])``
      (YOLOv5's ``scale=0.5``: objects from half to one and a half times the size detection
      shows them at); ``(1, 1)`` with no aspect jitter is the plain letterbox, placed at
      random where it leaves room.
    max_aspect_jitter: the width scale is that times ``√a`` and the height's over ``√a``, with
      ``a`` log-uniform in ``[1 / max_aspect_jitter, max_aspect_jitter]``.
    mosaic_p: probability that a training image is a mosaic of itself and three others (the
      pipeline draws them); :func:`mosaic` ignores it.
    mosaic_centre: the junction of the four tiles lies at ``U(lo, hi)`` of each side.
    hue, saturation, value: HSV jitter; hue turns by ``U(-hue, hue)`` of the colour circle,
      saturation and value are multiplied by ``1 + U(-s, s)`` and ``1 + U(-v, v)``.
    pca: ``(eigvals (3,), eigvecs (3, 3))`` from :func:`pca_colour_basis`; ``pca_std`` is the
      standard deviation of AlexNet's ``α_i`` (see :func:`sample_pca_shift`).
    min_visible, min_box: an object keeps its label when at least ``min_visible`` of its area
      shows and its clipped box is at least ``min_box`` input pixels wide and tall.
    erase_dropped: paint what shows of every other object grey (outside the kept boxes).

    Defaults, for real data: scale 0.5–1.5 as YOLOv5 and YOLOv8 train, and no mosaics
    (``DEFAULTS.mosaic_p`` says why). Where mosaics are asked for (YOLOv5 and YOLOv8 make
    every image one, off for the last epochs, which the pipeline's ``mosaic_until_epoch``
    allows), a mosaic shows about a quarter of each image, so objects are cut often, and a
    quarter of an object (a head, a wheel) is labelled rather than erased. HSV strengths are
    YOLOv5's.
    """

    mirror_p: float = 0.5
    scale: tuple[float, float] = DEFAULTS.aug_scale
    max_aspect_jitter: float = 4 / 3
    mosaic_p: float = DEFAULTS.mosaic_p
    mosaic_centre: tuple[float, float] = DEFAULTS.mosaic_centre
    hue: float = 0.015
    saturation: float = 0.7
    value: float = 0.4
    pca: tuple[np.ndarray, np.ndarray] | None = None
    pca_std: float = 0.1
    min_visible: float = DEFAULTS.min_visible
    min_box: float = DEFAULTS.min_box_px
    erase_dropped: bool = True


NO_COLOUR = dict(hue=0.0, saturation=0.0, value=0.0, pca=None)
"""Keyword overrides of :class:`Augmentation` that leave colours untouched (geometry only)."""


@dataclass(frozen=True)
class Tile:
    """One source image's part of the input: the ``crop`` window ``(x, y, w, h)`` of the source,
    resized onto the ``paste`` rectangle ``(x, y, w, h)`` of the input.

    A source point ``p`` maps to ``(p - crop_xy) * paste_wh / crop_wh + paste_xy``.
    """

    crop: tuple[int, int, int, int]
    paste: tuple[int, int, int, int]

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Cut the crop window out of ``image`` and resize it to the paste size → uint8 patch."""
        import cv2

        x, y, w, h = self.crop
        pw, ph = self.paste[2:]
        # INTER_AREA anti-aliases but is ~9x slower; bilinear only aliases below half size.
        interp = cv2.INTER_AREA if 2 * pw < w or 2 * ph < h else cv2.INTER_LINEAR
        return cv2.resize(image[y : y + h, x : x + w], (pw, ph), interpolation=interp)

    def apply_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source xyxy boxes ``(N, 4)`` → input boxes ``(N, 4)`` clipped to the crop, and the
        visible fraction ``(N,)`` = clipped area / original area (0 for boxes with no area)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        x, y, w, h = self.crop
        px, py, pw, ph = self.paste
        inside = clip(boxes - np.array([x, y, x, y], np.float32), w, h)
        full = area(boxes)
        visible = np.where(full > 0, area(inside) / np.maximum(full, 1e-12), 0.0)
        scale = np.array([pw / w, ph / h] * 2, np.float32)
        out = inside * scale + np.array([px, py, px, py], np.float32)
        return out.astype(np.float32), visible.astype(np.float32)


@dataclass(frozen=True)
class Geometry:
    """One sampled geometric transform: ``tiles`` (one per source image, in order) on a grey
    ``size × size`` input, then a left-right ``mirror`` of the whole input if drawn."""

    tiles: tuple[Tile, ...]
    mirror: bool
    size: int

    def apply_images(
        self, images: Sequence[np.ndarray], fill: int = DEFAULTS.letterbox_fill
    ) -> np.ndarray:
        """The source images (uint8, masks too) → the ``(size, size, ...)`` input, geometry only."""
        out = np.full((self.size, self.size) + images[0].shape[2:], fill, np.uint8)
        for tile, image in zip(self.tiles, images, strict=True):
            _paste(out, tile, tile.resize(image))
        return self.mirror_image(out)

    def mirror_image(self, image: np.ndarray) -> np.ndarray:
        """``image`` as it lies after the mirror (if drawn)."""
        import cv2

        # cv2.flip: ~40x faster than copying numpy's reversed view
        return cv2.flip(image, 1).reshape(image.shape) if self.mirror else image

    def mirror_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Input xyxy boxes ``(N, 4)`` as they lie after the mirror (if drawn)."""
        if not self.mirror:
            return boxes
        return np.stack(
            [self.size - boxes[:, 2], boxes[:, 1], self.size - boxes[:, 0], boxes[:, 3]], 1
        )


def _paste(canvas: np.ndarray, tile: Tile, patch: np.ndarray) -> None:
    x, y, w, h = tile.paste
    canvas[y : y + h, x : x + w] = patch


def _axis(
    rng: np.random.Generator, length: int, scale: float, start: int, span: int, align: float | None
) -> tuple[int, int, int, int]:
    """One axis of a tile: ``length`` source pixels at ``scale`` onto ``[start, start + span)``
    of the input. Larger than the span: a random window of the source fills it. Smaller: the
    whole source, at ``align`` (0: the low end, 1: the high end, None: a random spot).
    Returns ``(crop offset, crop length, paste offset, paste length)``."""
    if length * scale >= span:
        crop = int(np.clip(round(span / scale), 1, length))
        return int(rng.integers(0, length - crop + 1)), crop, start, span
    paste = max(1, round(length * scale))
    room = span - paste
    offset = int(rng.integers(0, room + 1)) if align is None else round(align * room)
    return 0, length, start + offset, paste


def _tile(
    rng: np.random.Generator,
    width: int,
    height: int,
    size: int,
    rect: tuple[int, int, int, int],
    params: Augmentation,
    align: tuple[float | None, float | None],
) -> Tile:
    """A ``width × height`` source at a random scale (of its letterbox fit to the ``size``
    input) and aspect jitter onto the input rectangle ``rect`` ``(x, y, w, h)``."""
    size_scale = Letterbox.fit(width, height, size).scale
    u = rng.uniform(*params.scale)
    log_jitter = math.log(params.max_aspect_jitter)
    aspect = math.sqrt(math.exp(rng.uniform(-log_jitter, log_jitter)))
    cx, cw, px, pw = _axis(rng, width, size_scale * u * aspect, rect[0], rect[2], align[0])
    cy, ch, py, ph = _axis(rng, height, size_scale * u / aspect, rect[1], rect[3], align[1])
    return Tile((cx, cy, cw, ch), (px, py, pw, ph))


def sample_geometry(
    rng: np.random.Generator, width: int, height: int, size: int, params: Augmentation
) -> Geometry:
    """Draw scale, aspect jitter, window or spot, and mirror for a ``width × height`` image
    alone on a ``size`` input (the plain training image)."""
    tile = _tile(rng, width, height, size, (0, 0, size, size), params, (None, None))
    return Geometry((tile,), bool(rng.random() < params.mirror_p), size)


def sample_mosaic(
    rng: np.random.Generator, sizes: Sequence[tuple[int, int]], size: int, params: Augmentation
) -> Geometry:
    """Draw a mosaic of four images of ``sizes`` ``(width, height)`` on a ``size`` input: the
    junction, which quadrant each image takes, each image's tile, and the mirror.

    Each image sits against the junction (no grey between tiles); the YOLOv5 mosaic, cut to the
    input directly instead of built on a canvas of twice its side, so it costs about what one
    plain image does beyond reading the three others.
    """
    if len(sizes) != 4:
        raise ValueError(f"a mosaic takes 4 images, got {len(sizes)}")
    lo, hi = params.mosaic_centre
    jx, jy = (int(np.clip(round(rng.uniform(lo, hi) * size), 1, size - 1)) for _ in range(2))
    quadrants = [
        ((0, 0, jx, jy), (1.0, 1.0)),
        ((jx, 0, size - jx, jy), (0.0, 1.0)),
        ((0, jy, jx, size - jy), (1.0, 0.0)),
        ((jx, jy, size - jx, size - jy), (0.0, 0.0)),
    ]
    order = rng.permutation(4)
    tiles = tuple(
        _tile(rng, width, height, size, quadrants[q][0], params, quadrants[q][1])
        for (width, height), q in zip(sizes, order, strict=True)
    )
    return Geometry(tiles, bool(rng.random() < params.mirror_p), size)


def hsv_jitter(
    image: np.ndarray, rng: np.random.Generator, hue: float, saturation: float, value: float
) -> np.ndarray:
    """Colour shifting: turn the hue by ``U(-hue, hue)`` of the circle, scale saturation and
    value by ``1 + U(-saturation, saturation)`` and ``1 + U(-value, value)``. uint8 RGB in/out.

    Done with one lookup table per HSV channel (OpenCV's 8-bit hue runs 0..179).
    """
    import cv2

    shift, s_gain, v_gain = rng.uniform(-1, 1, 3) * (hue, saturation, value)
    x = np.arange(256, dtype=np.float32)
    lut_h = np.mod(np.round(x + shift * 180), 180).astype(np.uint8)
    lut_s = np.clip(np.round(x * (1 + s_gain)), 0, 255).astype(np.uint8)
    lut_v = np.clip(np.round(x * (1 + v_gain)), 0, 255).astype(np.uint8)
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    hsv = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def pca_colour_basis(
    images: Iterable[np.ndarray], pixels_per_image: int = 10_000
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of RGB over a sample of training images (AlexNet, section 4.1).

    images: ``(H, W, 3)`` uint8 RGB; up to ``pixels_per_image`` evenly strided pixels of each are
    used, as RGB in [0, 1]. Returns ``eigvals (3,)`` descending (variances, [0, 1]² units) and
    ``eigvecs (3, 3)`` whose column ``i`` is the unit eigenvector ``p_i``.
    """
    samples = []
    for image in images:
        flat = np.asarray(image).reshape(-1, 3)
        step = max(1, len(flat) // pixels_per_image)
        samples.append(flat[::step].astype(np.float64) / 255.0)
    if not samples:
        raise ValueError("pca_colour_basis needs at least one image")
    eigvals, eigvecs = np.linalg.eigh(np.cov(np.concatenate(samples), rowvar=False))
    order = np.argsort(eigvals)[::-1]
    return np.clip(eigvals[order], 0, None).astype(np.float32), eigvecs[:, order].astype(np.float32)


def sample_pca_shift(
    rng: np.random.Generator, eigvals: np.ndarray, eigvecs: np.ndarray, std: float
) -> np.ndarray:
    """AlexNet's colour shift ``Σ α_i √λ_i p_i``, ``α_i ~ N(0, std)`` → ``(3,)`` RGB in [0, 1].

    The paper writes ``α_i λ_i``, but a variance ``λ`` changes with the pixel unit (×65025
    between [0, 1] and 0..255): on BCCD that is a shift of ~0.03 grey levels in [0, 1] units
    and ~90 levels in 0..255 units. ``√λ_i`` is the data's own spread along ``p_i`` in either
    unit, so the shift is ``std`` (10 %) of it: ~3 grey levels on BCCD, the magnitude of
    common implementations (fb.resnet.torch's Lighting: 0.1 · 0.2175 · 255 ≈ 5.5 levels).
    Hence the shift's coordinates ``p_i · shift`` are independent ``N(0, (std · √λ_i)²)``.
    """
    alpha = rng.normal(0.0, std, 3)
    sigma = np.sqrt(np.clip(np.asarray(eigvals, np.float64), 0, None))
    return (np.asarray(eigvecs, np.float64) @ (alpha * sigma)).astype(np.float32)


def pca_colour_shift(
    image: np.ndarray,
    rng: np.random.Generator,
    eigvals: np.ndarray,
    eigvecs: np.ndarray,
    std: float = 0.1,
) -> np.ndarray:
    """Add one :func:`sample_pca_shift` (scaled to 0..255) to every pixel of a uint8 RGB image,
    rounded and saturated (one lookup table per channel: ~10x faster than float arithmetic)."""
    import cv2

    shift = sample_pca_shift(rng, eigvals, eigvecs, std) * 255.0
    lut = np.clip(np.round(np.arange(256, dtype=np.float32)[:, None] + shift), 0, 255)
    return cv2.LUT(image, lut.astype(np.uint8).reshape(256, 1, 3))


def recolour(patch: np.ndarray, rng: np.random.Generator, params: Augmentation) -> np.ndarray:
    """HSV jitter then PCA colour shift of one uint8 RGB patch, as ``params`` ask."""
    if params.hue or params.saturation or params.value:
        patch = hsv_jitter(patch, rng, params.hue, params.saturation, params.value)
    if params.pca is not None:
        patch = pca_colour_shift(patch, rng, *params.pca, std=params.pca_std)
    return patch


def erase(
    image: np.ndarray,
    dropped: np.ndarray,
    kept: np.ndarray,
    fill: int = DEFAULTS.letterbox_fill,
) -> None:
    """Paint the pixels the ``dropped`` boxes touch ``fill`` grey, in place, except those any
    ``kept`` box touches. Boxes ``(N, 4)`` xyxy pixels of ``image``."""
    if len(dropped) == 0:
        return
    windows = [
        (slice(int(y1), math.ceil(y2)), slice(int(x1), math.ceil(x2))) for x1, y1, x2, y2 in kept
    ]
    saved = [image[w].copy() for w in windows]
    for x1, y1, x2, y2 in dropped:
        image[int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)] = fill
    for w, pixels in zip(windows, saved, strict=True):
        image[w] = pixels


def labelled(boxes: np.ndarray, visible: np.ndarray, params: Augmentation) -> np.ndarray:
    """Which objects keep their label ``(N,)`` bool: at least ``min_visible`` of the object
    shows (and some of it does) and its clipped input box ``(N, 4)`` is ``min_box`` wide and
    tall."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return (visible >= params.min_visible) & (visible > 0) & (wh >= params.min_box).all(axis=1)


def compose(
    geometry: Geometry,
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    params: Augmentation,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply a sampled geometry to its source ``(image, boxes, classes)`` parts, one per tile:
    resize each tile, recolour it (colours drawn from ``rng``, tile by tile), paste it; keep
    the :func:`labelled` objects, erase the others (``params.erase_dropped``), mirror.

    Returns image ``(size, size, 3)`` uint8, boxes ``(M, 4)`` float32 xyxy input pixels
    (clipped to what shows) and classes ``(M,)`` int32.
    """
    out = np.full((geometry.size, geometry.size, 3), DEFAULTS.letterbox_fill, np.uint8)
    all_boxes, all_visible, all_classes = [], [], []
    for tile, (image, boxes, classes) in zip(geometry.tiles, parts, strict=True):
        _paste(out, tile, recolour(tile.resize(image), rng, params))
        moved, visible = tile.apply_boxes(boxes)
        all_boxes.append(moved)
        all_visible.append(visible)
        all_classes.append(np.asarray(classes, np.int32).reshape(-1))
    boxes, visible = np.concatenate(all_boxes), np.concatenate(all_visible)
    classes = np.concatenate(all_classes)
    keep = labelled(boxes, visible, params)
    if params.erase_dropped:
        erase(out, boxes[~keep & (visible > 0)], boxes[keep])
    boxes = clip(geometry.mirror_boxes(boxes[keep]), geometry.size, geometry.size)
    return geometry.mirror_image(out), boxes, classes[keep]


def augment(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    img_size: int,
    params: Augmentation | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One plain training image: scale jitter (a crop or a zoom-out), colour, mirror.

    image ``(H, W, 3)`` uint8 RGB; boxes ``(N, 4)`` xyxy source pixels; classes ``(N,)``.
    Returns image ``(img_size, img_size, 3)`` uint8, boxes ``(M, 4)`` float32 xyxy input
    pixels (clipped to the visible part) and classes ``(M,)`` int32 of the labelled objects
    (see :func:`compose`). ``params`` defaults to ``Augmentation()``.
    The geometry is drawn first, by :func:`sample_geometry` from ``rng``, then the colours.
    """
    params = params or Augmentation()
    height, width = image.shape[:2]
    geometry = sample_geometry(rng, width, height, img_size, params)
    return compose(geometry, [(image, boxes, classes)], rng, params)


def mosaic(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    img_size: int,
    params: Augmentation | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A mosaic of four ``(image, boxes, classes)`` parts (as :func:`augment` takes one) on one
    ``img_size`` input, with the same outputs. The geometry is drawn first, by
    :func:`sample_mosaic` from ``rng``, then the colours tile by tile."""
    params = params or Augmentation()
    sizes = [(image.shape[1], image.shape[0]) for image, _, _ in parts]
    geometry = sample_mosaic(rng, sizes, img_size, params)
    return compose(geometry, parts, rng, params)


def prepare(
    image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, img_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The no-augmentation path (validation, detection): plain letterbox.

    Same inputs and outputs as :func:`augment`; every box is kept, moved into input pixels.
    """
    out, lb = letterbox_image(image, img_size, DEFAULTS.letterbox_fill)
    return out, lb.apply(boxes), np.asarray(classes, np.int32).reshape(-1)
