"""Augmentation: geometry checked against the pixels of rendered objects (plain images and
mosaics of four), the label rule (kept boxes cover their objects, nothing else shows), colour
ops by their statistics, determinism by seed."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from yolo_cli.boxes import area, letterbox_image
from yolo_cli.config import DEFAULTS
from yolo_cli.data.augment import (
    NO_COLOUR,
    Augmentation,
    Geometry,
    Tile,
    augment,
    erase,
    hsv_jitter,
    mosaic,
    pca_colour_basis,
    pca_colour_shift,
    prepare,
    sample_geometry,
    sample_mosaic,
    sample_pca_shift,
)

SIZE = 160
FILL = DEFAULTS.letterbox_fill
# pure colours, each at 0 or 255 in every channel: 60+ away from the background's 60..190 in
# every channel, and a blend of two is 127 away from all of them in some channel
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
           (0, 0, 0), (255, 255, 255)]  # fmt: skip


def render(rng: np.random.Generator, width: int = 240, height: int = 180, palette=range(6)):
    """Noisy grey background (channels in 60..190) with up to ``len(palette)`` non-overlapping
    filled rectangles 2+ px apart, object of class ``k`` in pure colour ``COLOURS[k]`` for ``k``
    in ``palette``; some land near the border so crops cut them.
    Returns image ``(height, width, 3)`` uint8 RGB, boxes ``(K, 4)`` xyxy px, classes ``(K,)``."""
    image = rng.integers(60, 191, (height, width, 3), dtype=np.uint8)
    boxes: list[list[int]] = []
    for _ in range(60):
        if len(boxes) == len(palette):
            break
        w, h = (int(v) for v in rng.integers(14, 70, 2))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        b = [x, y, x + w, y + h]
        if all(b[2] + 2 <= o[0] or o[2] + 2 <= b[0] or b[3] + 2 <= o[1] or o[3] + 2 <= b[1]
               for o in boxes):  # fmt: skip
            boxes.append(b)
    classes = np.array(list(palette)[: len(boxes)], np.int32)
    for k, (x1, y1, x2, y2) in zip(classes, boxes, strict=True):
        image[y1:y2, x1:x2] = COLOURS[k]
    return image, np.array(boxes, np.float32).reshape(-1, 4), classes


def render_four(rng: np.random.Generator):
    """Four scenes of random sizes, two objects each, eight colours in all (classes 0..7)."""
    return [
        render(rng, int(rng.integers(90, 300)), int(rng.integers(80, 260)), (2 * i, 2 * i + 1))
        for i in range(4)
    ]


def object_pixels(image: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of pixels within 40 of pure ``COLOURS[k]`` in every channel (the background
    and edge blends with it stay farther away)."""
    return (np.abs(image.astype(int) - COLOURS[k]) <= 40).all(axis=-1)


def assert_boxes_cover_objects(image, boxes, classes, tol=1.5):
    """Every box holds all of its object's pixels and is tight around them (within ``tol``)."""
    for box, k in zip(boxes, classes, strict=True):
        ys, xs = np.nonzero(object_pixels(image, k))
        x1, y1, x2, y2 = box
        if min(x2 - x1, y2 - y1) < 2 * tol + 1:
            assert len(xs) == 0 or (xs.min() >= x1 - tol and xs.max() + 1 <= x2 + tol), (
                "sub-pixel box with pixels outside it"
            )
            continue
        assert len(xs), f"box {box} of object {k} holds none of its pixels"
        # pixel (x, y) covers [x, x + 1) × [y, y + 1)
        assert xs.min() >= x1 - tol and xs.max() + 1 <= x2 + tol, (box, xs.min(), xs.max())
        assert ys.min() >= y1 - tol and ys.max() + 1 <= y2 + tol, (box, ys.min(), ys.max())
        assert xs.min() <= x1 + tol and xs.max() + 1 >= x2 - tol, (box, xs.min(), xs.max())
        assert ys.min() <= y1 + tol and ys.max() + 1 >= y2 - tol, (box, ys.min(), ys.max())


def crop_fraction(boxes, crop):
    """Fraction of each xyxy box inside the ``(x, y, w, h)`` window, by plain intersection."""
    x, y, w, h = crop
    iw = np.clip(np.minimum(boxes[:, 2], x + w) - np.maximum(boxes[:, 0], x), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y + h) - np.maximum(boxes[:, 1], y), 0, None)
    return iw * ih / area(boxes)


