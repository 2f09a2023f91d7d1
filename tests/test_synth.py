"""Synthetic street scenes: determinism, tight boxes, occlusion, the written dataset, the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from yolo_cli.boxes import convert, denormalize
from yolo_cli.cli import cli
from yolo_cli.config import DEFAULTS, PACKAGE_ROOT, SPLITS
from yolo_cli.data.image import read_image
from yolo_cli.data.scenes import MIN_VISIBLE, render_scene, scene_rng
from yolo_cli.data.synth import assign_split, default_synthetic, split_sizes, write_synthetic
from yolo_cli.data.yolo_txt import parse_labels

SIZE = DEFAULTS.img_size
SAMPLES = PACKAGE_ROOT / "data" / "samples"


@pytest.fixture(scope="module")
def scenes():
    """50 scenes of seed 0 with their debug layers: ``(image, boxes, classes, SceneDebug)``."""
    return [render_scene(scene_rng(0, i), debug=True) for i in range(50)]


def read_labels(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO txt label file → ``boxes (N, 4)`` xyxy pixels, ``classes (N,)``."""
    rows, bad = parse_labels(path)
    assert not bad
    rows = np.array(rows, np.float32).reshape(-1, 5)
    boxes = denormalize(convert(rows[:, 1:], "cxcywh", "xyxy"), size, size)
    return boxes, rows[:, 0].astype(int)


def dataset_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "data.yaml"
    }


