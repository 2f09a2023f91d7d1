"""Detection files: write them as ``yolo detect`` does, read them back as ``yolo eval`` does."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from shared_data import BCCD, needs_bccd

from yolo_cli.data.dataset import Dataset, Sample
from yolo_cli.data.load import load_dataset
from yolo_cli.errors import YoloError
from yolo_cli.metrics import evaluate
from yolo_cli.postprocess import Detections
from yolo_cli.predictions import read_predictions, to_coco_results, to_json_record, write_yolo_txt

NAMES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def bccd():
    """BCCD's test split; the tests that take it are marked ``needs_bccd``."""
    return load_dataset(BCCD / "BCCD", split="test")


def random_detections(dataset: Dataset, seed: int = 0) -> list[Detections]:
    """Up to 8 boxes per image inside the image, scores in (0, 1), sorted by score."""
    rng = np.random.default_rng(seed)
    out = []
    for s in dataset.samples:
        n = rng.integers(0, 9)
        corner = rng.uniform(0, [s.width / 2, s.height / 2], (n, 2))
        size = rng.uniform(5, [s.width / 2, s.height / 2], (n, 2))
        scores = rng.uniform(0.01, 1, n).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        boxes = np.concatenate([corner, corner + size], 1).astype(np.float32)
        classes = rng.integers(0, len(dataset.names), n).astype(np.int32)
        out.append(Detections(boxes[order], scores[order], classes[order]))
    return out


def assert_same(read: list[Detections], written: list[Detections], px: float = 1e-3):
    assert len(read) == len(written)
    for r, w in zip(read, written, strict=True):
        np.testing.assert_array_equal(r.classes, w.classes)
        np.testing.assert_allclose(r.boxes, w.boxes, atol=px)
        np.testing.assert_allclose(r.scores, w.scores, atol=1e-6)


def small_dataset() -> Dataset:
    def sample(name, w, h):
        return Sample(
            Path("/data/images") / name, np.zeros((0, 4), np.float32), np.zeros(0, np.int32), w, h
        )

    return Dataset(
        NAMES, [sample("a.jpg", 640, 480), sample("b.png", 320, 200)], "yolo", Path("/data")
    )


def write_json(path: Path, content) -> Path:
    path.write_text(json.dumps(content))
    return path


# --- round trips ----------------------------------------------------------------------------


@needs_bccd
def test_yolo_txt_with_confidence_round_trip(bccd, tmp_path):
    detections = random_detections(bccd)
    for s, d in zip(bccd.samples, detections, strict=True):
        write_yolo_txt(
            tmp_path / "labels" / f"{s.image.stem}.txt", d, s.width, s.height, save_conf=True
        )
    read, problems = read_predictions(tmp_path / "labels", bccd)
    assert len(problems) == 0
    # six decimals of a 640-pixel-wide image: within 0.001 pixel
    assert_same(read, detections)


