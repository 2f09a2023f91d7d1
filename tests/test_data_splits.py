"""Splits: CSV split lists (raccoon's layout) with val carved from train, ``--split all``
everywhere a split is taken, datasets without splits of their own scored whole by ``yolo eval``,
and the one-line notice when the default synthetic dataset is generated."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.config import SPLITS
from yolo_cli.data.coco import instances
from yolo_cli.data.load import load_dataset
from yolo_cli.data.records import carve_val
from yolo_cli.data.synth import default_synthetic, write_synthetic
from yolo_cli.errors import YoloError


def names_of(dataset) -> list[str]:
    return [s.image.name for s in dataset.samples]


# --- CSV split lists --------------------------------------------------------------------------


def flat_voc_with_csv_splits(root: Path, n: int = 20, n_test: int = 5) -> tuple[list, list]:
    """Raccoon's layout: ``images/``, ``annotations/`` (VOC XML), ``data/train_labels.csv`` and
    ``data/test_labels.csv`` (one row per object), ``data/all_labels.csv`` (every image).
    Returns the train and test image names."""
    scenes = write_synthetic(root / "scenes", n=n, seed=5, size=96)
    samples = load_dataset(scenes).samples
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    (root / "data").mkdir()
    rows = {}
    for i, s in enumerate(samples):
        name = f"img-{i}.jpg"
        os.link(s.image, root / "images" / name)
        objects = "".join(
            f"<object><name>thing</name><bndbox><xmin>{x1 + 1:.0f}</xmin><ymin>{y1 + 1:.0f}"
            f"</ymin><xmax>{x2:.0f}</xmax><ymax>{y2:.0f}</ymax></bndbox></object>"
            for x1, y1, x2, y2 in s.boxes
        )
        (root / "annotations" / f"img-{i}.xml").write_text(
            f"<annotation><filename>{name}</filename>{objects}</annotation>"
        )
        rows[name] = [f"{name},96,96,thing,1,1,2,2\n"] * max(len(s.boxes), 1)
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    names = sorted(rows)
    test, train = names[:n_test], names[n_test:]
    for split, chosen in (("train", train), ("test", test), ("all", names)):
        text = header + "".join(line for name in chosen for line in rows[name])
        if split == "test":
            text += "img-404.jpg,96,96,thing,1,1,2,2\n"
        (root / "data" / f"{split}_labels.csv").write_text(text)
    return train, test


def test_csv_split_lists_give_exactly_their_images_and_a_seeded_val(tmp_path):
    root = tmp_path / "voc"
    train, test = flat_voc_with_csv_splits(root)
    parts = {s: load_dataset(root, s) for s in SPLITS}
    assert sorted(names_of(parts["test"])) == sorted(test)
    assert (len(parts["train"]), len(parts["val"])) == (13, 2)
    assert sorted(names_of(parts["train"]) + names_of(parts["val"])) == sorted(train)
    assert all(d.own_splits for d in parts.values())
    assert names_of(load_dataset(root, "val")) == names_of(parts["val"])
    (file, kind, message) = parts["test"].problems.items[0]
    assert (Path(file).name, kind) == ("test_labels.csv", "missing-label")
    assert "img-404.jpg" in message
    every = load_dataset(root, "all")
    assert every.split is None and len(every) == 20


def test_image_sets_win_over_csv_lists(tmp_path):
    root = tmp_path / "voc"
    flat_voc_with_csv_splits(root)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("img-7\nimg-8\n")
    assert names_of(load_dataset(root, "test")) == ["img-7.jpg", "img-8.jpg"]


def test_carve_val_is_seeded_disjoint_and_leaves_a_given_val_alone():
    train = [SimpleNamespace(image=Path(f"{i:02d}.jpg")) for i in range(30)]
    parts = carve_val({"train": train, "test": train[:2]})
    assert (len(parts["train"]), len(parts["val"])) == (27, 3)
    assert {x.image for x in parts["train"] + parts["val"]} == {x.image for x in train}
    assert parts["test"] == train[:2]
    again = carve_val({"train": list(reversed(train))})
    assert [x.image for x in again["val"]] == [x.image for x in parts["val"]]
    other = carve_val({"train": train}, seed=1)
    assert {x.image for x in other["val"]} != {x.image for x in parts["val"]}
    given = {"train": train, "val": train[:1]}
    assert carve_val(given) is given
    assert carve_val({"train": train[:1]})["val"] == []


# --- --split all --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A synthetic YOLO txt dataset with its own train/val/test folders."""
    return write_synthetic(tmp_path_factory.mktemp("scenes") / "s", n=30, seed=2, size=96)


def test_split_all_is_every_image(scenes):
    every = load_dataset(scenes, "all")
    assert every.split is None and every.own_splits
    assert names_of(every) == names_of(load_dataset(scenes))
    assert len(every) == sum(len(load_dataset(scenes, s)) for s in SPLITS) == 30
    with pytest.raises(YoloError, match="unknown split 'dev' .*or all"):
        load_dataset(scenes, "dev")


