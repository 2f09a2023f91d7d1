"""``yolo eval``: saved predictions and a model scored against a dataset's ground truth."""

import json

import numpy as np
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
    assert "differ from the dataset" in result.output


def test_eval_missing_dataset(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
