"""Dataset readers and writers on the real BCCD and raccoon datasets, and on damaged copies."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from shared_data import BCCD, RACCOON, needs_bccd, needs_raccoon

from yolo_cli.config import SPLITS
from yolo_cli.data.convert import convert_dataset
from yolo_cli.data.load import detect_format, load_dataset
from yolo_cli.data.records import split_from_name, split_samples
from yolo_cli.data.yolo_txt import label_path, label_text, parse_labels, write_names
from yolo_cli.errors import YoloError


def by_stem(dataset):
    return {s.image.stem: s for s in dataset.samples}


def assert_same_labels(a, b, atol):
    """Same images (by file stem), and per image the same classes and boxes within ``atol`` px."""
    a, b = by_stem(a), by_stem(b)
    assert a.keys() == b.keys()
    for stem in a:
        np.testing.assert_array_equal(a[stem].classes, b[stem].classes, err_msg=stem)
        np.testing.assert_allclose(a[stem].boxes, b[stem].boxes, atol=atol, err_msg=stem)
        assert (a[stem].width, a[stem].height) == (b[stem].width, b[stem].height)


# --- YOLO txt writer -------------------------------------------------------------------------


def test_label_text_normalizes_centre_and_size():
    boxes = np.array([[10, 20, 30, 60], [0, 0, 100, 200]], np.float32)
    text = label_text(boxes, [2, 0], 100, 200)
    assert text == "2 0.200000 0.200000 0.200000 0.200000\n0 0.500000 0.500000 1.000000 1.000000\n"
    assert label_text(boxes[:1], [1], 100, 200, scores=[0.25]).split()[-1] == "0.250000"
    assert label_text(np.zeros((0, 4)), [], 100, 200) == ""


def test_label_text_reads_back(tmp_path):
    boxes = np.array([[3.5, 7.25, 200.0, 99.0]], np.float32)
    (tmp_path / "a.txt").write_text(label_text(boxes, [4], 640, 480))
    rows, bad = parse_labels(tmp_path / "a.txt")
    assert bad == []
    (c, cx, cy, w, h) = rows[0]
    assert c == 4
    np.testing.assert_allclose(
        [(cx - w / 2) * 640, (cy - h / 2) * 480, (cx + w / 2) * 640, (cy + h / 2) * 480],
        boxes[0],
        atol=1e-3,
    )


def test_write_names_is_an_ultralytics_data_yaml(tmp_path):
    import yaml

    path = write_names(tmp_path, ["car", "person"], ["val", "train"])
    cfg = yaml.safe_load(path.read_text())
    assert "path" not in cfg  # ultralytics then uses the YAML's folder, wherever it moves
    assert (cfg["train"], cfg["val"]) == ("images/train", "images/val")
    assert "test" not in cfg
    assert cfg["names"] == {0: "car", 1: "person"}


def test_label_path_swaps_the_last_images_folder():
    assert label_path(Path("/d/images/x/images/train/a.jpg")) == Path(
        "/d/images/x/labels/train/a.txt"
    )
    assert label_path(Path("/d/flat/a.png")) == Path("/d/flat/a.txt")


# --- splits ----------------------------------------------------------------------------------


def test_split_from_name():
    assert split_from_name("instances_val2017") == "val"
    assert split_from_name("valid") == "val"
    assert split_from_name("train") == "train"
    assert split_from_name("trainval") is None
    assert split_from_name("_annotations.coco") is None


def test_split_samples_is_deterministic_disjoint_and_complete():
    from types import SimpleNamespace

    items = [SimpleNamespace(image=Path(f"img_{i:03d}.jpg")) for i in range(101)]
    parts = {s: split_samples(items, s) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [81, 10, 10]
    names = [x.image for p in parts.values() for x in p]
    assert sorted(names) == sorted(x.image for x in items)
    shuffled = list(reversed(items))
    assert [x.image for x in split_samples(shuffled, "val")] == [x.image for x in parts["val"]]
    assert {x.image for x in split_samples(items, "val", seed=1)} != {x.image for x in parts["val"]}


# --- BCCD (VOC) ------------------------------------------------------------------------------


def test_bccd_counts_splits_and_classes(bccd_splits):
    ds = bccd_splits[None]
    assert ds.format == "voc" and ds.root == BCCD / "BCCD"
    assert len(ds) == 364
    assert sorted(ds.names) == ["Platelets", "RBC", "WBC"]
    sizes = {s: len(bccd_splits[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 205, "val": 87, "test": 72}
    images = [{x.image for x in bccd_splits[s].samples} for s in ("train", "val", "test")]
    assert set.union(*images) == {x.image for x in ds.samples}
    assert not images[0] & images[1] and not images[0] & images[2] and not images[1] & images[2]


def test_bccd_zero_area_boxes_are_reported_with_their_files(bccd_splits):
    ds = bccd_splits[None]
    assert ds.problems.counts() == {"degenerate-box": 2}
    files = sorted(Path(f).name for f, _, _ in ds.problems.items)
    assert files == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    boxes = np.concatenate([s.boxes for s in ds.samples])
    assert ((boxes[:, 2:] - boxes[:, :2]) > 0).all()
    assert ds.num_objects() == 4888 - 2


def test_voc_corners_are_one_based(bccd_splits):
    """BloodImage_00000.xml: WBC xmin 260 ymin 177 xmax 491 ymax 376 → (259, 176, 491, 376)."""
    ds = bccd_splits[None]
    sample = by_stem(ds)["BloodImage_00000"]
    wbc = sample.boxes[sample.classes == ds.names.index("WBC")]
    np.testing.assert_array_equal(wbc, [[259, 176, 491, 376]])
    assert (sample.width, sample.height) == (640, 480)
    assert sample.boxes.dtype == np.float32 and sample.classes.dtype == np.int32


def test_names_given_maps_by_name_and_reports_unknown_classes(bccd_splits):
    own = bccd_splits["test"]
    ds = load_dataset(BCCD, split="test", names=["WBC", "RBC"])
    assert ds.names == ["WBC", "RBC"]
    assert ds.problems.counts()["unknown-class"] == own.objects_per_class()["Platelets"] > 0
    assert ds.objects_per_class() == {
        "WBC": own.objects_per_class()["WBC"],
        "RBC": own.objects_per_class()["RBC"],
    }


@pytest.fixture(scope="module")
def bccd_splits():
    """BCCD read once per module: every image (key None) and each split."""
    if not (BCCD / "BCCD" / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found under {BCCD}")
    return {s: load_dataset(BCCD, split=s) for s in (None, "train", "val", "test")}


@pytest.fixture(scope="module")
def bccd_converted(tmp_path_factory, bccd_splits):
    out = tmp_path_factory.mktemp("bccd")
    for to in ("coco", "yolo"):
        convert_dataset(BCCD, out / to, to)
    convert_dataset(out / "yolo", out / "yolo2voc", "voc")
    return out


@pytest.mark.parametrize(
    ("target", "fmt"), [("coco", "coco"), ("yolo", "yolo"), ("yolo2voc", "voc")]
)
def test_round_trip_keeps_boxes_classes_and_splits(bccd_splits, bccd_converted, target, fmt):
    for split in ("train", "val", "test"):
        original = bccd_splits[split]
        back = load_dataset(bccd_converted / target, split=split)
        assert back.format == fmt and back.names == original.names
        assert_same_labels(original, back, atol=0.5)
        assert len(back.problems) == 0


def test_written_coco_agrees_with_pycocotools(bccd_splits, bccd_converted):
    from pycocotools.coco import COCO

    coco = COCO(str(bccd_converted / "coco" / "annotations" / "instances_val.json"))
    val_ds = bccd_splits["val"]
    val, val_names = by_stem(val_ds), val_ds.names
    assert len(coco.getImgIds()) == len(val) == 87
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    for image in coco.loadImgs(coco.getImgIds()):
        sample = val[Path(image["file_name"]).stem]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        np.testing.assert_allclose(xyxy, sample.boxes, atol=1e-3)
        assert [names[a["category_id"]] for a in anns] == [val_names[c] for c in sample.classes]


def test_converted_images_are_links_not_writes_into_the_source(bccd_converted):
    image = bccd_converted / "yolo" / "images" / "train" / "BloodImage_00001.jpg"
    original = BCCD / "BCCD" / "JPEGImages" / "BloodImage_00001.jpg"
    assert image.read_bytes() == original.read_bytes()
    assert sorted(p.name for p in (BCCD / "BCCD").iterdir()) == [
        "Annotations",
        "ImageSets",
        "JPEGImages",
    ]


def test_convert_refuses_to_write_into_the_source_or_a_full_folder(damaged_voc, tmp_path):
    """On a tmp copy: a failing guard must not write into the shared datasets."""
    root, _ = damaged_voc
    holder = root.parent  # the folder given holds the VOC root: its siblings are refused too
    for dst in (holder / "out", root / "out", root / "JPEGImages" / "out", root):
        with pytest.raises(YoloError, match="inside the source"):
            convert_dataset(holder, dst, "yolo")
    assert sorted(p.name for p in holder.iterdir()) == ["voc"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(YoloError, match="not an empty folder"):
        convert_dataset(root, tmp_path / "full", "yolo")
    convert_dataset(root, holder / "beside", "yolo")  # outside the source given: allowed
    assert (holder / "beside" / "data.yaml").is_file()


# --- raccoon (flat VOC, its split in CSV lists) -------------------------------------------


def csv_images(name: str) -> set[str]:
    """The image names a raccoon ``data/*.csv`` list holds (one row per object)."""
    with (RACCOON / "data" / name).open(newline="") as f:
        return {row["filename"] for row in csv.DictReader(f)}


def image_names(dataset) -> set[str]:
    return {s.image.name for s in dataset.samples}


@needs_raccoon
def test_raccoon_honours_its_csv_split_with_val_carved_from_train():
    ds = load_dataset(RACCOON)
    assert (ds.format, len(ds), ds.names, len(ds.problems)) == ("voc", 200, ["raccoon"], 0)
    assert ds.num_objects() == 217 and ds.own_splits
    assert image_names(load_dataset(RACCOON, "all")) == image_names(ds)
    parts = {s: image_names(load_dataset(RACCOON, split=s)) for s in SPLITS}
    train_csv, test_csv = csv_images("train_labels.csv"), csv_images("test_labels.csv")
    assert len(train_csv) == 160 and len(test_csv) == 40
    assert parts["test"] == test_csv
    assert parts["train"] | parts["val"] == train_csv and not parts["train"] & parts["val"]
    assert (len(parts["train"]), len(parts["val"])) == (144, 16)
    assert image_names(load_dataset(RACCOON, split="val")) == parts["val"]


@needs_raccoon
def test_raccoon_converts_with_the_same_splits(tmp_path):
    written = convert_dataset(RACCOON, tmp_path / "r", "yolo")
    assert {s: len(d) for s, d in written.items()} == {"train": 144, "val": 16, "test": 40}
    for split in SPLITS:
        original = load_dataset(RACCOON, split)
        back = load_dataset(tmp_path / "r", split)
        assert back.own_splits and len(back.problems) == 0
        assert_same_labels(original, back, atol=0.5)


@needs_raccoon
def test_raccoon_image_is_found_by_the_xml_stem(tmp_path):
    """An XML whose <filename> names another file still finds the image with its own stem."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    xml = (RACCOON / "annotations" / "raccoon-1.xml").read_text()
    (tmp_path / "annotations" / "raccoon-1.xml").write_text(
        xml.replace("<filename>raccoon-1.jpg</filename>", "<filename>other.png</filename>")
    )
    shutil.copy(RACCOON / "images" / "raccoon-1.jpg", tmp_path / "images")
    ds = load_dataset(tmp_path)
    assert [s.image.name for s in ds.samples] == ["raccoon-1.jpg"]
    np.testing.assert_array_equal(ds.samples[0].boxes, [[80, 87, 522, 408]])


# --- detection -------------------------------------------------------------------------------


def test_missing_path_and_unknown_format_are_fatal(tmp_path):
    with pytest.raises(YoloError, match="no such file"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(YoloError, match="empty folder"):
        load_dataset(tmp_path)
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(YoloError, match="unknown dataset format"):
        load_dataset(tmp_path)


@needs_bccd
def test_a_folder_with_two_datasets_names_both(tmp_path):
    for name in ("a", "b"):
        convert_dataset(BCCD, tmp_path / name, "coco", split="test")
    fmt, root = detect_format(tmp_path / "a")
    assert (fmt, root) == ("coco", tmp_path / "a")
    with pytest.raises(YoloError, match="several datasets") as e:
        detect_format(tmp_path)
    assert str(tmp_path / "a") in str(e.value) and str(tmp_path / "b") in str(e.value)


# --- damaged datasets: each problem reported once, the rest still read ----------------------


@pytest.fixture
def damaged_voc(tmp_path):
    """Ten BCCD images in VOC layout (copied), with one of each kind of damage."""
    if not (BCCD / "BCCD" / "Annotations").is_dir():
        pytest.skip(f"BCCD dataset not found under {BCCD}")
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    stems = sorted(p.stem for p in (BCCD / "BCCD" / "Annotations").glob("*.xml"))[:10]
    for stem in stems:
        shutil.copy(BCCD / "BCCD" / "Annotations" / f"{stem}.xml", root / "Annotations")
        shutil.copy(BCCD / "BCCD" / "JPEGImages" / f"{stem}.jpg", root / "JPEGImages")
    (root / "classes.txt").write_text("RBC\nWBC\nPlatelets\n")
    ann, img = root / "Annotations", root / "JPEGImages"
    corrupt = img / f"{stems[0]}.jpg"
    corrupt.write_bytes(b"\x00garbage" + corrupt.read_bytes()[200:])
    (img / f"{stems[1]}.jpg").write_bytes(b"")
    (ann / f"{stems[2]}.xml").write_text("<annotation><object><name>RBC</name>")
    xml = (ann / f"{stems[3]}.xml").read_text()
    first_object = xml.index("<object>")
    extra = (
        "<object><name>RBC</name><bndbox><xmin>600</xmin><ymin>400</ymin>"
        "<xmax>700</xmax><ymax>470</ymax></bndbox></object>"
        "<object><name>WBC</name><bndbox><xmin>650</xmin><ymin>10</ymin>"
        "<xmax>700</xmax><ymax>60</ymax></bndbox></object>"
        "<object><name>Monocyte</name><bndbox><xmin>10</xmin><ymin>10</ymin>"
        "<xmax>60</xmax><ymax>60</ymax></bndbox></object>"
    )
    (ann / f"{stems[3]}.xml").write_text(xml[:first_object] + extra + xml[first_object:])
    (img / f"{stems[4]}.jpg").unlink()
    return root, stems


def test_damaged_voc_reports_each_problem_once(damaged_voc):
    root, stems = damaged_voc
    ds = load_dataset(root, verify=True)
    assert ds.problems.counts() == {
        "corrupt-image": 2,
        "malformed-label": 1,
        "clipped-box": 1,
        "outside-box": 1,
        "unknown-class": 1,
        "missing-image": 1,
    }
    by_kind = {}
    for file, kind, _ in ds.problems.items:
        by_kind.setdefault(kind, set()).add(Path(file).name)
    assert by_kind["corrupt-image"] == {f"{stems[0]}.jpg", f"{stems[1]}.jpg"}
    assert by_kind["malformed-label"] == {f"{stems[2]}.xml"}
    assert by_kind["missing-image"] == {f"{stems[4]}.xml"}
    assert by_kind["clipped-box"] == by_kind["outside-box"] == {f"{stems[3]}.xml"}
    assert len(ds) == 10 - 4
    assert ds.names == ["RBC", "WBC", "Platelets"]
    damaged = by_stem(ds)[stems[3]]
    assert (
        damaged.boxes.max(axis=0)[2] <= 640
        and [600 - 1, 400 - 1, 640, 470] in damaged.boxes.tolist()
    )


def test_damaged_voc_without_decoding_still_catches_bad_image_files(damaged_voc):
    """The cheap check (each image's header) finds the zero-byte and garbage images."""
    root, stems = damaged_voc
    ds = load_dataset(root)
    assert ds.problems.counts()["corrupt-image"] == 2
    assert len(ds) == 6


def test_damaged_yolo_lines_and_stray_labels(damaged_voc, tmp_path):
    root, stems = damaged_voc
    (root / "Annotations" / f"{stems[2]}.xml").unlink()
    (root / "Annotations" / f"{stems[4]}.xml").unlink()
    for stem in stems[:2]:
        shutil.copy(BCCD / "BCCD" / "JPEGImages" / f"{stem}.jpg", root / "JPEGImages")
    yolo = tmp_path / "yolo"
    convert_dataset(root, yolo, "yolo", split="train")
    labels = yolo / "labels" / "train"
    first = sorted(labels.glob("*.txt"))[0]
    first.write_text(first.read_text() + "7 0.5 0.5 0.1 0.1\nnot a label\n0 0.5 0.5\n")
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = load_dataset(yolo)
    counts = ds.problems.counts()
    assert counts["unknown-class"] == 1
    assert counts["malformed-label"] == 2
    assert counts["missing-image"] == 1
    files = {kind: Path(f).name for f, kind, _ in ds.problems.items}
    assert files["missing-image"] == "orphan.txt" and files["unknown-class"] == first.name
    assert len(ds) == len(list((yolo / "images" / "train").iterdir()))


def test_coco_malformed_file_and_annotations(tmp_path, damaged_voc):
    root, stems = damaged_voc
    (root / "Annotations" / f"{stems[2]}.xml").unlink()
    coco = tmp_path / "coco"
    convert_dataset(root, coco, "coco", split="train")
    path = coco / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"] = [1, 2, "x", 4]
    data["annotations"][1]["category_id"] = 99
    data["annotations"][2]["bbox"] = [10, 10, 0, 5]
    path.write_text(json.dumps(data))
    (coco / "annotations" / "instances_val.json").write_text("{not json")
    ds = load_dataset(coco)
    counts = ds.problems.counts()
    assert counts == {"malformed-label": 2, "unknown-class": 1, "degenerate-box": 1}
    n = sum(len(s.classes) for s in ds.samples)
    assert n == len(data["annotations"]) - 3


def test_unreadable_class_list_is_fatal(damaged_voc):
    root, _ = damaged_voc
    (root / "classes.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(YoloError, match="classes.txt: unreadable class list"):
        load_dataset(root)


def test_ultralytics_yaml_with_list_names_and_image_lists(tmp_path, damaged_voc):
    root, _ = damaged_voc
    yolo = tmp_path / "y"
    convert_dataset(root, yolo, "yolo", split="train")
    images = sorted((yolo / "images" / "train").iterdir())
    (yolo / "lists").mkdir()
    listed = "".join(f"../images/train/{p.name}\n" for p in images[:2])
    (yolo / "lists" / "val.txt").write_text(listed)
    (yolo / "data.yaml").write_text(
        "path: /nonexistent/moved\ntrain: images/train\nval: lists/val.txt\n"
        "names: [RBC, WBC, Platelets]\n"
    )
    train, val = load_dataset(yolo, "train"), load_dataset(yolo / "data.yaml", "val")
    assert len(train) == len(images) and train.names == ["RBC", "WBC", "Platelets"]
    assert [s.image.name for s in val.samples] == [p.name for p in images[:2]]
    for s in val.samples:
        np.testing.assert_array_equal(s.boxes, by_stem(train)[s.image.stem].boxes)
