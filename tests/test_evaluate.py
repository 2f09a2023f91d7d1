"""``yolo eval``: saved predictions and a model scored against a dataset's ground truth."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from shared_data import BCCD, needs_bccd

from yolo_cli.cli import cli
from yolo_cli.data.load import load_dataset
from yolo_cli.metrics import COCO_IOU_THRESHOLDS, evaluate
from yolo_cli.postprocess import Detections
from yolo_cli.predictions import to_coco_results


def noisy_detections(dataset, seed=0):
    """Ground truth jittered, some missed, plus low-scored false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for s in dataset.samples:
        keep = rng.random(len(s.boxes)) > 0.15
        boxes = s.boxes[keep] + rng.normal(0, 3, (keep.sum(), 4)).astype(np.float32)
        scores = rng.uniform(0.3, 1.0, keep.sum()).astype(np.float32)
        fp = rng.uniform(0, 400, (3, 2)).astype(np.float32)
        boxes = np.concatenate([boxes, np.concatenate([fp, fp + 40], 1)])
        scores = np.concatenate([scores, rng.uniform(0, 0.4, 3).astype(np.float32)])
        classes = np.concatenate([s.classes[keep], rng.integers(0, 3, 3)]).astype(np.int32)
        order = np.argsort(-scores)
        out.append(Detections(boxes[order], scores[order], classes[order]))
    return out


def saved_predictions(folder):
    """BCCD's test split, noisy detections of it, and those saved as COCO results."""
    dataset = load_dataset(BCCD, split="test")
    dets = noisy_detections(dataset)
    preds = folder / "preds.json"
    names = [s.image.name for s in dataset.samples]
    preds.write_text(json.dumps(to_coco_results(names, dets, dataset.names)))
    return dataset, dets, preds