def covered(boxes, size: int) -> np.ndarray:
    """``(size, size)`` bool: the pixels the xyxy boxes touch."""
    mask = np.zeros((size, size), bool)
    for x1, y1, x2, y2 in boxes:
        mask[int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)] = True
    return mask


def expected_labels(geometry: Geometry, parts, params: Augmentation):
    """Independently of augment.py's code: per source object (all tiles, in order), its tile's
    scale, its full size at that scale, its visible fraction, its clipped box (before the
    mirror) and whether the label rule keeps it."""
    rows = []
    for tile, (_, boxes, classes) in zip(geometry.tiles, parts, strict=True):
        (cx, cy, cw, ch), (px, py, pw, ph) = tile.crop, tile.paste
        sx, sy = pw / cw, ph / ch
        for box, k, frac in zip(boxes, classes, crop_fraction(boxes, tile.crop), strict=True):
            x1, x2 = (np.clip(box[[0, 2]], cx, cx + cw) - cx) * sx + px
            y1, y2 = (np.clip(box[[1, 3]], cy, cy + ch) - cy) * sy + py
            size = ((box[2] - box[0]) * sx, (box[3] - box[1]) * sy)
            keep = frac >= params.min_visible and min(x2 - x1, y2 - y1) >= params.min_box
            rows.append(dict(k=int(k), size=size, frac=frac, box=(x1, y1, x2, y2), keep=keep))
    return rows


def assert_label_rule(out, out_boxes, out_classes, rows, params, mirror: bool):
    """Kept objects: exactly the rule's, each box tight around its pixels, showing its visible
    fraction. Dropped ones: what showed of them is grey outside the kept boxes (erase on), or
    less than min_visible of them shows (erase off)."""
    size = out.shape[0]
    assert sorted(out_classes.tolist()) == sorted(r["k"] for r in rows if r["keep"])
    assert_boxes_cover_objects(out, out_boxes, out_classes)
    kept_cover = covered(out_boxes, size)
    for r in rows:
        w, h = r["size"]
        shown = object_pixels(out, r["k"])
        ring = 2 * (w + h) + 4  # the edge pixels a resize blends
        if r["keep"]:
            assert abs(shown.sum() - r["frac"] * w * h) <= ring, (r, shown.sum())
            continue
        x1, y1, x2, y2 = r["box"]
        if mirror:
            x1, x2 = size - x2, size - x1
        if params.erase_dropped:
            assert shown[~kept_cover].sum() <= ring, ("a dropped object still shows", r)
            erased = covered([(x1, y1, x2, y2)], size) & ~kept_cover if r["frac"] > 0 else None
            if erased is not None:
                assert (out[erased] == FILL).all(), ("not painted grey", r)
        else:
            assert shown.sum() <= params.min_visible * w * h + ring, r


GEOMETRY_ONLY = Augmentation(**NO_COLOUR)


@pytest.mark.parametrize("seed", range(60))
def test_augmented_boxes_cover_their_objects_and_nothing_unlabelled_shows(seed):
    rng = np.random.default_rng(1000 + seed)
    image, boxes, classes = render(rng)
    out, out_boxes, out_classes = augment(
        image, boxes, classes, np.random.default_rng(seed), SIZE, GEOMETRY_ONLY
    )
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    assert out_boxes.shape == (len(out_classes), 4) and out_boxes.dtype == np.float32
    assert out_classes.dtype == np.int32
    assert (out_boxes >= 0).all() and (out_boxes <= SIZE).all()
    # augment draws its geometry first (documented), so it can be recovered
    geometry = sample_geometry(np.random.default_rng(seed), 240, 180, SIZE, GEOMETRY_ONLY)
    rows = expected_labels(geometry, [(image, boxes, classes)], GEOMETRY_ONLY)
    assert_label_rule(out, out_boxes, out_classes, rows, GEOMETRY_ONLY, geometry.mirror)


@pytest.mark.parametrize("seed", range(40))
def test_mosaic_boxes_cover_their_objects_and_nothing_unlabelled_shows(seed):
    parts = render_four(np.random.default_rng(2000 + seed))
    out, out_boxes, out_classes = mosaic(parts, np.random.default_rng(seed), SIZE, GEOMETRY_ONLY)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    assert out_boxes.shape == (len(out_classes), 4) and out_boxes.dtype == np.float32
    assert (out_boxes >= 0).all() and (out_boxes <= SIZE).all()
    sizes = [(im.shape[1], im.shape[0]) for im, _, _ in parts]
    geometry = sample_mosaic(np.random.default_rng(seed), sizes, SIZE, GEOMETRY_ONLY)
    rows = expected_labels(geometry, parts, GEOMETRY_ONLY)
    assert_label_rule(out, out_boxes, out_classes, rows, GEOMETRY_ONLY, geometry.mirror)


