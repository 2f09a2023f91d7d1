"""The sliding-window baselines through the command line: ``yolo train --method window``,
``yolo detect/eval --method window|conv-window`` and ``yolo bench``.

One tiny synthetic dataset (128-px street scenes) and one briefly trained window classifier
serve every test; the YOLO model of the bench is an untrained small network (the bench's
plumbing is under test, not YOLO's accuracy).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.bench import detections_agree, true_positive_ious
from yolo_cli.cli import cli
from yolo_cli.config import DEFAULTS
from yolo_cli.data.scenes import render_scene, scene_rng
from yolo_cli.data.synth import write_synthetic
from yolo_cli.model import build_model
from yolo_cli.modelfile import Head, ModelMeta, read_meta, save_model
from yolo_cli.postprocess import Detections

SIZE = 128
NAMES = list(DEFAULTS.synth_classes)
ANCHORS = [[20.0, 30.0], [50.0, 40.0]]
LOW_CONF = "0.05"  # a briefly trained classifier: low threshold, so there is something to compare


def run(*args):
    """``yolo ARGS`` in-process; exceptions other than the CLI's own exit are raised."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synth") / "ds", n=30, seed=3, size=SIZE)


@pytest.fixture(scope="module")
def window_run(tmp_path_factory, dataset):
    """``yolo train --method window`` on the tiny dataset: (CLI result, run folder)."""
    out = tmp_path_factory.mktemp("train") / "run"
    result = run("train", "--method", "window", "--data", dataset, "--epochs", 3, "--out", out)
    return result, out


@pytest.fixture(scope="module")
def window_model(window_run):
    result, out = window_run
    assert result.exit_code == 0, result.output
    return out / "best.keras"


@pytest.fixture(scope="module")
def yolo_model(tmp_path_factory):
    model = build_model(len(NAMES), np.array(ANCHORS), SIZE, width=0.25)
    path = tmp_path_factory.mktemp("yolo") / "yolo.keras"
    return save_model(model, path, ModelMeta("yolo", NAMES, SIZE, [Head(32, ANCHORS)]))


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    """A rendered 160×128 street scene (not square: boxes must come back in its pixels)."""
    image, _, _ = render_scene(scene_rng(11, 0), SIZE, tuple(NAMES))
    image = cv2.resize(image, (160, SIZE))
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


# --- yolo train --method window ---------------------------------------------------------------


def test_train_window_writes_window_models_and_reports_held_out_accuracy(window_run):
    result, out = window_run
    assert result.exit_code == 0, result.output
    last_line = result.stdout.strip().splitlines()[-1]
    assert "held-out crop accuracy" in last_line and str(out) in last_line
    accuracy = float(last_line.split("held-out crop accuracy ")[1].split()[0])
    assert 0 <= accuracy <= 1
    for name in ("best.keras", "last.keras"):
        meta = read_meta(out / name)
        assert (meta.kind, meta.names, meta.img_size) == ("window", NAMES, DEFAULTS.window_crop)
        assert meta.extra["scales"] == list(DEFAULTS.window_scales)
        assert meta.extra["val_accuracy"] == pytest.approx(accuracy, abs=5e-4)


def test_train_window_refuses_yolo_only_options(tmp_path, dataset):
    result = run(
        "train", "--method", "window", "--data", dataset, "--num-anchors", 3,
        "--out", tmp_path / "r",
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --method window: --num-anchors apply to YOLO training only"
    )
    assert not (tmp_path / "r").exists()


def test_train_window_refuses_a_folder_holding_a_model(window_run, dataset):
    _, out = window_run
    result = run("train", "--method", "window", "--data", dataset, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {out}: already holds a model; use another --out"


# --- yolo detect / eval --method ----------------------------------------------------------------


def detect_json(method: str, model, source) -> list[dict]:
    result = run(
        "detect", source, "--method", method, "--model", model, "--conf", LOW_CONF,
        "--json", "--no-save",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_detect_window_and_conv_window_give_the_same_detections(window_model, scene_file):
    (naive,) = detect_json("window", window_model, scene_file)
    (conv,) = detect_json("conv-window", window_model, scene_file)
    assert (naive["width"], naive["height"]) == (160, SIZE)
    assert naive["detections"], "a low threshold must leave detections to compare"
    assert len(conv["detections"]) == len(naive["detections"])
    for a, b in zip(naive["detections"], conv["detections"]):
        assert a["class"] == b["class"]
        assert a["xyxy"] == pytest.approx(b["xyxy"], abs=1e-2)  # voted by the scores
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    boxes = np.array([d["xyxy"] for d in naive["detections"]])
    assert (boxes >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= SIZE).all()


def test_window_methods_need_a_window_model(window_model, yolo_model, scene_file):
    result = run("detect", scene_file, "--method", "conv-window")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --method conv-window: needs --model PATH, a window classifier "
        "(train one with `yolo train --method window`)"
    )
    result = run("detect", scene_file, "--method", "window", "--model", yolo_model)
    assert result.exit_code == 2
    assert f"{yolo_model}: a 'yolo' model; --method window needs a window classifier" in (
        result.stderr
    )
    result = run("detect", scene_file, "--model", window_model)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {window_model}: a window classifier, not a YOLO detector; "
        "use --method window or conv-window"
    )


