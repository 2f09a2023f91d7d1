"""Sliding-window baselines: crop classifier, naive detector, and its convolutional form.

The key oracle: at the network's stride the convolutional map must reproduce, window by
window, the probabilities the naive detector gets by classifying each crop on its own.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from yolo_cli.baselines.classifier import (
    NEGATIVE_IOU,
    POSITIVE_IOU,
    build_classifier,
    class_weights,
    model_macs,
    network_stride,
    object_squares,
    sample_crops,
    sample_windows,
    train_classifier,
)
from yolo_cli.baselines.conv_window import (
    conv_window_cost,
    conv_window_detect,
    conv_window_probabilities,
    is_convolutional,
    to_convolutional,
)
from yolo_cli.baselines.window import (
    pyramid,
    sliding_window_cost,
    sliding_window_detect,
    window_boxes,
    window_probabilities,
)
from yolo_cli.boxes import iou
from yolo_cli.data.dataset import Dataset, Sample
from yolo_cli.modelfile import ModelMeta, load_model, save_model

NAMES = ["disc", "block", "wedge"]
CROP = 32
SCALES = (1.0, 0.5)  # windows of 32 and 64 px
LENET_MACS = 28 * 28 * 5 * 5 * 3 * 8 + 10 * 10 * 5 * 5 * 8 * 16 + 400 * 120 + 120 * 84 + 84 * 4


def render_shapes(rng: np.random.Generator, size: int = 96):
    """A noisy image with 1–3 coloured shapes: red discs, green blocks, blue wedges.

    Returns ``image (size, size, 3)`` uint8 RGB, ``boxes (N, 4)`` xyxy pixels, ``classes (N,)``.
    """
    image = rng.integers(60, 160, (size, size, 3), dtype=np.uint8)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(3))
        side = int(rng.integers(22, 48))
        x, y = (int(v) for v in rng.integers(0, size - side, 2))
        colour = [(230, 40, 40), (40, 210, 40), (40, 60, 230)][cls]
        if cls == 0:
            cv2.circle(image, (x + side // 2, y + side // 2), side // 2, colour, -1)
        elif cls == 1:
            cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), colour, -1)
        else:
            pts = np.array([[x, y + side - 1], [x + side - 1, y + side - 1], [x + side // 2, y]])
            cv2.fillPoly(image, [pts.astype(np.int32)], colour)
        boxes.append([x, y, x + side, y + side])
        classes.append(cls)
    return image, np.array(boxes, np.float32), np.array(classes, np.int32)


def shapes_dataset(root, n: int, seed: int) -> Dataset:
    """``n`` rendered images written as PNG under ``root``, as a Dataset."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        image, boxes, classes = render_shapes(rng)
        path = root / f"{i:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        samples.append(Sample(path, boxes, classes, image.shape[1], image.shape[0]))
    return Dataset(list(NAMES), samples, "synth", root)


def random_classifier(seed: int):
    """An untrained classifier with a sharpened output layer, so probabilities vary a lot."""
    keras.utils.set_random_seed(seed)
    model = build_classifier(len(NAMES), CROP)
    kernel, bias = model.get_layer("probs").get_weights()
    model.get_layer("probs").set_weights([kernel * 8, bias])
    return model