@pytest.mark.parametrize("seed", range(20))
def test_without_erasing_a_dropped_object_shows_less_than_min_visible(seed):
    params = Augmentation(**NO_COLOUR, erase_dropped=False)
    parts = render_four(np.random.default_rng(3000 + seed))
    out, out_boxes, out_classes = mosaic(parts, np.random.default_rng(seed), SIZE, params)
    sizes = [(im.shape[1], im.shape[0]) for im, _, _ in parts]
    geometry = sample_mosaic(np.random.default_rng(seed), sizes, SIZE, params)
    rows = expected_labels(geometry, parts, params)
    assert_label_rule(out, out_boxes, out_classes, rows, params, geometry.mirror)


def test_the_label_rule_drops_and_erases_what_it_should():
    """Over many mosaics, objects are cut: some kept whole, some kept clipped, some dropped
    (and erased), so the tests above see every case."""
    kept_clipped = dropped = kept_whole = 0
    for seed in range(40):
        parts = render_four(np.random.default_rng(2000 + seed))
        sizes = [(im.shape[1], im.shape[0]) for im, _, _ in parts]
        geometry = sample_mosaic(np.random.default_rng(seed), sizes, SIZE, GEOMETRY_ONLY)
        for r in expected_labels(geometry, parts, GEOMETRY_ONLY):
            kept_whole += r["keep"] and r["frac"] == 1
            kept_clipped += r["keep"] and r["frac"] < 1
            dropped += not r["keep"] and r["frac"] > 0
    assert min(kept_whole, kept_clipped, dropped) >= 10, (kept_whole, kept_clipped, dropped)


def test_mosaic_tiles_meet_at_the_junction_one_image_a_quadrant():
    params = Augmentation()
    lo, hi = params.mosaic_centre
    for seed in range(200):
        rng = np.random.default_rng(seed)
        sizes = [(int(rng.integers(50, 900)), int(rng.integers(50, 900))) for _ in range(4)]
        geometry = sample_mosaic(rng, sizes, SIZE, params)
        pastes = np.array([t.paste for t in geometry.tiles])
        x1, y1 = pastes[:, 0], pastes[:, 1]
        x2, y2 = x1 + pastes[:, 2], y1 + pastes[:, 3]
        # the junction: the one x (and y) that two tiles end on and two start from
        jx = sorted(set(x2) & set(x1))
        jy = sorted(set(y2) & set(y1))
        assert len(jx) == 1 and len(jy) == 1, (x1, x2, y1, y2)
        jx, jy = jx[0], jy[0]
        assert lo * SIZE - 1 <= jx <= hi * SIZE + 1 and lo * SIZE - 1 <= jy <= hi * SIZE + 1
        # one tile per quadrant, each inside it and touching the junction
        left, top = x2 <= jx, y2 <= jy
        assert sorted(zip(left, top)) == [
            (False, False),
            (False, True),
            (True, False),
            (True, True),
        ]
        assert ((x1 == jx) | (x2 == jx)).all() and ((y1 == jy) | (y2 == jy)).all()
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= SIZE).all() and (y2 <= SIZE).all()
        for (cx, cy, cw, ch), (w, h) in zip((t.crop for t in geometry.tiles), sizes, strict=True):
            assert 0 <= cx and cx + cw <= w and 0 <= cy and cy + ch <= h


def test_scale_jitter_spans_its_range_on_both_paths():
    """Tile scale over letterbox scale lies in [lo, hi] · aspect jitter and spreads over it."""
    params = Augmentation(max_aspect_jitter=1.0)
    lo, hi = params.scale
    ratios = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        w, h = int(rng.integers(100, 800)), int(rng.integers(100, 800))
        fit = min(SIZE / w, SIZE / h)
        for geometry in (
            sample_geometry(rng, w, h, SIZE, params),
            sample_mosaic(rng, [(w, h)] * 4, SIZE, params),
        ):
            for tile in geometry.tiles:
                (_, _, cw, ch), (_, _, pw, ph) = tile.crop, tile.paste
                # the longer side of the crop is rounded to fewer whole pixels: judge by it
                scale = pw / cw if cw >= ch else ph / ch
                ratios.append(scale / fit)
    ratios = np.array(ratios)
    assert ratios.min() >= lo * 0.97 and ratios.max() <= hi * 1.03
    assert np.quantile(ratios, 0.05) < lo + 0.1 and np.quantile(ratios, 0.95) > hi - 0.1