def test_split_all_in_the_data_commands(scenes, tmp_path):
    runner = CliRunner()
    checked = runner.invoke(cli, ["data", "check", str(scenes), "--split", "all"])
    assert checked.exit_code == 0, checked.output
    assert "split: all" in checked.stdout and "images: 30 " in checked.stdout
    out = tmp_path / "coco"
    converted = runner.invoke(
        cli, ["data", "convert", str(scenes), str(out), "--to", "coco", "--split", "all"]
    )
    assert converted.exit_code == 0, converted.output
    assert converted.stdout.startswith("wrote 30 images")
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        f"instances_{s}.json" for s in ("test", "train", "val")
    ]
    objects = load_dataset(scenes, "all").num_objects()
    anchors = runner.invoke(cli, ["anchors", str(scenes), "--split", "all", "--k", "2"])
    assert anchors.exit_code == 0, anchors.output
    assert anchors.stdout.startswith(f"{objects} boxes, 2 anchors")


def test_a_split_a_dataset_lacks_names_those_it_has(scenes, tmp_path):
    """Only a val split of its own (e.g. instances_val2017.json): test is refused, naming val."""
    convert = CliRunner().invoke(
        cli, ["data", "convert", str(scenes), str(tmp_path / "c"), "--to", "coco", "--split", "val"]
    )
    assert convert.exit_code == 0, convert.output
    with pytest.raises(YoloError, match="its own splits are val, --split all reads every image"):
        load_dataset(tmp_path / "c", "test")


# --- a dataset without splits of its own, scored whole ------------------------------------------


def coco_file_without_split(folder: Path, n: int = 7) -> tuple[Path, list]:
    """``folder/photos/labels.json`` (names that say no split) over ``n`` images beside it."""
    scenes = write_synthetic(folder / "scenes", n=12, seed=3, size=96)
    folder = folder / "photos"
    folder.mkdir()
    full = load_dataset(scenes)
    samples = [s for s in full.samples if len(s.boxes)][:n]
    ids = {s.image: f"photo{i}" for i, s in enumerate(samples)}
    for s in samples:
        os.link(s.image, folder / f"{ids[s.image]}.jpg")
    path = folder / "labels.json"
    path.write_text(json.dumps(instances(samples, full.names, ids)))
    return path, samples


def test_eval_scores_a_coco_file_without_splits_whole(tmp_path):
    from yolo_cli.postprocess import Detections
    from yolo_cli.predictions import to_coco_results

    path, samples = coco_file_without_split(tmp_path)
    with pytest.raises(YoloError, match="no usable images in the test split"):
        load_dataset(path, "test")  # its seeded test share of 7 images is empty
    dataset = load_dataset(path)
    perfect = [
        Detections(s.boxes, np.ones(len(s.boxes), np.float32), s.classes) for s in dataset.samples
    ]
    preds = tmp_path / "preds.json"
    results = to_coco_results(names_of(dataset), perfect, dataset.names)
    preds.write_text(json.dumps(results))
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli, ["eval", "--data", str(path), "--predictions", str(preds), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"{path}: no train/val/test split of its own; scoring all 7 images" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 7 and metrics["split"] is None
    assert metrics["mAP@0.5"] == pytest.approx(1.0)


def test_eval_keeps_a_dataset_s_own_test_split(scenes, caplog):
    from yolo_cli.evaluate import load_eval_dataset

    with caplog.at_level(logging.INFO, logger="yolo_cli.evaluate"):
        test = load_eval_dataset(str(scenes), "test")
        every = load_eval_dataset(str(scenes), "all")
    assert names_of(test) == names_of(load_dataset(scenes, "test"))
    assert len(every) == 30 and caplog.records == []


# --- the default synthetic dataset: one line when it is generated -----------------------------


def test_generating_the_default_dataset_logs_one_line_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("YOLO_CLI_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="yolo_cli.data.synth"):
        root = default_synthetic(n=5, seed=9, size=64)
        assert [r.getMessage() for r in caplog.records] == [
            f"first use: generating 5 synthetic scenes into {root} (reused by later runs)"
        ]
        caplog.clear()
        assert default_synthetic(n=5, seed=9, size=64) == root
        assert caplog.records == []


@pytest.mark.slow
def test_cli_prints_the_generation_line_on_the_first_run_only(tmp_path, monkeypatch):
    """``yolo anchors`` without a dataset generates the default (2,000 scenes) into the cache."""
    monkeypatch.setenv("YOLO_CLI_CACHE", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(cli, ["anchors", "--k", "3"])
    assert first.exit_code == 0, first.output
    (line,) = first.stderr.splitlines()
    assert line.startswith("first use: generating 2000 synthetic scenes into ")
    assert str(tmp_path) in line
    second = runner.invoke(cli, ["anchors", "--k", "3"])
    assert second.exit_code == 0, second.output
    assert second.stderr == "" and second.stdout == first.stdout