@needs_bccd
def test_coco_results_round_trip_and_pycocotools_reads_them(bccd, tmp_path):
    detections = random_detections(bccd, seed=1)
    files = [s.image for s in bccd.samples]
    results = to_coco_results(files, detections, bccd.names)
    read, problems = read_predictions(write_json(tmp_path / "results.json", results), bccd)
    assert len(problems) == 0
    assert_same(read, detections)

    truth = COCO()
    truth.dataset = {
        "images": [{"id": i} for i in range(len(files))],
        "annotations": [],
        "categories": [{"id": k, "name": n} for k, n in enumerate(bccd.names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        loaded = truth.loadRes(json.loads((tmp_path / "results.json").read_text()))
    assert len(loaded.anns) == sum(len(d) for d in detections)


@needs_bccd
def test_detect_records_round_trip_as_json_lines_and_as_a_list(bccd, tmp_path):
    detections = random_detections(bccd, seed=2)
    records = [
        to_json_record(s.image, s.width, s.height, d, bccd.names)
        for s, d in zip(bccd.samples, detections, strict=True)
    ]
    assert set(records[0]) == {"file", "width", "height", "detections"}
    lines = tmp_path / "detect.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))  # as `yolo detect` prints
    listed = write_json(tmp_path / "records.json", records)
    for path in (lines, listed):
        read, problems = read_predictions(path, bccd)
        assert len(problems) == 0
        assert_same(read, detections)


@needs_bccd
def test_evaluating_read_back_predictions_gives_the_same_map(bccd, tmp_path):
    detections = [
        Detections(
            s.boxes + 2.0, np.linspace(0.9, 0.1, len(s.classes), dtype=np.float32), s.classes
        )
        for s in bccd.samples
    ]
    truth = [(s.boxes, s.classes) for s in bccd.samples]
    path = write_json(
        tmp_path / "r.json",
        to_coco_results([s.image for s in bccd.samples], detections, bccd.names),
    )
    read, _ = read_predictions(path, bccd)
    n = len(bccd.names)
    assert evaluate(truth, read, n).map == pytest.approx(
        evaluate(truth, detections, n).map, abs=1e-6
    )


def test_yolo_txt_without_confidence(tmp_path):
    dets = Detections(
        np.array([[64, 48, 128, 96]], np.float32),
        np.array([0.5], np.float32),
        np.array([1], np.int32),
    )
    path = tmp_path / "out" / "a.txt"
    write_yolo_txt(path, dets, 640, 480, save_conf=False)
    assert path.read_text() == "1 0.150000 0.150000 0.100000 0.100000\n"
    write_yolo_txt(tmp_path / "out" / "b.txt", Detections.empty(), 320, 200, save_conf=True)
    assert (tmp_path / "out" / "b.txt").read_text() == ""
    # without the confidence column a file can't be scored: each line is a counted problem
    read, problems = read_predictions(tmp_path / "out", small_dataset())
    assert [len(d) for d in read] == [0, 0]
    assert problems.counts() == {"malformed-prediction": 1}


# --- how images and classes are found ---------------------------------------------------------


def coco_entry(**fields):
    return {"bbox": [10, 20, 30, 40], "score": 0.5} | fields


def test_category_ids_zero_based(tmp_path):
    entries = [coco_entry(image_id=0, category_id=0), coco_entry(image_id=1, category_id=2)]
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), small_dataset())
    assert read[0].classes.tolist() == [0] and read[1].classes.tolist() == [2]
    assert len(problems) == 0


def test_category_ids_one_based_when_all_lie_in_1_to_c_without_0(tmp_path):
    entries = [coco_entry(image_id=0, category_id=1), coco_entry(image_id=0, category_id=3)]
    read, _ = read_predictions(write_json(tmp_path / "r.json", entries), small_dataset())
    assert sorted(read[0].classes.tolist()) == [0, 2]


def test_category_ids_through_the_files_categories(tmp_path):
    content = {
        "annotations": [
            coco_entry(image_id=0, category_id=17),
            coco_entry(image_id=0, category_id=3),
        ],
        "categories": [
            {"id": 17, "name": "bird"},
            {"id": 3, "name": "cat"},
            {"id": 5, "name": "fish"},
        ],
    }
    read, problems = read_predictions(write_json(tmp_path / "r.json", content), small_dataset())
    assert sorted(read[0].classes.tolist()) == [0, 2]
    assert len(problems) == 0


def test_category_names_win_over_ids(tmp_path):
    # a 0-based file that never uses class 0 would read as 1-based; the name settles it
    entries = [
        coco_entry(image_id=0, category_id=1, category="dog"),
        coco_entry(image_id=0, category_id="bird"),
    ]
    read, _ = read_predictions(write_json(tmp_path / "r.json", entries), small_dataset())
    assert sorted(read[0].classes.tolist()) == [1, 2]


def test_images_by_file_name_stem_or_position(tmp_path):
    entries = [
        coco_entry(file_name="b.png", category_id=0, score=0.1),
        coco_entry(image_id="b", category_id=0, score=0.9),  # a stem
        coco_entry(file_name="/elsewhere/a.jpg", category_id=0),
        coco_entry(image_id=1, category_id=0, score=0.5),
    ]
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), small_dataset())
    assert len(read[0]) == 1
    # sorted by descending score; bbox xywh [10, 20, 30, 40] → xyxy [10, 20, 40, 60]
    np.testing.assert_allclose(read[1].scores, [0.9, 0.5, 0.1])
    np.testing.assert_allclose(read[1].boxes[0], [10, 20, 40, 60])
    assert len(problems) == 0