def test_visible_fraction_of_a_hand_made_crop():
    boxes = np.array(
        [[0, 0, 40, 40], [90, 10, 130, 50], [95, 60, 135, 100], [10, 70, 50, 110]], np.float32
    )
    # crop x ∈ [20, 120), y ∈ [0, 100): fractions 20·40, 30·40, 25·40, 30·30 over 40·40
    out, visible = Tile(crop=(20, 0, 100, 100), paste=(0, 0, 100, 100)).apply_boxes(boxes)
    np.testing.assert_allclose(visible, [0.5, 0.75, 0.625, 0.5625])
    np.testing.assert_allclose(out[0], [0, 0, 20, 40])
    np.testing.assert_allclose(out[2], [75, 60, 100, 100])
    # pasted at (30, 40) at half size
    out, _ = Tile(crop=(20, 0, 100, 100), paste=(30, 40, 50, 50)).apply_boxes(boxes)
    np.testing.assert_allclose(out[2], [67.5, 70, 80, 90])


@pytest.mark.parametrize("seed", range(10))
def test_visible_fraction_matches_pixels_of_the_crop(seed):
    rng = np.random.default_rng(seed)
    image, boxes, classes = render(rng)
    crop_w, crop_h = int(rng.integers(40, 240)), int(rng.integers(40, 180))
    crop_x, crop_y = int(rng.integers(0, 240 - crop_w + 1)), int(rng.integers(0, 180 - crop_h + 1))
    tile = Tile((crop_x, crop_y, crop_w, crop_h), (0, 0, crop_w, crop_h))
    _, visible = tile.apply_boxes(boxes)
    np.testing.assert_allclose(visible, crop_fraction(boxes, tile.crop), rtol=1e-6)
    # the same crop applied to the pixels: each object's visible pixels over its area
    out = Geometry((tile,), False, 240).apply_images([image])
    for k, frac in zip(classes, visible, strict=True):
        np.testing.assert_allclose(object_pixels(out, k).sum() / area(boxes[k : k + 1])[0], frac)


def test_erase_paints_dropped_boxes_grey_but_not_kept_ones():
    image = np.zeros((20, 20, 3), np.uint8)
    erase(image, np.array([[2, 2, 12.5, 10]]), np.array([[8, 0, 20, 5.2]]))
    grey = (image == FILL).all(-1)
    expected = np.zeros((20, 20), bool)
    expected[2:10, 2:13] = True  # 12.5 touches column 12
    expected[0:6, 8:20] = False  # the kept box touches rows 0..5
    np.testing.assert_array_equal(grey, expected)


def test_mirror_flips_image_and_boxes():
    rng = np.random.default_rng(3)
    image, boxes, classes = render(rng, SIZE, SIZE)
    fixed = dict(NO_COLOUR, scale=(1.0, 1.0), max_aspect_jitter=1.0)
    plain = augment(image, boxes, classes, np.random.default_rng(0), SIZE,
                    Augmentation(**fixed, mirror_p=0.0))  # fmt: skip
    mirrored = augment(image, boxes, classes, np.random.default_rng(0), SIZE,
                       Augmentation(**fixed, mirror_p=1.0))  # fmt: skip
    np.testing.assert_array_equal(plain[0], image)  # the whole SIZE image at scale 1: identity
    np.testing.assert_allclose(plain[1], boxes)
    np.testing.assert_array_equal(mirrored[0], image[:, ::-1])
    x1, y1, x2, y2 = boxes.T
    np.testing.assert_allclose(mirrored[1], np.stack([SIZE - x2, y1, SIZE - x1, y2], 1))
    np.testing.assert_array_equal(mirrored[2], classes)
    assert_boxes_cover_objects(mirrored[0], mirrored[1], mirrored[2], tol=0.01)


@pytest.mark.parametrize("seed", range(10))
def test_mirrored_mosaic_is_the_mosaic_mirrored(seed):
    parts = render_four(np.random.default_rng(4000 + seed))
    plain = mosaic(parts, np.random.default_rng(seed), SIZE, Augmentation(mirror_p=0.0))
    mirrored = mosaic(parts, np.random.default_rng(seed), SIZE, Augmentation(mirror_p=1.0))
    np.testing.assert_array_equal(mirrored[0], plain[0][:, ::-1])
    x1, y1, x2, y2 = plain[1].T
    np.testing.assert_allclose(mirrored[1], np.stack([SIZE - x2, y1, SIZE - x1, y2], 1))
    np.testing.assert_array_equal(mirrored[2], plain[2])
    geometry_only = mosaic(parts, np.random.default_rng(seed), SIZE,
                           Augmentation(**NO_COLOUR, mirror_p=1.0))  # fmt: skip
    assert_boxes_cover_objects(*geometry_only)