META = ModelMeta("window", list(NAMES), CROP)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier trained briefly on 24 rendered images, and 12 held-out images."""
    root = tmp_path_factory.mktemp("shapes")
    train = shapes_dataset(root / "train", 24, seed=1)
    held_out = shapes_dataset(root / "test", 12, seed=2)
    model = train_classifier(train, epochs=8, crop=CROP, seed=0, n_per_image=12, scales=SCALES)
    return model, held_out


# --- the classifier ---------------------------------------------------------------------------


def test_classifier_is_lenet_with_background_last():
    model = build_classifier(len(NAMES), CROP)
    probs = np.asarray(model(np.zeros((2, CROP, CROP, 3), np.float32)))
    assert probs.shape == (2, len(NAMES) + 1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert [type(lay).__name__ for lay in model.layers] == [
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
        "Dense",
    ]
    assert model_macs(model, CROP, CROP) == LENET_MACS
    assert network_stride(model) == 4
    with pytest.raises(ValueError, match="too small"):
        build_classifier(3, crop=12)


def test_class_weights_balance_every_present_class():
    labels = np.array([0, 0, 0, 0, 2, 3, 3])
    weights = class_weights(labels, 4)
    assert set(weights) == {0, 2, 3}
    totals = [weights[k] * np.count_nonzero(labels == k) for k in weights]
    np.testing.assert_allclose(totals, len(labels) / 3)


def test_sample_windows_positives_overlap_their_object_and_negatives_avoid_all():
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 20, 50, 40], [60, 10, 90, 80], [5, 70, 30, 95]], np.float32)
    classes = np.array([0, 1, 2], np.int32)
    windows, labels = sample_windows(boxes, classes, 120, 100, CROP, 200, rng, (1.0, 0.7, 0.5))
    assert windows.dtype == np.float32 and labels.dtype == np.int32
    side = windows[:, 2:] - windows[:, :2]
    np.testing.assert_allclose(side[:, 0], side[:, 1], rtol=1e-5)  # squares, as windows are
    assert (windows[:, :2] >= -1e-3).all() and (windows[:, 2] <= 120.001).all()
    assert (windows[:, 3] <= 100.001).all()
    pos, neg = labels >= 0, labels < 0
    assert pos.sum() > 150 and neg.sum() > 150
    squares = object_squares(boxes)
    own = iou(windows[pos], squares)[np.arange(pos.sum()), labels[pos]]
    assert (own >= POSITIVE_IOU - 1e-6).all()
    assert (iou(windows[neg], np.concatenate([boxes, squares])) < NEGATIVE_IOU).all()


def test_sample_crops_labels_background_last_and_counts_bad_images(tmp_path):
    dataset = shapes_dataset(tmp_path, 3, seed=5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    dataset.samples.append(Sample(bad, np.zeros((0, 4), np.float32), np.zeros(0, np.int32), 9, 9))
    crops, labels = sample_crops(dataset, CROP, 6, np.random.default_rng(0), SCALES)
    assert crops.shape == (len(labels), CROP, CROP, 3) and crops.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels == 3).sum() == 18
    assert dataset.problems.counts() == {"corrupt-image": 1}


# --- geometry -----------------------------------------------------------------------------------


def test_pyramid_windows_cover_the_image_at_stride():
    levels = pyramid(100, 80, (1.0, 0.5, 0.3), CROP)
    assert [(lv.width, lv.height) for lv in levels] == [(80, 100), (40, 50)]  # 24 px < crop
    boxes = window_boxes(levels[0], CROP, 4)
    assert len(boxes) == ((100 - 32) // 4 + 1) * ((80 - 32) // 4 + 1)
    np.testing.assert_array_equal(boxes[:2], [[0, 0, 32, 32], [4, 0, 36, 32]])  # row-major
    coarse = window_boxes(levels[1], CROP, 4)
    np.testing.assert_allclose(coarse[0], [0, 0, 64, 64])  # a 32-px window at half scale
    assert coarse[:, 2].max() <= 80 and coarse[:, 3].max() <= 100


def test_image_smaller_than_every_window_gives_no_detections():
    model = random_classifier(0)
    image = np.zeros((20, 30, 3), np.uint8)
    for detect in (sliding_window_detect, conv_window_detect):
        dets, evaluated = detect(model, META, image, SCALES)
        assert len(dets) == 0 and evaluated == 0


# --- the convolutional implementation -----------------------------------------------------------


def test_to_convolutional_keeps_parameters_and_classifies_a_crop_alike():
    model = random_classifier(1)
    conv = to_convolutional(model)
    assert is_convolutional(conv) and not is_convolutional(model)
    assert conv.count_params() == model.count_params()
    assert model_macs(conv, CROP, CROP) == model_macs(model, CROP, CROP)
    crops = np.random.default_rng(0).uniform(0, 255, (3, CROP, CROP, 3)).astype(np.float32)
    cell = np.asarray(conv(crops))
    assert cell.shape == (3, 1, 1, len(NAMES) + 1)
    np.testing.assert_allclose(cell[:, 0, 0], np.asarray(model(crops)), atol=1e-5)


def test_to_convolutional_refuses_padded_layers():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match="padding"):
        to_convolutional(model)


@pytest.mark.parametrize("height,width", [(64, 36), (61, 77), (100, 45), (131, 128)])
def test_conv_map_equals_naive_windows_on_random_images(height, width):
    model = random_classifier(height)
    conv = to_convolutional(model)
    image = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    scales = (1.0, 0.73, 0.5)
    naive_boxes, naive_probs = window_probabilities(model, META, image, scales, stride=4)
    conv_boxes, conv_probs = conv_window_probabilities(conv, META, image, scales)
    np.testing.assert_array_equal(conv_boxes, naive_boxes)
    np.testing.assert_allclose(conv_probs, naive_probs, atol=1e-4)
    assert naive_probs.max() - naive_probs.min() > 0.5  # not a flat map that matches trivially
    naive, n_naive = sliding_window_detect(model, META, image, scales, 4, 0.3, 0.5, 100)
    fast, n_fast = conv_window_detect(conv, META, image, scales, 0.3, 0.5, 100)
    assert n_naive == n_fast == len(naive_boxes)
    assert len(naive) > 0
    np.testing.assert_allclose(fast.boxes, naive.boxes, atol=1e-2)  # voted by the scores
    np.testing.assert_array_equal(fast.classes, naive.classes)
    np.testing.assert_allclose(fast.scores, naive.scores, atol=1e-4)


def test_conv_detections_equal_naive_on_a_rendered_scene(trained):
    model, _ = trained
    image, _, _ = render_shapes(np.random.default_rng(11), size=160)
    naive_boxes, naive_probs = window_probabilities(model, META, image, SCALES, stride=4)
    conv_boxes, conv_probs = conv_window_probabilities(model, META, image, SCALES)
    np.testing.assert_array_equal(conv_boxes, naive_boxes)
    np.testing.assert_allclose(conv_probs, naive_probs, atol=1e-4)
    naive, _ = sliding_window_detect(model, META, image, SCALES, 4, 0.6, 0.5, 100)
    fast, _ = conv_window_detect(model, META, image, SCALES, 0.6, 0.5, 100)
    assert len(naive) > 0
    np.testing.assert_allclose(fast.boxes, naive.boxes, atol=1e-2)  # voted by the scores
    np.testing.assert_array_equal(fast.classes, naive.classes)
    np.testing.assert_allclose(fast.scores, naive.scores, atol=1e-4)


def test_costs_count_windows_and_shared_multiply_adds():
    model = random_classifier(2)
    image = np.zeros((96, 128, 3), np.uint8)
    _, evaluated = sliding_window_detect(model, META, image, SCALES, stride=4)
    windows, naive_macs = sliding_window_cost(model, META, (96, 128), SCALES, stride=4)
    assert windows == evaluated
    assert naive_macs == windows * LENET_MACS
    conv_windows, conv_macs = conv_window_cost(model, META, (96, 128), SCALES)
    assert conv_windows == windows
    assert conv_macs < naive_macs / 4
    # one window: nothing to share, so both cost exactly one classifier pass
    assert conv_window_cost(model, META, (CROP, CROP), (1.0,)) == (1, LENET_MACS)
    assert sliding_window_cost(model, META, (CROP, CROP), (1.0,), 8)[0] == 1


# --- training and the model file ---------------------------------------------------------------


def test_trained_classifier_beats_chance_on_held_out_crops(trained):
    model, held_out = trained
    crops, labels = sample_crops(held_out, CROP, 12, np.random.default_rng(3), SCALES)
    predicted = np.asarray(model(crops.astype(np.float32))).argmax(axis=1)
    recall = [np.mean(predicted[labels == k] == k) for k in np.unique(labels)]
    assert len(recall) == len(NAMES) + 1
    assert np.mean(recall) > 0.7  # balanced accuracy; chance is 0.25


def test_trained_detector_finds_held_out_objects(trained):
    model, held_out = trained
    from yolo_cli.data.image import read_image

    hits = total = 0
    for sample in held_out.samples:
        dets, _ = conv_window_detect(model, META, read_image(sample.image), SCALES)
        for box, cls in zip(sample.boxes, sample.classes):
            same = dets.boxes[dets.classes == cls]
            hits += bool(len(same)) and iou(box, same).max() >= 0.5
            total += 1
    assert hits / total > 0.5


def test_model_file_round_trips_as_window_kind(trained, tmp_path):
    model, _ = trained
    path = save_model(model, tmp_path / "window.keras", META)
    loaded, meta = load_model(path)
    assert (meta.kind, meta.names, meta.img_size) == ("window", NAMES, CROP)
    crops = np.random.default_rng(4).uniform(0, 255, (5, CROP, CROP, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(crops)), np.asarray(model(crops)), atol=1e-6)
    image = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    _, before = conv_window_probabilities(model, META, image, SCALES)
    _, after = conv_window_probabilities(loaded, meta, image, SCALES)
    np.testing.assert_allclose(after, before, atol=1e-6)