# --- problems and errors ----------------------------------------------------------------------


def test_bad_entries_are_counted_and_skipped(tmp_path):
    entries = [
        coco_entry(image_id=0, category_id=0),  # good
        coco_entry(image_id=7, category_id=0),  # no 8th image
        coco_entry(file_name="zebra.jpg", category_id=0),
        coco_entry(image_id=0, category_id=9),  # no such class
        coco_entry(image_id=0, category="horse"),
        {"image_id": 0, "category_id": 0, "bbox": [1, 2, 3]},
        {"image_id": 0, "category_id": 0, "bbox": [1, 2, 3, 4]},  # no score
        coco_entry(image_id=0, category_id=0, score="high"),
        "not an object",
        {
            "file": "a.jpg",
            "detections": [
                {"xyxy": [0, 0, 5, 5], "score": 0.3, "class": "cat"},
                {"xyxy": [0, 0], "score": 1},
            ],
        },
    ]
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), small_dataset())
    assert len(read[0]) == 2 and len(read[1]) == 0
    assert problems.counts() == {"unknown-image": 2, "unknown-class": 2, "malformed-prediction": 5}
    assert all(file.startswith(str(tmp_path / "r.json")) for file, _, _ in problems.items)


def test_bad_yolo_txt_lines_are_counted_and_skipped(tmp_path):
    (tmp_path / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2 0.9\n"
        "\n"
        "1 0.5 0.5 0.2 0.2\n"  # no confidence
        "7 0.5 0.5 0.2 0.2 0.8\n"  # no class 7
        "x 0.5 0.5 0.2 0.2 0.8\n"
        "1.5 0.5 0.5 0.2 0.2 0.8\n"
        "2 0.5 nan 0.2 0.2 0.8\n"
    )
    (tmp_path / "zebra.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n")
    read, problems = read_predictions(tmp_path, small_dataset())
    np.testing.assert_allclose(read[0].boxes, [[256, 192, 384, 288]])
    assert problems.counts() == {"malformed-prediction": 4, "unknown-class": 1, "unknown-image": 1}
    assert (str(tmp_path / "a.txt") + ":3", "malformed-prediction") in {
        (f, k) for f, k, _ in problems.items
    }


def test_json_lines_with_a_broken_line(tmp_path):
    record = {
        "file": "a.jpg",
        "width": 640,
        "height": 480,
        "detections": [{"xyxy": [0, 0, 5, 5], "score": 0.3, "class": "cat"}],
    }
    path = tmp_path / "detect.jsonl"
    path.write_text(json.dumps(record) + "\n{broken\n" + json.dumps(record) + "\n")
    read, problems = read_predictions(path, small_dataset())
    assert len(read[0]) == 2
    assert problems.counts() == {"malformed-prediction": 1}


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"bbox": [1, 2, 3, 4], "score": 0.5,', "not valid JSON"),
        ('[\n {"bbox": [1, 2, 3, 4]},\n 5,\n', "not valid JSON"),
        ("42", "expected a list"),
        ('{"images": []}', "expected a list"),
    ],
)
def test_unreadable_json_is_an_error(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(YoloError, match=message) as error:
        read_predictions(path, small_dataset())
    assert str(path) in str(error.value)


def test_missing_or_undecodable_files_are_errors(tmp_path):
    with pytest.raises(YoloError, match="no such file"):
        read_predictions(tmp_path / "nothing.json", small_dataset())
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(YoloError, match="cannot read"):
        read_predictions(tmp_path, small_dataset())


# --- image ids, category ids, predictions that make no sense -----------------------------------


def dataset_with_ids(ids, stems=("a", "b", "c"), category_ids=None) -> Dataset:
    samples = [
        Sample(
            Path("/data") / f"{stem}.jpg",
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int32),
            100,
            80,
            image_id,
        )
        for stem, image_id in zip(stems, ids, strict=True)
    ]
    return Dataset(NAMES, samples, "coco", Path("/data"), category_ids=category_ids)