def test_mirror_probability_is_half():
    rng = np.random.default_rng(4)
    image, boxes, classes = render(rng, SIZE, SIZE)
    fixed = Augmentation(**NO_COLOUR, scale=(1.0, 1.0), max_aspect_jitter=1.0)
    flips = sum(
        not np.array_equal(
            augment(image, boxes, classes, np.random.default_rng(s), SIZE, fixed)[0], image
        )  # fmt: skip
        for s in range(200)
    )
    assert 70 <= flips <= 130  # Binomial(200, 0.5): mean 100, sd 7


def test_scaling_down_leaves_grey_border_and_shrinks_objects():
    rng = np.random.default_rng(6)
    image, boxes, classes = render(rng, SIZE, SIZE)
    params = Augmentation(**NO_COLOUR, scale=(0.5, 0.9), max_aspect_jitter=1.0, mirror_p=0.0)
    grey_fractions = []
    for seed in range(20):
        out, out_boxes, out_classes = augment(
            image, boxes, classes, np.random.default_rng(seed), SIZE, params
        )
        np.testing.assert_array_equal(out_classes, classes)  # whole image visible
        assert (area(out_boxes) <= 0.9**2 * area(boxes) + 1).all()
        assert_boxes_cover_objects(out, out_boxes, out_classes)
        grey_fractions.append((out == FILL).all(axis=-1).mean())
    # scale u ~ U(0.5, 0.9): E[grey] = 1 - E[u²] = 1 - (0.9³ - 0.5³) / (3 · 0.4) ≈ 0.50
    assert 0.4 < np.mean(grey_fractions) < 0.6


def test_augment_and_mosaic_are_deterministic_per_seed():
    rng = np.random.default_rng(7)
    image, boxes, classes = render(rng)
    parts = render_four(rng)
    params = Augmentation(pca=pca_colour_basis([image]))
    for make in (
        lambda seed: augment(image, boxes, classes, np.random.default_rng(seed), SIZE, params),
        lambda seed: mosaic(parts, np.random.default_rng(seed), SIZE, params),
    ):
        a, b, c = make(11), make(11), make(12)
        for x, y in zip(a, b, strict=True):
            assert x.tobytes() == y.tobytes()
        assert not np.array_equal(a[0], c[0])


def test_prepare_is_the_plain_letterbox():
    rng = np.random.default_rng(8)
    image, boxes, classes = render(rng)
    out, out_boxes, out_classes = prepare(image, boxes, classes, SIZE)
    np.testing.assert_array_equal(out, letterbox_image(image, SIZE)[0])
    np.testing.assert_array_equal(out_classes, classes)
    assert out_classes.dtype == np.int32
    assert_boxes_cover_objects(out, out_boxes, out_classes)


def test_empty_boxes_pass_through():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    out, boxes, classes = augment(image, np.zeros((0, 4)), np.zeros(0), rng, SIZE)
    assert out.shape == (SIZE, SIZE, 3) and boxes.shape == (0, 4) and classes.shape == (0,)
    empty = (image, np.zeros((0, 4)), np.zeros(0))
    out, boxes, classes = mosaic([empty] * 4, rng, SIZE)
    assert out.shape == (SIZE, SIZE, 3) and boxes.shape == (0, 4) and classes.shape == (0,)


# colour operations, geometry aside


def test_hsv_value_gain_scales_every_pixel_alike():
    rng = np.random.default_rng(10)
    image = rng.integers(30, 150, (64, 64, 3), dtype=np.uint8)
    gains = []
    for seed in range(30):
        out = hsv_jitter(image, np.random.default_rng(seed), 0.0, 0.0, 0.4)
        v_in = image.max(axis=-1).astype(float)  # HSV value = max(R, G, B)
        v_out = out.max(axis=-1).astype(float)
        gain = np.median(v_out / v_in)
        np.testing.assert_allclose(v_out, np.clip(v_in * gain, 0, 255), atol=2.5)
        gains.append(gain)
    assert 0.6 - 1e-3 <= min(gains) and max(gains) <= 1.4 + 1e-3
    assert max(gains) - min(gains) > 0.3  # really random


