"""Augmentation: geometry checked against the pixels of rendered objects, colour ops by their
statistics, determinism by seed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_cli.boxes import area, letterbox_image
from yolo_cli.config import DEFAULTS
from yolo_cli.data.augment import (
    NO_COLOUR,
    Augmentation,
    Geometry,
    augment,
    hsv_jitter,
    pca_colour_basis,
    pca_colour_shift,
    prepare,
    sample_geometry,
    sample_pca_shift,
)

SIZE = 160
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def render(rng: np.random.Generator, width: int = 240, height: int = 180):
    """Noisy grey background (channels in 60..190) with up to six non-overlapping filled
    rectangles, object ``k`` in pure colour ``COLOURS[k]`` and of class ``k``; some are placed
    across the image border's neighbourhood so crops cut them.
    Returns image ``(height, width, 3)`` uint8 RGB, boxes ``(K, 4)`` xyxy px, classes ``(K,)``."""
    image = rng.integers(60, 191, (height, width, 3), dtype=np.uint8)
    boxes: list[list[int]] = []
    for _ in range(60):
        if len(boxes) == len(COLOURS):
            break
        w, h = (int(v) for v in rng.integers(14, 70, 2))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        b = [x, y, x + w, y + h]
        if all(b[2] + 2 <= o[0] or o[2] + 2 <= b[0] or b[3] + 2 <= o[1] or o[3] + 2 <= b[1]
               for o in boxes):  # fmt: skip
            boxes.append(b)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        image[y1:y2, x1:x2] = COLOURS[k]
    return image, np.array(boxes, np.float32), np.arange(len(boxes), dtype=np.int32)


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


GEOMETRY_ONLY = Augmentation(**NO_COLOUR, min_crop_area=0.3, zoom_out_p=0.5)  # wider than default


def crop_fraction(boxes, crop):
    """Fraction of each xyxy box inside the ``(x, y, w, h)`` window, by plain intersection."""
    x, y, w, h = crop
    iw = np.clip(np.minimum(boxes[:, 2], x + w) - np.maximum(boxes[:, 0], x), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y + h) - np.maximum(boxes[:, 1], y), 0, None)
    return iw * ih / area(boxes)


@pytest.mark.parametrize("seed", range(60))
def test_augmented_boxes_cover_their_objects(seed):
    rng = np.random.default_rng(1000 + seed)
    image, boxes, classes = render(rng)
    out, out_boxes, out_classes = augment(
        image, boxes, classes, np.random.default_rng(seed), SIZE, GEOMETRY_ONLY
    )
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
    assert out_boxes.shape == (len(out_classes), 4) and out_boxes.dtype == np.float32
    assert out_classes.dtype == np.int32
    assert (out_boxes >= 0).all() and (out_boxes <= SIZE).all()
    assert_boxes_cover_objects(out, out_boxes, out_classes)

    # augment draws its geometry first (documented), so the crop window can be recovered;
    # kept objects are exactly those with ≥ min_visible of their box inside it ...
    geom = sample_geometry(np.random.default_rng(seed), 240, 180, SIZE, GEOMETRY_ONLY)
    visible = crop_fraction(boxes, geom.crop)
    np.testing.assert_array_equal(out_classes, classes[visible >= DEFAULTS.min_visible])
    # ... and the pixels agree: each object shows that fraction of its area at this scale
    sx, sy = geom.paste[2] / geom.crop[2], geom.paste[3] / geom.crop[3]
    for k in classes:
        w, h = (boxes[k, 2:] - boxes[k, :2]) * (sx, sy)
        shown = object_pixels(out, k).sum()
        assert abs(shown - visible[k] * w * h) <= 2 * (w + h) + 4, (k, shown, visible[k] * w * h)


def test_visible_fraction_of_a_hand_made_crop():
    boxes = np.array(
        [[0, 0, 40, 40], [90, 10, 130, 50], [95, 60, 135, 100], [10, 70, 50, 110]], np.float32
    )
    # crop x ∈ [20, 120), y ∈ [0, 100): fractions 20·40, 30·40, 25·40, 30·30 over 40·40
    geom = Geometry(crop=(20, 0, 100, 100), paste=(0, 0, 100, 100), mirror=False, size=100)
    out, visible = geom.apply_boxes(boxes)
    np.testing.assert_allclose(visible, [0.5, 0.75, 0.625, 0.5625])
    np.testing.assert_allclose(out[0], [0, 0, 20, 40])
    np.testing.assert_allclose(out[2], [75, 60, 100, 100])


@pytest.mark.parametrize("seed", range(10))
def test_visible_fraction_matches_pixels_of_the_crop(seed):
    rng = np.random.default_rng(seed)
    image, boxes, classes = render(rng)
    crop_w, crop_h = int(rng.integers(40, 240)), int(rng.integers(40, 180))
    crop_x, crop_y = int(rng.integers(0, 240 - crop_w + 1)), int(rng.integers(0, 180 - crop_h + 1))
    geom = Geometry((crop_x, crop_y, crop_w, crop_h), (0, 0, crop_w, crop_h), False, 240)
    _, visible = geom.apply_boxes(boxes)
    np.testing.assert_allclose(visible, crop_fraction(boxes, geom.crop), rtol=1e-6)
    # the same crop applied to the pixels: each object's visible pixels over its area
    out = geom.apply_image(image)
    for k, frac in enumerate(visible):
        np.testing.assert_allclose(object_pixels(out, k).sum() / area(boxes[k : k + 1])[0], frac)


def test_mirror_flips_image_and_boxes():
    rng = np.random.default_rng(3)
    image, boxes, classes = render(rng, SIZE, SIZE)
    fixed = dict(NO_COLOUR, min_crop_area=1.0, max_aspect_jitter=1.0, zoom_out_p=0.0)
    plain = augment(image, boxes, classes, np.random.default_rng(0), SIZE,
                    Augmentation(**fixed, mirror_p=0.0))  # fmt: skip
    mirrored = augment(image, boxes, classes, np.random.default_rng(0), SIZE,
                       Augmentation(**fixed, mirror_p=1.0))  # fmt: skip
    np.testing.assert_array_equal(plain[0], image)  # full crop of a SIZE image: identity
    np.testing.assert_allclose(plain[1], boxes)
    np.testing.assert_array_equal(mirrored[0], image[:, ::-1])
    x1, y1, x2, y2 = boxes.T
    np.testing.assert_allclose(mirrored[1], np.stack([SIZE - x2, y1, SIZE - x1, y2], 1))
    np.testing.assert_array_equal(mirrored[2], classes)
    assert_boxes_cover_objects(mirrored[0], mirrored[1], mirrored[2], tol=0.01)


def test_mirror_probability_is_half():
    rng = np.random.default_rng(4)
    image, boxes, classes = render(rng, SIZE, SIZE)
    fixed = Augmentation(**NO_COLOUR, min_crop_area=1.0, max_aspect_jitter=1.0, zoom_out_p=0.0)
    flips = sum(
        not np.array_equal(
            augment(image, boxes, classes, np.random.default_rng(s), SIZE, fixed)[0], image
        )  # fmt: skip
        for s in range(200)
    )
    assert 70 <= flips <= 130  # Binomial(200, 0.5): mean 100, sd 7


def test_zoom_out_leaves_grey_border_and_shrinks_objects():
    rng = np.random.default_rng(6)
    image, boxes, classes = render(rng, SIZE, SIZE)
    params = Augmentation(**NO_COLOUR, min_crop_area=1.0, max_aspect_jitter=1.0,
                          zoom_out_p=1.0, max_zoom_out=2.0, mirror_p=0.0)  # fmt: skip
    grey_fractions = []
    for seed in range(20):
        out, out_boxes, out_classes = augment(
            image, boxes, classes, np.random.default_rng(seed), SIZE, params
        )
        np.testing.assert_array_equal(out_classes, classes)  # whole image visible
        assert (area(out_boxes) <= area(boxes) + 1e-3).all()
        assert_boxes_cover_objects(out, out_boxes, out_classes)
        grey_fractions.append((out == DEFAULTS.letterbox_fill).all(axis=-1).mean())
    # canvas z ~ U(1, 2) times the image: E[grey] = 1 - E[1 / z²] = 0.5
    assert 0.35 < np.mean(grey_fractions) < 0.65


def test_augment_is_deterministic_per_seed():
    rng = np.random.default_rng(7)
    image, boxes, classes = render(rng)
    basis = pca_colour_basis([image])
    params = Augmentation(pca=basis)
    a = augment(image, boxes, classes, np.random.default_rng(11), SIZE, params)
    b = augment(image, boxes, classes, np.random.default_rng(11), SIZE, params)
    c = augment(image, boxes, classes, np.random.default_rng(12), SIZE, params)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
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
    image, boxes, classes = render(rng, 200, 100)  # wide: letterbox borders top and bottom
    params = Augmentation(pca=pca_colour_basis([image]), pca_std=1.0, min_crop_area=1.0,
                          max_aspect_jitter=1.0, zoom_out_p=0.0)  # fmt: skip
    out, _, _ = augment(image, boxes, classes, rng, SIZE, params)
    assert (out[:10] == DEFAULTS.letterbox_fill).all() and (
        out[-10:] == DEFAULTS.letterbox_fill
    ).all()
