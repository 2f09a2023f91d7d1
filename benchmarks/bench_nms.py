"""Per-class NMS and post-processing timings: yolo-cli against TensorFlow and OpenCV.

    .venv/bin/python benchmarks/bench_nms.py [--repeats 101]

Two tables, all numbers measured in this one process:
1. per-class NMS (3 classes, IoU 0.5) on 1k and 10k clustered boxes — many jittered predictions
   around each object, as a detector produces — for yolo-cli's ``batched_nms`` (numpy) and
   ``select`` (TensorFlow combined NMS in a warmed ``tf.function``) against
   ``tf.image.non_max_suppression`` looped over the classes and ``cv2.dnn.NMSBoxesBatched``.
   Every method must keep the same boxes, or the script stops. Ratios are baseline time / our
   time: above 1 we are faster.
2. full post-processing of one 13×13×5 grid with 3 classes (decode + score threshold + NMS), the
   numpy path and the TensorFlow path, each with and without box voting (the default), against
   the goal of 2 ms.

Times are medians of ``--repeats`` runs; the methods take turns run by run so that a noisy
neighbour on a shared machine slows them all alike. The load average is printed at the start
and the end: other work on the machine moves the medians.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import cv2
import numpy as np
import tensorflow as tf

from yolo_cli.config import DEFAULTS
from yolo_cli.modelfile import Head
from yolo_cli.postprocess import batched_nms, decode, filter_detections, select

NUM_CLASSES = 3
IMG_SIZE = DEFAULTS.img_size
GRID = IMG_SIZE // DEFAULTS.stride  # 13


def clustered_boxes(n: int, seed: int = 0):
    """``n`` boxes around ``n / 20`` objects of a 640 px image: xyxy ``(n, 4)``, scores, classes.

    Each prediction jitters its object's centre by ~15 % of its size and its sides by ~15 %;
    one in ten takes a random class, as a confused classifier would.
    """
    rng = np.random.default_rng(seed)
    objects = max(1, n // 20)
    centre = rng.uniform(0, 640, (objects, 2))
    size = rng.uniform(16, 160, (objects, 2))
    label = rng.integers(0, NUM_CLASSES, objects)
    owner = rng.integers(0, objects, n)
    c = centre[owner] + rng.normal(0, 0.15, (n, 2)) * size[owner]
    wh = size[owner] * np.exp(rng.normal(0, 0.15, (n, 2)))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)
    confused = rng.random(n) < 0.1
    classes = np.where(confused, rng.integers(0, NUM_CLASSES, n), label[owner]).astype(np.int32)
    scores = rng.random(n).astype(np.float32)
    return boxes, scores, classes


def nms_methods(boxes, scores, classes, iou_threshold):
    """name → ``(run, kept)``: ``run()`` is what is timed, ``kept(run())`` the kept indices."""
    n = len(boxes)
    signature = [
        tf.TensorSpec([None, None, 4], tf.float32),
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None, None, None], tf.float32),
    ]
    compiled = tf.function(
        lambda b, p, pr: select(b, p, pr, 0.0, iou_threshold, n), input_signature=signature
    )
    # select scores a box p_c · max P(class): p_c = score and a one-hot class give the score
    tf_inputs = [
        tf.constant(boxes[None]),
        tf.constant(scores[None]),
        tf.one_hot(classes, NUM_CLASSES)[None],
    ]
    # combined NMS returns boxes, not indices: look them up (no two boxes are equal)
    index_of = {tuple(b): i for i, b in enumerate(boxes.tolist())}

    def select_kept(out):
        kept_boxes, _, _, count = out
        return np.array([index_of[tuple(b)] for b in kept_boxes[0, : count[0]].tolist()])

    members = [np.flatnonzero(classes == c) for c in range(NUM_CLASSES)]

    def tf_loop():
        return [
            i[tf.image.non_max_suppression(boxes[i], scores[i], len(i), iou_threshold).numpy()]
            for i in members
        ]

    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    if hasattr(cv2.dnn, "NMSBoxesBatched"):
        opencv_name = "cv2.dnn.NMSBoxesBatched"

        def opencv():
            return cv2.dnn.NMSBoxesBatched(xywh, scores, classes, 0.0, iou_threshold)

    else:  # OpenCV < 4.7
        opencv_name = "cv2.dnn.NMSBoxes per class"

        def opencv():
            return [i[cv2.dnn.NMSBoxes(xywh[i], scores[i], 0.0, iou_threshold)] for i in members]

    return {
        "yolo-cli batched_nms": (
            lambda: batched_nms(boxes, scores, classes, iou_threshold),
            np.asarray,
        ),
        "yolo-cli select (TF)": (lambda: [t.numpy() for t in compiled(*tf_inputs)], select_kept),
        "tf.image.nms per class": (tf_loop, np.concatenate),
        opencv_name: (opencv, lambda out: np.hstack(out).ravel()),
    }


def postprocess_methods(raw, anchors):
    """name → callable running decode + score threshold + NMS (+ box voting) on one raw grid,
    to numpy."""
    d = DEFAULTS
    signature = [tf.TensorSpec([None, GRID, GRID, d.num_anchors, 5 + NUM_CLASSES], tf.float32)]
    heads = [Head(DEFAULTS.stride, anchors)]

    def tf_path(box_vote: bool):
        @tf.function(input_signature=signature)
        def run(raw):
            boxes, p_c, probs = decode(raw, heads, IMG_SIZE)
            return select(boxes, p_c, probs, d.conf_threshold, d.nms_iou, d.max_det, box_vote)

        return lambda: [t.numpy() for t in run(raw)]

    def numpy_path(box_vote: bool):
        def run():
            boxes, p_c, probs = (t.numpy()[0] for t in decode(raw, heads, IMG_SIZE))
            thresholds = (d.conf_threshold, d.nms_iou, d.max_det, box_vote)
            return filter_detections(boxes, p_c, probs, *thresholds)

        return run

    return {
        "numpy: decode + filter_detections": numpy_path(False),
        "numpy: the same + box vote": numpy_path(True),
        "TF: decode + select": tf_path(False),
        "TF: the same + box vote": tf_path(True),
    }


def medians_ms(methods: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each method in ms; methods alternate run by run, after a warm-up."""
    for f in methods.values():
        f()
    times = {name: [] for name in methods}
    for _ in range(repeats):
        for name, f in methods.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def raw_grid(seed: int, all_above: bool):
    """A raw ``(1, 13, 13, 5, 8)`` grid: most cells empty (p_c logits ~ N(−3, 2)) or, for the
    worst case, every cell and anchor above the threshold."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 1, (1, GRID, GRID, DEFAULTS.num_anchors, 5 + NUM_CLASSES))
    raw[..., 0] = 3.0 if all_above else rng.normal(-3, 2, raw.shape[:-1])
    raw[..., 3:5] *= 0.5
    anchors = rng.uniform(20, 200, (DEFAULTS.num_anchors, 2)).astype(np.float32)
    return tf.constant(raw.astype(np.float32)), anchors


def nms_table(repeats: int) -> None:
    iou_threshold = DEFAULTS.nms_iou
    print(f"Per-class NMS, {NUM_CLASSES} classes, IoU {iou_threshold}, clustered boxes (ms)")
    rows = []
    for n in (1_000, 10_000):
        methods = nms_methods(*clustered_boxes(n), iou_threshold)
        kept = {name: np.sort(kept(run())) for name, (run, kept) in methods.items()}
        reference = kept["yolo-cli batched_nms"]
        for name, k in kept.items():
            if not np.array_equal(k, reference):
                raise SystemExit(f"{name} keeps {len(k)} boxes, batched_nms {len(reference)}")
        rows.append(
            (n, len(reference), medians_ms({m: r for m, (r, _) in methods.items()}, repeats))
        )
    names = list(rows[0][2])
    print(f"{'boxes':>6} {'kept':>5} " + " ".join(f"{name:>24}" for name in names))
    for n, k, ms in rows:
        print(f"{n:>6} {k:>5} " + " ".join(f"{ms[name]:>24.2f}" for name in names))

    print("\nSpeed-up: baseline ms / our ms (above 1: ours is faster)")
    ours, baselines = names[:2], names[2:]
    print(f"{'boxes':>6} {'ours':>22} " + " ".join(f"{'vs ' + b:>28}" for b in baselines))
    for n, _, ms in rows:
        for name in ours:
            print(
                f"{n:>6} {name:>22} " + " ".join(f"{ms[b] / ms[name]:>27.2f}×" for b in baselines)
            )


def postprocess_table(repeats: int) -> None:
    d = DEFAULTS
    print(
        f"Post-processing one {GRID}×{GRID}×{d.num_anchors} grid, {NUM_CLASSES} classes: decode + "
        f"score > {d.conf_threshold} + NMS {d.nms_iou} + max {d.max_det}, to numpy (goal < 2 ms)"
    )
    print(f"{'grid':<28} {'candidates':>10} {'kept':>5}  {'path':<34} {'ms':>6}")
    for label, all_above in (
        ("typical: most cells empty", False),
        ("worst: every box > p_c", True),
    ):
        raw, anchors = raw_grid(0, all_above)
        methods = postprocess_methods(raw, anchors)
        dets = methods["numpy: decode + filter_detections"]()
        for name in ("TF: decode + select", "TF: the same + box vote"):
            count = int(methods[name]()[3][0])
            if count != len(dets):
                raise SystemExit(f"{name} keeps {count} boxes, filter_detections {len(dets)}")
        candidates = int(
            (
                decode(raw, [Head(DEFAULTS.stride, anchors)], IMG_SIZE)[1].numpy()
                > d.conf_threshold
            ).sum()
        )
        for name, t in medians_ms(methods, repeats).items():
            goal = "" if t < 2.0 else "  over the goal"
            print(f"{label:<28} {candidates:>10} {len(dets):>5}  {name:<34} {t:>6.2f}{goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=101, help="timed runs per method")
    args = parser.parse_args()
    print(
        f"{datetime.date.today()}  {platform.machine()}, {os.cpu_count()} CPUs  "
        f"Python {platform.python_version()}  numpy {np.__version__}  TensorFlow {tf.__version__}  "
        f"OpenCV {cv2.__version__}  median of {args.repeats} runs (post-processing: "
        f"{args.repeats * 4})  load average {os.getloadavg()[0]:.1f} at start\n"
    )
    nms_table(args.repeats)
    print()
    postprocess_table(args.repeats * 4)
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