def test_eval_conv_window_prints_the_table(tmp_path, dataset, window_model):
    out = tmp_path / "eval"
    result = run(
        "eval", "--data", dataset, "--model", window_model, "--method", "conv-window",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{window_model} (conv-window) on {dataset} (test)")
    assert [line.split()[0] for line in lines[3 : 3 + len(NAMES)]] == NAMES
    assert lines[-2].startswith("all")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == f"{window_model} (conv-window)"
    assert metrics["images"] > 0


# --- yolo bench ---------------------------------------------------------------------------------


def table_rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("window", "conv-window", "yolo"):
            rows[cells[0]] = cells[1:]
    return rows


def test_bench_prints_three_methods_and_the_agreement(dataset, window_model, yolo_model):
    result = run(
        "bench", "--data", dataset, "--split", "train", "--model", yolo_model,
        "--model", window_model, "--n-images", 3, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"3 images of {dataset} (train, 128×128)")
    rows = table_rows(result.stdout)
    assert list(rows) == ["window", "conv-window", "yolo"]
    # same detections → same mAP and TP IoU; same windows, fewer multiply-adds when shared
    assert rows["window"][:2] == rows["conv-window"][:2]
    assert rows["window"][5] == rows["conv-window"][5] != "0"
    assert rows["window"][4] == "1.0×"
    assert rows["yolo"][5] == f"{(SIZE // 32) ** 2 * len(ANCHORS):,}"
    macs = {m: r[6] for m, r in rows.items()}
    assert macs["window"].endswith("M") and macs["conv-window"].endswith("M")
    assert float(macs["conv-window"].split()[0]) < float(macs["window"].split()[0])
    assert "window and conv-window detections agree on all 3 images" in result.stdout


def test_bench_tells_its_models_apart_and_refuses_a_wrong_pair_before_running(
    tmp_path, dataset, window_model, yolo_model
):
    missing = tmp_path / "missing.keras"
    wanted = (
        "error: --model: expected one window classifier (`yolo train --method window` makes "
        "one) and at most one YOLO model; got "
    )
    for models, message in [
        ([yolo_model], f"{wanted}0 and 1"),
        ([window_model, window_model], f"{wanted}2 and 0"),
        ([yolo_model, yolo_model, window_model], f"{wanted}1 and 2"),
        ([missing, window_model], f"error: {missing}: model file not found"),
    ]:
        args = [a for m in models for a in ("--model", m)]
        result = run("bench", "--data", dataset, *args)
        assert (result.exit_code, result.stderr.strip()) == (2, message)
    # the older spellings name the same files, told apart the same way
    result = run(
        "bench", "--data", dataset, "--yolo-model", window_model, "--window-model", yolo_model,
        "--n-images", 1, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(table_rows(result.stdout)) == ["window", "conv-window", "yolo"]


# --- the bench's measures ---------------------------------------------------------------------


def dets(boxes, scores, classes) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int32),
    )


def test_true_positive_ious_match_greedily_by_score_above_the_class_threshold():
    truth = [
        (np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32), np.array([0, 1])),
        (np.array([[0, 0, 10, 10]], np.float32), np.array([0])),
    ]
    detections = [
        dets(
            [[0, 0, 10, 8], [0, 0, 10, 10], [20, 0, 30, 10], [20, 0, 28, 10]],
            [0.9, 0.8, 0.7, 0.2],
            [0, 0, 1, 1],
        ),
        dets([[5, 0, 15, 10]], [0.95], [0]),  # IoU 1/3: a false positive
    ]
    ious = true_positive_ious(truth, detections, np.array([0.5, 0.5]), 0.5)
    # image 0: the 0.9 box takes the class-0 truth (IoU 0.8), the 0.8 box finds it taken;
    # class 1's 0.2 box is under its class threshold
    np.testing.assert_allclose(np.sort(ious), [0.8, 1.0])
    none_kept = true_positive_ious(truth, detections, np.array([np.nan, 0.5]), 0.5)
    np.testing.assert_allclose(none_kept, [1.0])


def test_detections_agree_within_score_rounding_only():
    a = dets([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.5], [0, 1])
    assert detections_agree(a, dets(a.boxes, a.scores + 5e-5, a.classes))
    assert not detections_agree(a, dets(a.boxes, a.scores + 1e-3, a.classes))
    assert not detections_agree(a, dets(a.boxes + [0, 0, 1, 0], a.scores, a.classes))
    assert not detections_agree(a, dets(a.boxes, a.scores, [0, 0]))
    assert not detections_agree(a, a.take([0]))