@needs_bccd
def test_eval_scores_saved_predictions(tmp_path):
    dataset, dets, preds = saved_predictions(tmp_path)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli, ["eval", "--data", str(BCCD), "--predictions", str(preds), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    truth = [(s.boxes, s.classes) for s in dataset.samples]
    expected50 = evaluate(truth, dets, 3).map
    expected = evaluate(truth, dets, 3, iou_thresholds=COCO_IOU_THRESHOLDS).map_all
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 72 and metrics["split"] == "test"
    assert abs(metrics["mAP@0.5"] - expected50) < 1e-9
    assert abs(metrics["mAP@[0.5:0.95]"] - expected) < 1e-9
    assert (out / "pr_curve.png").stat().st_size > 1000
    lines = result.output.splitlines()
    for name in dataset.names:
        assert any(line.startswith(name) for line in lines)
    assert f"{expected50:.3f}" in next(line for line in lines if line.startswith("all"))


@needs_bccd
def test_eval_iou_threshold_changes_the_score(tmp_path):
    dataset, dets, preds = saved_predictions(tmp_path)
    scores = {}
    for iou in ("0.5", "0.9"):
        out = tmp_path / iou
        result = CliRunner().invoke(
            cli,
            [
                "eval",
                "--data",
                str(BCCD),
                "--predictions",
                str(preds),
                "--iou",
                iou,
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        scores[iou] = json.loads((out / "metrics.json").read_text())[f"mAP@{iou}"]
    assert scores["0.9"] < scores["0.5"]


def test_eval_runs_a_model_and_reports_bad_data(tmp_path):
    """A real (untrained) model over a small synthetic set with one corrupt image."""
    from yolo_cli.data.synth import write_synthetic
    from yolo_cli.model import build_model
    from yolo_cli.modelfile import Head, ModelMeta, save_model

    data = write_synthetic(tmp_path / "scenes", n=40, seed=4, size=128)
    victim = sorted((data / "images" / "test").glob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    names = ["pedestrian", "car", "motorcycle"]
    anchors = [[20.0, 30.0], [60.0, 40.0]]
    model = save_model(
        build_model(3, np.array(anchors), 128, width=0.25),
        tmp_path / "m.keras",
        ModelMeta("yolo", names, 128, [Head(32, anchors)]),
    )
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        ["eval", "--data", str(data), "--model", str(model), "--out", str(out), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert victim.name in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["mAP@0.5"] <= 1 and [c["name"] for c in metrics["classes"]] == names


def test_eval_refuses_a_model_of_other_classes(tmp_path):
    from yolo_cli.data.synth import write_synthetic
    from yolo_cli.model import build_model
    from yolo_cli.modelfile import Head, ModelMeta, save_model

    data = write_synthetic(tmp_path / "scenes", n=10, seed=4, size=128)
    model = save_model(
        build_model(1, np.ones((1, 2)), 128, width=0.25),
        tmp_path / "m.keras",
        ModelMeta("yolo", ["raccoon"], 128, [Head(32, [[30.0, 30.0]])]),
    )
    result = CliRunner().invoke(
        cli, ["eval", "--data", str(data), "--model", str(model), "--split", "train"]
    )
    assert result.exit_code == 2
    assert "share none with the dataset's" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_eval_missing_dataset(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


# --- a standard COCO results file, skipped images, what metrics.json records ------------------


def coco_scenes(folder, ids, categories, seed=0):
    """A COCO dataset of len(ids) rendered images (various sizes), 1–4 boxes each of the
    given category ids, under the image ids ``ids``."""
    from rendered import write_coco

    rng = np.random.default_rng(seed)
    images = []
    for n, _ in enumerate(ids):
        w, h = int(rng.integers(96, 200)), int(rng.integers(96, 200))
        k = int(rng.integers(1, 5))
        corner = rng.uniform(0, [w * 0.6, h * 0.6], (k, 2))
        size = rng.uniform(12, [w * 0.4, h * 0.4], (k, 2))
        boxes = np.round(np.concatenate([corner, corner + size], 1), 1)
        image = np.zeros((h, w, 3), np.uint8)
        cats = [int(c) for c in rng.choice(list(categories), k)]
        images.append((f"img{n}.png", image, boxes, cats))
    return write_coco(folder, images, categories, ids)


def standard_results(labels, seed=None):
    """A standard COCO results list (image_id, category_id, bbox, score: nothing else) from
    the ground truth: exact boxes when ``seed`` is None, else jittered, some dropped, plus
    false positives."""
    data = json.loads(labels.read_text())
    rng = np.random.default_rng(seed)
    results = []
    for ann in data["annotations"]:
        bbox = np.array(ann["bbox"], float)
        if seed is not None:
            if rng.random() < 0.2:
                continue
            bbox = bbox + rng.normal(0, 2, 4)
        score = 0.9 if seed is None else float(rng.uniform(0.2, 1))
        results.append(
            {"image_id": ann["image_id"], "category_id": ann["category_id"],
             "bbox": [round(float(v), 2) for v in bbox], "score": score}
        )  # fmt: skip
    if seed is not None:
        for image in data["images"]:
            results.append(
                {"image_id": image["id"], "category_id": data["categories"][0]["id"],
                 "bbox": [5.0, 5.0, 30.0, 20.0], "score": float(rng.uniform(0, 0.5))}
            )  # fmt: skip
    return results


def cocoeval_stats(labels, results):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(labels))
        run = COCOeval(truth, truth.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return run.stats


def test_eval_reads_a_standard_coco_results_file_by_the_dataset_s_image_ids(tmp_path):
    """Image ids that are not positions (101, 7, …) and category ids that are not class
    indices (3, 9): a results file as pycocotools reads it scores as pycocotools scores it."""
    labels = coco_scenes(tmp_path / "data", [101, 7, 4000, 12, 55, 3], {9: "person", 3: "car"})
    for seed in (None, 1):
        results = standard_results(labels, seed)
        preds = tmp_path / f"results{seed}.json"
        preds.write_text(json.dumps(results))
        out = tmp_path / f"eval{seed}"
        result = CliRunner().invoke(
            cli,
            ["eval", "--data", str(labels), "--predictions", str(preds), "--out", str(out)],
        )
        assert result.exit_code == 0, result.output
        assert "unknown-image" not in result.output and "unknown-class" not in result.output
        metrics = json.loads((out / "metrics.json").read_text())
        stats = cocoeval_stats(labels, results)
        assert metrics["mAP@[0.5:0.95]"] == pytest.approx(stats[0], abs=1e-6)
        assert metrics["mAP@0.5"] == pytest.approx(stats[1], abs=1e-6)
        if seed is None:
            assert metrics["mAP@0.5"] == pytest.approx(1.0)


def test_eval_leaves_an_unreadable_image_out_with_its_ground_truth(tmp_path):
    from rendered import patch_scene, save_hand_model, write_coco

    scenes = [patch_scene(cells) for cells in ([(1, 1)], [(0, 2), (3, 0)], [(2, 3)])]
    labels = write_coco(
        tmp_path / "data",
        [(f"s{i}.png", image, boxes, [1] * len(boxes)) for i, (image, boxes) in enumerate(scenes)],
        {1: "car"},
    )
    victim = tmp_path / "data" / "s1.png"
    victim.write_bytes(victim.read_bytes()[:-20])  # the header reads, the pixels do not
    model = save_hand_model(tmp_path / "m.keras", ["car"], detects=0)
    out = tmp_path / "eval"
    args = ["eval", "--data", str(labels), "--model", str(model), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"{victim}: " in result.stderr and "skipped with its ground truth" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mAP@0.5"] == pytest.approx(1.0)
    assert metrics["images"] == 2 and metrics["skipped_images"] == 1
    assert metrics["classes"][0]["n_gt"] == 2
    assert "(2 images, 1 skipped (unreadable);" in result.stdout


def test_metrics_json_records_the_command_the_model_and_the_dataset(tmp_path):
    import hashlib
    import shlex
    import shutil

    from rendered import patch_scene, save_hand_model, write_coco

    image, boxes = patch_scene([(1, 1), (2, 3)])
    write_coco(tmp_path / "data", [("a.png", image, boxes, [1, 1])], {1: "car"})
    model = save_hand_model(tmp_path / "m.keras", ["car"], detects=0)
    args = ["eval", "--data", str(tmp_path / "data"), "--model", str(model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "e1")])
    assert result.exit_code == 0, result.output
    first = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    assert first["command"].endswith(shlex.join([*args, "--out", str(tmp_path / "e1")]))
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert first["models"] == [{"path": str(model), "sha256": sha}]
    assert first["augment"] is False and first["box_vote"] is True
    assert len(first["dataset_sha256"]) == 64
    plain = CliRunner().invoke(cli, [*args, "--no-box-vote", "--out", str(tmp_path / "e0")])
    assert plain.exit_code == 0, plain.output
    assert json.loads((tmp_path / "e0" / "metrics.json").read_text())["box_vote"] is False

    def fingerprint(data):
        out = tmp_path / f"e-{data.name}"
        result = CliRunner().invoke(
            cli, ["eval", "--data", str(data), "--model", str(model), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        return json.loads((out / "metrics.json").read_text())["dataset_sha256"]

    moved = shutil.copytree(tmp_path / "data", tmp_path / "moved")
    assert fingerprint(moved) == first["dataset_sha256"]  # where it lies is not what it is
    relabelled = shutil.copytree(tmp_path / "data", tmp_path / "relabelled")
    labels = json.loads((relabelled / "labels.json").read_text())
    labels["annotations"][0]["bbox"][0] += 1
    (relabelled / "labels.json").write_text(json.dumps(labels))
    assert fingerprint(relabelled) != first["dataset_sha256"]


class Ticks:
    """Records what run_eval reports through its progress callback."""

    def __init__(self):
        self.total = None
        self.done = 0

    def __call__(self, total):
        self.total = total
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, n):
        self.done += n


def test_eval_reports_progress_over_every_image_skipped_ones_too(tmp_path):
    from rendered import patch_scene, save_hand_model, write_coco

    from yolo_cli.evaluate import EvalOptions, run_eval

    scenes = [patch_scene([(i % 4, 1)]) for i in range(5)]
    write_coco(
        tmp_path / "data",
        [(f"s{i}.png", image, boxes, [1]) for i, (image, boxes) in enumerate(scenes)],
        {1: "car"},
    )
    victim = tmp_path / "data" / "s3.png"
    victim.write_bytes(victim.read_bytes()[:-20])
    model = save_hand_model(tmp_path / "m.keras", ["car"], detects=0)
    ticks = Ticks()
    report = run_eval(
        EvalOptions(
            data=str(tmp_path / "data"), model=str(model), batch=2, out=str(tmp_path / "e")
        ),
        progress=ticks,
    )
    assert ticks.total == 5 and ticks.done == 5
    assert report.images == 4 and report.skipped == 1
