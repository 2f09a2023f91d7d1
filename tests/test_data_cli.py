"""`yolo data check` and `yolo data convert` through click's CliRunner (and one real process)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from click.testing import CliRunner
from shared_data import BCCD, RACCOON, needs_bccd, needs_raccoon

from yolo_cli.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["data", *map(str, args)])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@needs_bccd
def test_check_bccd_reports_counts_sizes_and_both_zero_area_boxes():
    result = run("check", BCCD)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "(voc)" in out and "split: all" in out
    assert "images: 364" in out and "classes: 3" in out
    for name in ("RBC", "WBC", "Platelets"):
        assert name in out
    assert "box width px: min" in out and "box sqrt(area) px:" in out
    assert "problems: 2 problems: 2 degenerate-box" in out
    problem_lines = [line for line in out.splitlines() if "degenerate-box:" in line]
    assert len(problem_lines) == 2
    assert "BloodImage_00338.xml" in problem_lines[0] and "BloodImage_00343.xml" in problem_lines[1]


@needs_bccd
def test_check_one_split():
    result = run("check", BCCD, "--split", "val")
    assert result.exit_code == 0, result.output
    assert "split: val" in result.stdout and "images: 87" in result.stdout


@needs_raccoon
def test_check_raccoon_csv_split():
    result = run("check", RACCOON, "--split", "test")
    assert result.exit_code == 0, result.output
    assert "split: test" in result.stdout and "images: 40 " in result.stdout
    assert "raccoon" in result.stdout


@needs_raccoon
def test_convert_raccoon_to_yolo_keeps_its_split(tmp_path):
    result = run("convert", RACCOON, tmp_path / "r", "--to", "yolo")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote 200 images (144 train, 16 val, 40 test)")
    test = {p.name for p in (tmp_path / "r" / "images" / "test").iterdir()}
    with (RACCOON / "data" / "test_labels.csv").open() as f:
        assert test == {line.split(",")[0] for line in f.readlines()[1:]}


def test_check_missing_path_is_one_line_and_status_2(tmp_path):
    line = one_error_line(run("check", tmp_path / "missing"))
    assert str(tmp_path / "missing") in line and "no such file" in line


def test_check_empty_folder_is_one_line_and_status_2(tmp_path):
    line = one_error_line(run("check", tmp_path))
    assert str(tmp_path) in line and "empty folder" in line


def test_check_unknown_split_is_one_line(tmp_path):
    (tmp_path / "a.xml").write_text("<annotation/>")
    (tmp_path / "a.jpg").write_bytes(b"")
    assert "unknown split" in one_error_line(run("check", tmp_path, "--split", "dev"))


def test_check_with_only_unreadable_images_prints_the_report_and_exits_2(tmp_path):
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "a.jpg").write_bytes(b"")
    result = run("check", tmp_path)
    assert result.exit_code == 2
    assert "images: 0" in result.stdout
    assert "a.jpg: corrupt-image" in result.stdout
    assert result.stderr.strip() == f"error: {tmp_path}: no usable images"


def test_check_decodes_images_the_header_check_would_pass(tmp_path):
    """A JPEG cut in half (an interrupted download) has a sound header: loading keeps it,
    `check`, which decodes every image, reports it."""
    import cv2
    import numpy as np

    from yolo_cli.data.load import load_dataset

    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", noise)
    assert ok
    for name, data in (("good", jpeg.tobytes()), ("cut", jpeg.tobytes()[: len(jpeg) // 2])):
        (tmp_path / f"{name}.jpg").write_bytes(data)
        (tmp_path / f"{name}.xml").write_text(
            "<annotation><size><width>400</width><height>300</height></size></annotation>"
        )
    assert len(load_dataset(tmp_path)) == 2
    result = run("check", tmp_path)
    assert result.exit_code == 0, result.output
    assert "images: 1 " in result.stdout
    assert "cut.jpg: corrupt-image" in result.stdout


@needs_bccd
def test_convert_then_check_the_result(tmp_path):
    out = tmp_path / "bccd-yolo"
    result = run("convert", BCCD, out, "--to", "yolo", "--split", "test")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote 72 images (72 test)")
    assert (out / "data.yaml").is_file() and len(list((out / "labels" / "test").iterdir())) == 72
    checked = run("check", out)
    assert checked.exit_code == 0, checked.output
    assert "(yolo)" in checked.stdout and "images: 72" in checked.stdout
    assert "problems: no problems" in checked.stdout


@needs_bccd
def test_convert_refusals_are_one_line(tmp_path):
    src = tmp_path / "src"  # a tmp copy, so a failing guard cannot write into shared data
    for folder, ext in (("Annotations", "xml"), ("JPEGImages", "jpg")):
        (src / folder).mkdir(parents=True)
        shutil.copy(BCCD / "BCCD" / folder / f"BloodImage_00000.{ext}", src / folder)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert "not an empty folder" in one_error_line(
        run("convert", src, tmp_path / "full", "--to", "coco")
    )
    assert "inside the source" in one_error_line(run("convert", src, src / "out", "--to", "coco"))
    refused = run("convert", src, tmp_path / "o", "--to", "tfrecord")
    assert (
        refused.exit_code == 2
        and "'tfrecord' is not one of 'voc', 'coco', 'yolo'" in refused.output
    )
    assert sorted(p.name for p in src.iterdir()) == ["Annotations", "JPEGImages"]


def test_convert_missing_source_is_one_line(tmp_path):
    line = one_error_line(run("convert", tmp_path / "nope", tmp_path / "out", "--to", "voc"))
    assert "no such file" in line
    assert not (tmp_path / "out").exists()


def test_real_process_exit_status_and_single_line(tmp_path):
    yolo = shutil.which("yolo", path=str(sys.executable).rsplit("/", 1)[0])
    assert yolo is not None
    done = subprocess.run(
        [yolo, "data", "check", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "no such file" in done.stderr
