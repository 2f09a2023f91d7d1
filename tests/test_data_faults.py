"""Bad dataset inputs, each built in a temporary folder: every reader skips or repairs the bad
sample, counts it, and reports one line naming the file; nothing crashes, nothing is silently
wrong (duplicate COCO ids, non-finite VOC numbers, decompression bombs, truncated images,
malformed label lines, unknown classes)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.config import DEFAULTS
from yolo_cli.data.image import OversizedImage, header_size, read_image
from yolo_cli.data.load import load_dataset
from yolo_cli.errors import YoloError

W, H = 64, 48


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (W, H)) -> Path:
    """A noise image of ``size`` (width, height), encoded by its suffix."""
    noise = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, noise)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def png_bomb(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A 700-byte PNG whose header says ``width × height`` 8-bit grey: a few rows of zeros
    compressed, the rest missing (a full bomb, 1.6 GB of zeros compressed, holds the same
    header and would take seconds to build)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * ((width + 1) * 16), 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def voc_xml(
    filename: str, objects: list[tuple[str, tuple]], size: tuple = (W, H), extra: str = ""
) -> str:
    """A VOC annotation; ``objects`` are ``(name, (xmin, ymin, xmax, ymax))`` written as given."""
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{extra}{body}</annotation>"
    )


def check(path: Path):
    return CliRunner().invoke(cli, ["data", "check", str(path)])


def problem_lines(report: str, kind: str) -> list[str]:
    return [line for line in report.splitlines() if f": {kind}: " in line]


# --- COCO: duplicate image ids -----------------------------------------------------------------


def coco_file(folder: Path, images: list[tuple], annotations: list[tuple]) -> Path:
    """``images``: ``(id, file_name)``; ``annotations``: ``(image_id, [x, y, w, h])``, class
    ``cat``. Images are written beside the JSON."""
    for i, (_, name) in enumerate(images):
        if not (folder / name).exists():
            write_image(folder / name, seed=i)
    data = {
        "images": [{"id": i, "file_name": n, "width": W, "height": H} for i, n in images],
        "annotations": [
            {"id": k, "image_id": i, "category_id": 1, "bbox": b, "iscrowd": 0}
            for k, (i, b) in enumerate(annotations, 1)
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    path = folder / "labels.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_id_shared_by_two_images_is_a_problem_and_neither_gets_its_boxes(tmp_path):
    path = coco_file(
        tmp_path,
        [(1, "a.jpg"), (1, "b.jpg"), (2, "c.jpg")],
        [(1, [1, 1, 10, 10]), (1, [20, 20, 10, 10]), (2, [5, 5, 20, 20])],
    )
    ds = load_dataset(path)
    assert [s.image.name for s in ds.samples] == ["c.jpg"]
    np.testing.assert_array_equal(ds.samples[0].boxes, [[5, 5, 25, 25]])
    assert ds.problems.counts() == {"duplicate-id": 1}
    result = check(path)
    assert result.exit_code == 0, result.output
    assert "problems: 1 problems: 1 duplicate-id" in result.stdout
    (line,) = problem_lines(result.stdout, "duplicate-id")
    assert str(path) in line and "image id 1 is shared by a.jpg, b.jpg" in line
    assert "its 2 annotations" in line


def test_coco_file_listed_under_two_ids_keeps_the_first(tmp_path):
    path = coco_file(
        tmp_path,
        [(7, "a.jpg"), (9, "a.jpg"), (3, "b.jpg"), (3, "b.jpg")],
        [(7, [1, 1, 10, 10]), (9, [30, 30, 10, 10]), (3, [2, 2, 4, 4])],
    )
    ds = load_dataset(path)
    boxes = {s.image.name: s.boxes.tolist() for s in ds.samples}
    assert boxes == {"a.jpg": [[1, 1, 11, 11]], "b.jpg": [[2, 2, 6, 6]]}
    messages = [m for _, kind, m in ds.problems.items if kind == "duplicate-id"]
    assert len(messages) == 2
    assert any("image id 3 lists b.jpg 2 times; one entry kept" in m for m in messages)
    assert any("a.jpg is listed again under image id 9 (first under 7)" in m for m in messages)


# --- VOC: sizes and coordinates that are not numbers -----------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-640", "1e40", "wide", "64.5"])
def test_voc_bad_stated_size_is_one_problem_and_the_image_size_wins(tmp_path, value):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg", [("cat", (2, 3, 30, 40))], size=(value, H)))
    ds = load_dataset(tmp_path)
    assert len(ds) == 1 and (ds.samples[0].width, ds.samples[0].height) == (W, H)
    np.testing.assert_array_equal(ds.samples[0].boxes, [[1, 2, 30, 40]])
    assert len(ds.problems) == 1
    (file, kind, message) = ds.problems.items[0]
    assert file == str(tmp_path / "a.xml") and kind == "malformed-label"
    assert value in message and "using the image's size" in message


def test_voc_zero_or_absent_size_means_unknown_not_a_problem(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "b.jpg")
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg", [("cat", (2, 3, 30, 40))], size=(0, 0)))
    (tmp_path / "b.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>2</xmin><ymin>3</ymin>"
        "<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"
    )
    ds = load_dataset(tmp_path)
    assert len(ds) == 2 and len(ds.problems) == 0


@pytest.mark.parametrize(
    ("corners", "kind"),
    [
        (("inf", 3, 30, 40), "malformed-label"),
        ((2, 3, "nan", 40), "malformed-label"),
        ((2, 3, 30, "-inf"), "malformed-label"),
        ((2, 3, "x", 40), "malformed-label"),
        ((2, 3, "1e400", 40), "malformed-label"),
        ((2, 3, "1e30", 40), "clipped-box"),
        ((-50, 3, 30, 40), "clipped-box"),
        ((-50, -40, -10, -5), "outside-box"),
        ((30, 3, 2, 40), "degenerate-box"),
    ],
)
def test_voc_bad_coordinates_are_one_problem_each(tmp_path, corners, kind):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg", [("cat", corners), ("cat", (2, 3, 30, 40))]))
    result = check(tmp_path)
    assert result.exit_code == 0, result.output
    lines = problem_lines(result.stdout, kind)
    assert len(lines) == 1 and str(tmp_path / "a.xml") in lines[0], result.stdout
    assert "problems: 1 problems" in result.stdout
    ds = load_dataset(tmp_path)
    assert len(ds) == 1 and np.isfinite(ds.samples[0].boxes).all()
    assert ds.num_objects() == (2 if kind == "clipped-box" else 1)


# --- decompression bombs and the pixel cap -----------------------------------------------------


def test_bomb_is_refused_from_its_header_before_decoding(tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 2000
    cap = DEFAULTS.max_pixels
    expected = (
        f"{bomb}: image is 40000×40000 = 1600000000 pixels, over the cap of {cap} "
        "(set YOLO_CLI_MAX_PIXELS to allow it)"
    )
    for read in (read_image, header_size):
        with pytest.raises(OversizedImage) as e:
            read(bomb)
        assert str(e.value) == expected and isinstance(e.value, YoloError)


def test_bomb_in_a_dataset_is_skipped_and_counted(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"good{i}.png", seed=i)
        (tmp_path / f"good{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    png_bomb(tmp_path / "bomb.png")
    (tmp_path / "bomb.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for verify in (False, True):
        ds = load_dataset(tmp_path, verify=verify)
        assert len(ds) == 3 and ds.problems.counts() == {"oversized-image": 1}
        (file, _, message) = ds.problems.items[0]
        assert file == str(tmp_path / "bomb.png") and "over the cap" in message
    result = check(tmp_path)
    assert result.exit_code == 0, result.output
    assert "images: 3 " in result.stdout
    assert len(problem_lines(result.stdout, "oversized-image")) == 1


def test_detect_skips_a_bomb_and_still_does_the_images_beside_it(tmp_path):
    bomb = png_bomb(tmp_path / "bomb.png")
    good = write_image(tmp_path / "good.jpg", size=(320, 240))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["detect", str(bomb), str(good), "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert f"{bomb}: image is 40000×40000 = 1600000000 pixels, over the cap" in result.stderr
    assert "Traceback" not in result.output
    assert [p.stem for p in out.rglob("*.jpg")] == ["good"]


def test_pixel_cap_follows_the_environment(tmp_path, monkeypatch):
    image = write_image(tmp_path / "a.png")
    monkeypatch.setenv("YOLO_CLI_MAX_PIXELS", str(W * H - 1))
    with pytest.raises(OversizedImage, match=f"over the cap of {W * H - 1}"):
        read_image(image)
    monkeypatch.setenv("YOLO_CLI_MAX_PIXELS", str(W * H))
    assert read_image(image).shape == (H, W, 3)
    monkeypatch.setenv("YOLO_CLI_MAX_PIXELS", "2_000_000_000")
    bomb = png_bomb(tmp_path / "bomb.png")
    assert header_size(bomb) == (40000, 40000)  # allowed: the header is all that is read
    monkeypatch.setenv("YOLO_CLI_MAX_PIXELS", "lots")
    with pytest.raises(YoloError, match="YOLO_CLI_MAX_PIXELS: expected a positive whole number"):
        read_image(image)


# --- truncated images, malformed lines, unknown classes in every reader ----------------------


def damaged_images(folder: Path) -> dict[str, Path]:
    """A good JPEG, one cut in half, one of garbage bytes, an empty one, a missing one."""
    good = write_image(folder / "good.jpg", seed=1, size=(400, 300))
    data = good.read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "junk.jpg").write_bytes(b"not an image at all" * 10)
    (folder / "empty.jpg").write_bytes(b"")
    return {n: folder / f"{n}.jpg" for n in ("good", "cut", "junk", "empty", "gone")}


def assert_damage_reported(ds, label_file: str) -> None:
    """The report of a dataset built on :func:`damaged_images` with bad labels on ``good``."""
    counts = ds.problems.counts()
    assert counts["corrupt-image"] == 3  # cut (decoded), junk, empty
    assert counts["missing-image"] == 1
    assert counts["unknown-class"] == 1
    assert counts["malformed-label"] >= 1
    by_kind: dict[str, set[str]] = {}
    for file, kind, _ in ds.problems.items:
        by_kind.setdefault(kind, set()).add(Path(file).name)
    assert by_kind["corrupt-image"] == {"cut.jpg", "junk.jpg", "empty.jpg"}
    assert by_kind["unknown-class"] == {label_file}
    assert [s.image.name for s in ds.samples] == ["good.jpg"]
    assert len(ds.samples[0].boxes) == 1


def test_voc_reader_skips_and_counts_damage(tmp_path):
    images = damaged_images(tmp_path / "images")
    (tmp_path / "annotations").mkdir()
    for name in images:
        objects = [("cat", (10, 10, 100, 100))]
        if name == "good":
            objects += [("dog", (5, 5, 50, 50)), ("cat", ("?", 1, 2, 3))]
        (tmp_path / "annotations" / f"{name}.xml").write_text(
            voc_xml(f"{name}.jpg", objects, size=(400, 300))
        )
    (tmp_path / "classes.txt").write_text("cat\n")
    assert_damage_reported(load_dataset(tmp_path, verify=True), "good.xml")


def test_coco_reader_skips_and_counts_damage(tmp_path):
    images = damaged_images(tmp_path)
    data = {
        "images": [
            {"id": i, "file_name": p.name, "width": 400, "height": 300}
            for i, p in enumerate(images.values())
        ],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 90, 90]},
            {"id": 2, "image_id": 0, "category_id": 5, "bbox": [5, 5, 45, 45]},
            {"id": 3, "image_id": 0, "category_id": 1, "bbox": [1, "x", 2, 3]},
            {"id": 4, "image_id": 42, "category_id": 1, "bbox": [1, 1, 2, 3]},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    ds = load_dataset(tmp_path / "instances.json", verify=True)
    assert_damage_reported(ds, "instances.json")
    assert ds.problems.counts()["malformed-label"] == 2  # a bad bbox, an unknown image_id


def test_yolo_reader_skips_and_counts_damage(tmp_path):
    images = damaged_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    for name in images:
        lines = "0 0.5 0.5 0.2 0.2\n"
        if name == "good":
            lines += "3 0.5 0.5 0.1 0.1\n0 0.5 nan\n0.5 0.5 0.5 0.1 0.1\nzero 1 2 3 4\n"
        (tmp_path / "labels" / f"{name}.txt").write_text(lines)
    (tmp_path / "classes.txt").write_text("cat\n")
    ds = load_dataset(tmp_path, verify=True)
    counts = ds.problems.counts()
    assert counts["corrupt-image"] == 3 and counts["unknown-class"] == 1
    assert counts["malformed-label"] == 3 and counts["missing-image"] == 1
    files = {kind: Path(f).name for f, kind, _ in ds.problems.items if kind != "corrupt-image"}
    assert files == {
        "unknown-class": "good.txt",
        "malformed-label": "good.txt",
        "missing-image": "gone.txt",
    }
    assert [s.image.name for s in ds.samples] == ["good.jpg"]


def test_check_prints_one_line_per_problem_naming_its_file(tmp_path):
    images = damaged_images(tmp_path / "images")
    (tmp_path / "labels").mkdir()
    for name in images:
        (tmp_path / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    result = check(tmp_path)
    assert result.exit_code == 0, result.output
    report = result.stdout.split("problems: ", 1)[1].splitlines()
    listed = report[1:]
    assert len(listed) == 4  # three corrupt images, one stray label file
    for name in ("cut.jpg", "junk.jpg", "empty.jpg", "gone.txt"):
        assert sum(name in line for line in listed) == 1, listed