def test_hsv_hue_and_saturation_leave_grey_alone_and_turn_colours():
    grey = np.full((8, 8, 3), 128, np.uint8)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    turns = []
    for seed in range(50):
        np.testing.assert_array_equal(
            hsv_jitter(grey, np.random.default_rng(seed), 0.1, 0.7, 0.0), grey
        )
        out = hsv_jitter(red, np.random.default_rng(seed), 0.1, 0.0, 0.0)
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        assert (hsv[..., 2] >= 198).all()  # value kept
        hue = int(hsv[0, 0, 0])  # red is hue 0 of OpenCV's 0..179 circle
        turns.append(min(hue, 180 - hue))
    # turns ~ |U(-18, 18)|: all within 10 % of the circle, and the largest of 50 near it
    assert max(turns) <= 0.1 * 180 + 1 and max(turns) >= 0.75 * 18
    assert len(set(turns)) > 5


def correlated_pixels(rng, cov, n=200_000):
    """uint8 RGB pixels around grey 128 with covariance ``cov`` (in [0, 1] units), as an image."""
    pixels = rng.multivariate_normal([0.5, 0.5, 0.5], cov, n)
    return np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8).reshape(-1, 400, 3)


def test_pca_basis_recovers_known_covariance():
    rng = np.random.default_rng(13)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    true_vals = np.array([0.02, 0.005, 0.001])
    cov = q @ np.diag(true_vals) @ q.T
    image = correlated_pixels(rng, cov)
    eigvals, eigvecs = pca_colour_basis([image[:250], image[250:]], pixels_per_image=100_000)
    assert eigvals.shape == (3,) and eigvecs.shape == (3, 3)
    np.testing.assert_allclose(eigvals, true_vals, rtol=0.05, atol=2e-5)  # + uint8 rounding
    for i in range(2):  # the two well-separated axes, up to sign
        assert abs(eigvecs[:, i] @ q[:, i]) > 0.99
    np.testing.assert_allclose(eigvecs.T @ eigvecs, np.eye(3), atol=1e-5)


def test_pca_shift_has_the_documented_statistics():
    """Shift coordinates along p_i are independent N(0, (std · √λ_i)²)."""
    rng = np.random.default_rng(14)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    eigvals = np.array([0.04, 0.01, 0.0025], np.float32)
    shifts = np.stack([sample_pca_shift(rng, eigvals, q, 0.1) for _ in range(20_000)])
    coords = shifts @ q  # coordinates along each p_i
    sd = 0.1 * np.sqrt(eigvals)
    np.testing.assert_allclose(coords.std(axis=0), sd, rtol=0.03)
    assert (np.abs(coords.mean(axis=0)) <= 4 * sd / np.sqrt(len(coords))).all()
    corr = np.corrcoef(coords.T)
    np.testing.assert_allclose(corr, np.eye(3), atol=0.03)


def test_pca_colour_shift_adds_one_shift_to_every_pixel():
    rng = np.random.default_rng(15)
    image = rng.integers(40, 216, (32, 48, 3), dtype=np.uint8)
    eigvals, eigvecs = pca_colour_basis([correlated_pixels(rng, np.diag([0.03, 0.02, 0.01]))])
    out = pca_colour_shift(image, np.random.default_rng(16), eigvals, eigvecs, 0.1)
    shift = sample_pca_shift(np.random.default_rng(16), eigvals, eigvecs, 0.1) * 255
    assert np.abs(shift).max() > 1  # the test image must actually move
    np.testing.assert_array_equal(out, np.clip(np.round(image + shift), 0, 255).astype(np.uint8))


def test_colour_ops_keep_the_grey_border():
    rng = np.random.default_rng(17)
    image, boxes, classes = render(rng, 200, 100)  # wide: grey above and below it
    params = Augmentation(pca=pca_colour_basis([image]), pca_std=1.0, scale=(1.0, 1.0),
                          max_aspect_jitter=1.0)  # fmt: skip
    for seed in range(5):
        out, _, _ = augment(image, boxes, classes, np.random.default_rng(seed), SIZE, params)
        geometry = sample_geometry(np.random.default_rng(seed), 200, 100, SIZE, params)
        x, y, w, h = geometry.tiles[0].paste
        inside = np.zeros((SIZE, SIZE), bool)
        inside[y : y + h, x : x + w] = True
        assert h == 80 and (out[~geometry.mirror_image(inside)] == FILL).all()