def test_same_generator_same_scene_other_seed_other_scene():
    a = render_scene(scene_rng(7, 3))
    b = render_scene(scene_rng(7, 3))
    c = render_scene(scene_rng(8, 3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape == (SIZE, SIZE, 3) and a[0].dtype == np.uint8
    assert a[1].dtype == np.float32 and a[2].dtype == np.int32
    assert not np.array_equal(a[0], c[0])


def test_boxes_lie_inside_the_image_and_are_not_degenerate(scenes):
    for _, boxes, classes, _ in scenes:
        assert boxes.shape == (len(classes), 4)
        assert np.all(boxes >= 0) and np.all(boxes <= SIZE)
        assert np.all(boxes[:, 2:] - boxes[:, :2] >= 3)


def test_each_box_is_the_bounding_box_of_its_objects_mask(scenes):
    checked = 0
    for _, boxes, _, debug in scenes:
        for box, mask in zip(boxes, debug.masks):
            ys, xs = np.nonzero(mask)
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            np.testing.assert_allclose(box, expected, atol=1)
            checked += 1
    assert checked > 100


def test_every_object_stays_at_least_half_visible(scenes):
    for _, _, classes, debug in scenes:
        covered = np.zeros((SIZE, SIZE), bool)  # by objects drawn later
        for k in reversed(range(len(classes))):
            visible = debug.masks[k] & ~covered
            assert visible.sum() >= MIN_VISIBLE * debug.areas[k]
            assert debug.masks[k].sum() <= debug.areas[k]
            covered |= debug.masks[k]


def test_occlusion_happens(scenes):
    overlaps = sum(
        np.any(debug.masks[i] & debug.masks[j])
        for _, _, classes, debug in scenes
        for i in range(len(classes))
        for j in range(i + 1, len(classes))
    )
    assert overlaps > 0


def test_masks_are_the_drawn_pixels(scenes):
    """What changed from the background lies on the masks, give or take the 1 px AA fringe."""
    kernel = np.ones((3, 3), np.uint8)
    for _, _, classes, debug in scenes:
        changed = np.any(debug.clean != debug.background, axis=-1)
        on_objects = debug.masks.any(axis=0)
        near_objects = cv2.dilate(on_objects.astype(np.uint8), kernel).astype(bool)
        # a faint anti-aliased fringe may reach 2 px; what is clearly drawn is within 1 px
        strong = np.abs(debug.clean.astype(int) - debug.background).max(axis=-1) > 16
        assert not np.any(strong & ~near_objects)
        assert np.count_nonzero(changed & ~near_objects) <= 0.001 * SIZE * SIZE
        if len(classes):
            assert np.count_nonzero(changed & on_objects) >= 0.97 * np.count_nonzero(on_objects)
        else:
            assert not changed.any()


def test_all_classes_appear_and_some_scenes_are_empty(scenes):
    counts = np.bincount(np.concatenate([s[2] for s in scenes]), minlength=3)
    assert np.all(counts > 0), counts
    sizes = [len(s[2]) for s in scenes]
    assert 0 in sizes and max(sizes) <= 8


def test_object_heights_span_small_to_half_the_image():
    boxes = np.concatenate([render_scene(scene_rng(1, i))[1] for i in range(80)])
    heights = boxes[:, 3] - boxes[:, 1]
    assert heights.min() < 24 and heights.max() > SIZE / 3
    assert heights.max() <= SIZE / 2 + 2


def test_class_shapes_have_their_aspect(scenes):
    """Pedestrians are tall, cars wide, motorcycles in between (whole, unclipped objects)."""
    aspects = {0: [], 1: [], 2: []}
    for _, boxes, classes, _ in scenes:
        for (x1, y1, x2, y2), c in zip(boxes, classes):
            if x1 > 0 and y1 > 0 and x2 < SIZE and y2 < SIZE:
                aspects[int(c)].append((x2 - x1) / (y2 - y1))
    ped, car, moto = (np.median(aspects[k]) for k in range(3))
    assert ped < 0.6 < moto < 1.7 < car


def test_names_choose_the_classes():
    classes = np.concatenate([render_scene(scene_rng(2, i), names=("car",))[2] for i in range(10)])
    assert len(classes) and np.all(classes == 0)
    with pytest.raises(ValueError, match="bicycle"):
        render_scene(scene_rng(2, 0), names=("car", "bicycle"))


def test_split_fractions_are_kept_on_any_prefix():
    splits = [assign_split(0, i) for i in range(1000)]
    counts = {s: splits.count(s) for s in SPLITS}
    assert counts == pytest.approx({"train": 800, "val": 100, "test": 100}, abs=10)
    assert all({assign_split(seed, i) for i in range(20)} == set(SPLITS) for seed in range(50))
    assert [assign_split(0, i) for i in range(20)] != [assign_split(1, i) for i in range(20)]
    assert {assign_split(0, i, (0.9, 0.1, 0.0)) for i in range(200)} == {"train", "val"}


def test_written_dataset_is_byte_identical_and_independent_of_n(tmp_path):
    a = write_synthetic(tmp_path / "a", 12, seed=5, size=160)
    b = write_synthetic(tmp_path / "b", 12, seed=5, size=160)
    short = write_synthetic(tmp_path / "short", 5, seed=5, size=160)
    other = write_synthetic(tmp_path / "other", 12, seed=6, size=160)
    files_a = dataset_files(a)
    assert len(files_a) == 24
    assert files_a == dataset_files(b)
    assert dataset_files(short).items() <= files_a.items()
    assert dataset_files(other) != files_a


def test_written_labels_parse_back_to_the_rendered_boxes(tmp_path):
    out = write_synthetic(tmp_path / "ds", 20, seed=3)
    meta = yaml.safe_load((out / "data.yaml").read_text())
    assert meta["names"] == dict(enumerate(DEFAULTS.synth_classes))
    assert all(meta[s] == f"images/{s}" for s in SPLITS)
    for i in range(20):
        split = assign_split(3, i)
        image_path = out / "images" / split / f"synth_{i:05d}.jpg"
        label_path = out / "labels" / split / f"synth_{i:05d}.txt"
        image, boxes, classes = render_scene(scene_rng(3, i))
        read_boxes, read_classes = read_labels(label_path, SIZE)
        np.testing.assert_allclose(read_boxes, boxes, atol=0.5)
        np.testing.assert_array_equal(read_classes, classes)
        decoded = read_image(image_path)
        assert np.abs(decoded.astype(int) - image).mean() < 4  # JPEG quality 92


def test_bad_fractions_are_a_user_error(tmp_path):
    from yolo_cli.errors import YoloError

    with pytest.raises(YoloError, match="fractions"):
        write_synthetic(tmp_path / "x", 4, fractions=(0.5, 0.2, 0.2))


def test_default_synthetic_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CLI_CACHE", str(tmp_path))
    root = default_synthetic(n=6, seed=4, size=96)
    assert root.parent == tmp_path and root.name.endswith("-n6-s4-96")
    meta = yaml.safe_load((root / "data.yaml").read_text())
    assert Path(meta["path"]) == root.resolve()
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no partial folder left behind
    stamp = (root / "data.yaml").stat().st_mtime_ns
    assert default_synthetic(n=6, seed=4, size=96) == root
    assert (root / "data.yaml").stat().st_mtime_ns == stamp
    assert dataset_files(root) == dataset_files(write_synthetic(tmp_path / "again", 6, 4, 96))


def test_failed_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    from yolo_cli.errors import YoloError

    monkeypatch.setenv("YOLO_CLI_CACHE", str(tmp_path))
    with pytest.raises(YoloError):
        default_synthetic(n=0)
    assert list(tmp_path.iterdir()) == []


def test_cli_synth_writes_a_dataset_and_reports_it(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(cli, ["data", "synth", str(out), "--n", "10", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "data.yaml").is_file()
    images = sorted(p.name for p in out.glob("images/*/*.jpg"))
    assert images == [f"synth_{i:05d}.jpg" for i in range(10)]
    for split in SPLITS:
        n = len(list((out / "images" / split).glob("*.jpg")))
        assert f"{split}: {n} images" in result.output
    objects = sum(len(render_scene(scene_rng(2, i))[2]) for i in range(10))
    assert f"{objects} objects" in result.output
    assert all(name in result.output for name in DEFAULTS.synth_classes)


def test_cli_synth_lists_only_the_splits_that_got_images(tmp_path):
    sizes = split_sizes(10, 100)
    assert sizes == {"train": 9, "test": 1}  # ten scenes can miss a 10 % split
    out = tmp_path / "small"
    result = CliRunner().invoke(cli, ["data", "synth", str(out), "--n", "10", "--seed", "100"])
    assert result.exit_code == 0, result.output
    meta = yaml.safe_load((out / "data.yaml").read_text())
    assert "val" not in meta and "val:" not in result.output
    assert "train: 9 images" in result.output and "test: 1 images" in result.output


def test_cli_synth_rejects_bad_fractions(tmp_path):
    result = CliRunner().invoke(
        cli, ["data", "synth", str(tmp_path / "x"), "--n", "3", "--fractions", "0.5,0.5"]
    )
    assert result.exit_code == 2
    assert "fractions" in result.output


def test_committed_samples_follow_the_recipe():
    """data/samples/street_k.jpg are the scenes data/README.md says they are: a drawing change
    that forgets to regenerate them (and bump RECIPE_VERSION) fails here."""
    recipe = (PACKAGE_ROOT / "data" / "README.md").read_text()
    made_from = {
        sample: index
        for index, sample in re.findall(r"synth_(\d{5})\.jpg \S*(street_\d\.jpg)", recipe)
    }
    seed = int(re.search(r"yolo data synth \S+ --n \d+ --seed (\d+)", recipe).group(1))
    assert sorted(made_from) == [f"street_{k}.jpg" for k in range(4)]
    for name, index in made_from.items():
        path = SAMPLES / name
        assert path.stat().st_size <= 60_000
        image, _, classes = render_scene(scene_rng(seed, int(index)))
        assert set(classes.tolist()) == {0, 1, 2}
        assert np.abs(read_image(path).astype(int) - image).mean() < 4