def test_integer_image_ids_are_the_dataset_s_own_ids_not_positions(tmp_path):
    dataset = dataset_with_ids([42, 7, 1])
    entries = [
        coco_entry(image_id=7, category_id=0, score=0.9),
        coco_entry(image_id="42", category_id=0, score=0.8),  # the same id spelled as text
        coco_entry(image_id=1.0, category_id=0, score=0.7),
        coco_entry(image_id=0, category_id=0),  # a position, not an id here
        coco_entry(image_id=1, file_name="a.jpg", category_id=0, score=0.6),  # the name wins
    ]
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), dataset)
    assert [[round(float(s), 3) for s in d.scores] for d in read] == [[0.8, 0.6], [0.9], [0.7]]
    assert problems.counts() == {"unknown-image": 1}


def test_integer_image_ids_are_numeric_stems_where_every_stem_is_a_number(tmp_path):
    dataset = dataset_with_ids([None] * 3, stems=("000017", "000003", "000100"))
    entries = [coco_entry(image_id=3, category_id=0), coco_entry(image_id=100, category_id=0)]
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), dataset)
    assert [len(d) for d in read] == [0, 1, 1] and len(problems) == 0


def test_category_ids_are_the_dataset_s_own_where_it_has_them(tmp_path):
    # COCO's ids have gaps (1..90 for 80 classes): not 0- or 1-based positions
    dataset = dataset_with_ids([1, 2, 3], category_ids={17: 0, 88: 2})
    entries = [coco_entry(image_id=1, category_id=88), coco_entry(image_id=2, category_id=17)]
    entries.append(coco_entry(image_id=3, category_id=2))
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), dataset)
    assert [d.classes.tolist() for d in read] == [[2], [0], []]
    assert problems.counts() == {"unknown-class": 1}


def test_predictions_that_make_no_sense_are_counted_and_skipped(tmp_path):
    """small_dataset()'s a.jpg is 640 × 480."""
    entries = [
        coco_entry(image_id=0, category_id=0, bbox=[-5, 470, 30, 40]),  # a little outside: kept
        coco_entry(image_id=0, category_id=0, bbox=[10, 20, 0, 0]),  # empty, harmless: kept
        coco_entry(image_id=0, category_id=0, bbox=[100, 20, -30, 40]),
        coco_entry(image_id=0, category_id=0, bbox=[100, 20, 30, -4]),
        coco_entry(image_id=0, category_id=0, score=1.5),
        coco_entry(image_id=0, category_id=0, score=-0.1),
        coco_entry(image_id=0, category_id=0, bbox=[1e9, 20, 30, 40]),
        coco_entry(image_id=0, category_id=0, bbox=[10, -600, 30, 40]),
        coco_entry(image_id=0, category_id=0, bbox=[10, 20, 1e30, 40]),
        coco_entry(image_id=0, category_id=0, bbox=[10, 20, "inf", 40]),
        {"file": "a.jpg", "detections": [{"xyxy": [50, 0, 40, 10], "score": 0.5, "class": 0}]},
    ]
    read, problems = read_predictions(write_json(tmp_path / "r.json", entries), small_dataset())
    assert len(read[0]) == 2
    assert problems.counts() == {"malformed-prediction": 9}
    messages = " | ".join(m for _, _, m in problems.items)
    assert "outside [0, 1]" in messages and "negative width or height" in messages
    assert "far outside the 640x480 image" in messages

    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2 0.9\n0 0.5 0.5 -0.2 0.2 0.9\n0 0.5 0.5 0.2 0.2 2\n0 9 0.5 0.2 0.2 0.9\n"
    )
    read, problems = read_predictions(tmp_path / "txt", small_dataset())
    assert len(read[0]) == 1 and problems.counts() == {"malformed-prediction": 3}


def test_coco_results_carry_the_dataset_s_image_ids_when_given():
    dets = [
        Detections(
            np.array([[1, 2, 3, 4]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int32)
        )
    ]
    (result,) = to_coco_results(["x.jpg"], dets, NAMES, image_ids=[4000])
    assert result["image_id"] == 4000 and result["file_name"] == "x.jpg"
