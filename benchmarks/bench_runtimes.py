"""Which runtime detects fastest on this CPU, how close its model stage comes to the CPU's own
float32 matmul rate, and how it compares with ultralytics YOLOv8n — all measured in one run.

    .venv/bin/python benchmarks/bench_runtimes.py [--model synthetic] [--data BCCD] [--quick]
        [--v8-python /work/ref/v8/bin/python] [--v8-model yolov8n.yaml] [--v8-map 0.784]

1. End to end, per image, at batch 1 and batch 16 on the test split of ``--data`` (BCCD's 72
   test images by default): read the JPEG, letterbox (or stretch) to the model's input, run the
   model, decode + threshold + NMS, boxes back to the image's pixels — the library calls behind
   ``yolo detect`` (``read_image`` + ``Detector.detect``), for TensorFlow (the ``.keras`` model
   with BatchNorm kept and folded), LiteRT fp32 / fp16 / int8, ONNX Runtime and OpenVINO (when
   installed), each from an artifact ``yolo export`` writes into a temporary folder (int8
   calibrated on ``--calib-images`` of the train split). YOLOv8n runs in its own venv as a
   subprocess (``model.predict`` on the same files in batches: its own read, letterbox, model
   and NMS), once with its defaults and once with ``torch.set_num_threads(2)``. With no
   ``--v8-model`` it is ``yolov8n.yaml`` built untrained (timing needs no weights; its boxes
   are meaningless, so its mAP comes from ``--v8-map``).
2. Model stage: the network alone on already-resized float32 inputs at batch 1, as GFLOP/s
   (2 FLOPs per multiply-add, :func:`yolo_cli.summary.total_macs`; YOLOv8n's from ultralytics'
   own count and its ``inference`` time) next to this CPU's float32 ``tf.linalg.matmul``.
3. mAP@0.5 of each of our runtimes on the same images (conf 0.001, :func:`yolo_cli.metrics.evaluate`).
4. Where the time goes on the TensorFlow path at batch 1 and batch 16, per image: read,
   letterbox + batching, the first two conv blocks (the large, few-channel activations), the
   rest of the network, decode + NMS; with the size of the largest activation of each batch
   next to the CPU's last-level cache.

Every time is the best of ``--repeats`` passes over the images (the CPU is shared; the best
pass is the least disturbed). ``--quick``: 8 images, batches 1 and 4, one repeat — a smoke test,
not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

V8_PYTHON = "/work/ref/v8/bin/python"
V8_SCRIPT = r"""
import json, os, statistics, sys, time
os.environ["YOLO_OFFLINE"] = "1"
import torch
args = json.loads(sys.argv[1])
from ultralytics import YOLO
model = YOLO(args["model"])
paths, imgsz = args["images"], args["imgsz"]
predict = lambda chunk, b: model.predict(chunk, imgsz=imgsz, batch=b, device="cpu", verbose=False, save=False)
out = {"torch": torch.__version__}
for b in args["batches"]:
    predict(paths[:b], b)
    if args["threads"]:  # after the predictor's setup, whose select_device sets cpu_count - 1
        torch.set_num_threads(args["threads"])
    best, speeds = None, None
    for _ in range(args["repeats"]):
        start, seen = time.perf_counter(), []
        for i in range(0, len(paths), b):
            seen += [r.speed for r in predict(paths[i:i + b], b)]
        took = time.perf_counter() - start
        if best is None or took < best:
            best, speeds = took, seen
    out[str(b)] = {
        "ms_per_image": best / len(paths) * 1000,
        "inference_ms": statistics.mean(s["inference"] for s in speeds),
    }
out["threads"] = torch.get_num_threads()
try:
    from ultralytics.utils.torch_utils import get_flops
    out["gflops"] = get_flops(model.model, imgsz)
except Exception:
    out["gflops"] = None
print("V8JSON " + json.dumps(out))
"""


@dataclass
class Row:
    """One runtime: ms per image end to end by batch size, model-stage ms per image at batch 1,
    GFLOP/s of the model stage, mAP@0.5 (None where not measured)."""

    name: str
    threads: int
    end_to_end: dict[int, float] = field(default_factory=dict)
    model_ms: float | None = None
    gflops: float | None = None
    map50: float | None = None


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an ``n × n`` float32 ``tf.linalg.matmul`` (2n³ FLOPs), best of repeats."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n), np.float32))
    b = tf.constant(rng.standard_normal((n, n), np.float32))
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    seconds = best_time(lambda: product().numpy(), repeats)
    return 2 * n**3 / seconds / 1e9


def end_to_end(detector, paths: list[Path], batch: int, repeats: int) -> float:
    """ms per image of read + detect over ``paths`` in batches of ``batch``."""
    from yolo_cli.data.image import read_image

    def run():
        for i in range(0, len(paths), batch):
            detector.detect([read_image(p) for p in paths[i : i + batch]])

    return best_time(run, repeats) / len(paths) * 1000


def model_stage(detector, folded: bool, inputs: np.ndarray, repeats: int):
    """The network alone on resized inputs, one image at a time → ms per image."""
    import tensorflow as tf

    from yolo_cli.inference import fold_batchnorm
    from yolo_cli.modelfile import model_outputs

    if detector.model is not None:
        graph = fold_batchnorm(detector.model) if folded else detector.model
        size = detector.meta.img_size
        spec = [tf.TensorSpec((None, size, size, 3), tf.float32)]
        fn = tf.function(lambda x: model_outputs(graph, x), input_signature=spec)

        def one(x):
            return [o.numpy() for o in fn(x)]
    else:
        one = detector.engine

    def run():
        for x in inputs:
            one(x[None])

    return best_time(run, repeats) / len(inputs) * 1000


def map50(detector, paths, dataset) -> float:
    """mAP@0.5 of ``detector`` (its thresholds) on the dataset's samples at ``paths``."""
    from yolo_cli.data.image import read_image
    from yolo_cli.metrics import evaluate

    detections = []
    for i in range(0, len(paths), 16):
        detections += detector.detect([read_image(p) for p in paths[i : i + 16]])
    truth = [(s.boxes, s.classes) for s in dataset.samples[: len(paths)]]
    return evaluate(truth, detections, len(dataset.names), names=dataset.names).map


def export_all(model: str, data: str, out: Path, calib_images: int, img_size, log) -> dict:
    """Our artifacts of ``model`` in ``out``: name → path."""
    from yolo_cli.export import ExportOptions, export_model

    jobs = {
        "LiteRT fp32": ExportOptions(model, "tflite", out=str(out / "m.tflite")),
        "LiteRT fp16": ExportOptions(model, "tflite", half=True, out=str(out / "m_fp16.tflite")),
        "LiteRT int8": ExportOptions(
            model,
            "tflite",
            int8_data=data,
            calib_images=calib_images,
            out=str(out / "m_int8.tflite"),
        ),
        "ONNX Runtime fp32": ExportOptions(model, "onnx", out=str(out / "m.onnx")),
    }
    paths = {}
    for name, options in jobs.items():
        options.img_size = img_size
        log(f"exporting {name}")
        paths[name] = export_model(options)[0]
    return paths


def open_detectors(model: str, exported: dict, img_size, threads: int, conf: float):
    """name → (Detector, BatchNorm folded) for every runtime we time (OpenVINO when it is
    installed), the Keras model and its metadata."""
    import importlib.util
    from dataclasses import replace

    from yolo_cli.inference import Detector, Thresholds
    from yolo_cli.modelfile import load_model, model_path
    from yolo_cli.runtimes import load_runtime

    thresholds = Thresholds(conf=conf)
    keras_model, meta = load_model(model_path(model))
    if img_size and img_size != meta.img_size:
        from yolo_cli.model import resized_model

        keras_model = resized_model(keras_model, meta, img_size, model)
        meta = replace(meta, img_size=img_size)
    detectors = {}
    for name, fold in (("TF, BatchNorm kept", False), ("TF, BatchNorm folded", True)):
        detectors[name] = Detector(keras_model, meta, thresholds, fold_bn=fold), fold
    engines = [(name, path, None) for name, path in exported.items()]
    if importlib.util.find_spec("openvino") is not None:
        engines.append(("OpenVINO fp32", exported["ONNX Runtime fp32"], "openvino"))
    for name, path, engine in engines:
        runtime, meta_rt = load_runtime(path, engine=engine, threads=threads)
        detectors[name] = Detector(runtime, meta_rt, thresholds), True
    return detectors, keras_model, meta


def run_v8(python: str, model: str, paths, imgsz: int, batches, repeats: int, threads: int):
    """YOLOv8n's timings from its own venv (a subprocess), or None with the reason printed."""
    args = {
        "model": model,
        "images": [str(Path(p).resolve()) for p in paths],
        "imgsz": imgsz,
        "batches": list(batches),
        "repeats": repeats,
        "threads": threads,
    }
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    try:
        done = subprocess.run(
            [python, "-c", V8_SCRIPT, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=3600,
            env=env,
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"YOLOv8n not run: {e}", file=sys.stderr)
        return None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("V8JSON ")]
    if done.returncode or not lines:
        print(f"YOLOv8n failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("V8JSON ") :])


def where_time_goes(keras_model, meta, paths, batches, repeats: int) -> list[dict]:
    """Per-image ms of each stage of the TF path (BatchNorm folded) at each batch size."""
    import keras
    import tensorflow as tf

    from yolo_cli.config import DEFAULTS
    from yolo_cli.data.image import read_image
    from yolo_cli.inference import fold_batchnorm
    from yolo_cli.modelfile import model_outputs
    from yolo_cli.postprocess import decode, select

    graph = fold_batchnorm(keras_model)
    names = [layer.name for layer in graph.layers]
    cut = "block2_pool" if "block2_pool" in names else None
    size = meta.img_size
    spec = [tf.TensorSpec((None, size, size, 3), tf.float32)]
    whole = tf.function(lambda x: model_outputs(graph, x), input_signature=spec)
    first = rest = None
    if cut is not None:
        head = keras.Model(graph.input, graph.get_layer(cut).output)
        tail_in = keras.Input(graph.get_layer(cut).output.shape[1:])
        first = tf.function(lambda x: head(x), input_signature=spec)
        rest = _tail(graph, cut, tail_in)
    grids = [
        tf.TensorSpec((None, h.grid(size), h.grid(size), len(h.anchors), 5 + meta.num_classes))
        for h in meta.heads
    ]

    d = DEFAULTS

    @tf.function(input_signature=grids)
    def post(*raws):
        boxes, p_c, probs = decode(list(raws), meta.heads, size, meta.class_activation)
        return select(boxes, p_c, probs, d.conf_threshold, d.nms_iou, d.max_det)

    images = [read_image(p) for p in paths]
    stages = Stages(graph, meta, whole, first, rest, post)
    return [stages.at(b, paths, images, repeats) for b in batches]


@dataclass
class Stages:
    """The TF path cut into stages: the whole network, its first two blocks and the rest
    (``None`` for a network without ``block2_pool``), decode + NMS."""

    graph: object
    meta: object
    whole: Callable
    first: Callable | None
    rest: Callable | None
    post: Callable

    def at(self, b: int, paths, images, repeats: int) -> dict:
        """ms per image of each stage at batch ``b`` (whole batches only)."""
        from yolo_cli.boxes import resize_image
        from yolo_cli.data.image import read_image

        n = len(paths) - len(paths) % b or len(paths)
        chunks = [range(i, min(i + b, n)) for i in range(0, n, b)]
        size, resize = self.meta.img_size, self.meta.resize

        def per_image(fn):
            return best_time(lambda: [fn(k) for k in range(len(chunks))], repeats) / n * 1000

        def batch_input(k):
            picked = [resize_image(images[i], size, resize)[0] for i in chunks[k]]
            return np.stack(picked).astype(np.float32)

        inputs = [batch_input(k) for k in range(len(chunks))]
        raws = [[r.numpy() for r in self.whole(x)] for x in inputs]
        row = {
            "batch": b,
            "read": per_image(lambda k: [read_image(paths[i]) for i in chunks[k]]),
            "letterbox + batch": per_image(batch_input),
            "model": per_image(lambda k: [o.numpy() for o in self.whole(inputs[k])]),
            "decode + NMS": per_image(lambda k: [o.numpy() for o in self.post(*raws[k])]),
        }
        if self.first is not None:
            mids = [self.first(x) for x in inputs]
            row["first two blocks"] = per_image(lambda k: self.first(inputs[k]).numpy())
            row["rest of network"] = per_image(lambda k: [o.numpy() for o in self.rest(mids[k])])
        largest = max(int(np.prod(layer.output.shape[1:])) for layer in self.graph.layers)
        row["largest activation MB"] = largest * 4 * b / 1e6
        return row


def _tail(graph, cut: str, tail_in):
    """The layers after ``cut`` as a function of ``cut``'s output (a chain model's tail)."""
    import keras
    import tensorflow as tf

    from yolo_cli.modelfile import model_outputs

    tail = keras.Model(graph.get_layer(cut).output, graph.outputs)
    spec = [tf.TensorSpec((None, *tail_in.shape[1:]), tf.float32)]
    return tf.function(lambda x: model_outputs(tail, x), input_signature=spec)


def cache_mb() -> float | None:
    """This CPU's last-level cache in MB (Linux sysfs; None where it cannot say)."""
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"))
    if not caches:
        return None
    text = caches[-1].read_text().strip()
    scale = {"K": 1024, "M": 1024**2}.get(text[-1:], 1)
    return float(text.rstrip("KM")) * scale / 1e6


def main(argv=None) -> None:
    from yolo_cli.config import DEFAULTS, datasets_root
    from yolo_cli.data.load import load_dataset
    from yolo_cli.runtimes import default_threads
    from yolo_cli.summary import total_macs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="synthetic", help="our model (path or shipped name)")
    p.add_argument("--data", default=str(datasets_root() / "bccd"))
    p.add_argument("--split", default="test")
    p.add_argument("--img-size", type=int, help="our input side (default: the model's own)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calib-images", type=int, default=100)
    p.add_argument(
        "--conf", type=float, default=DEFAULTS.conf_threshold, help="timing threshold (detect's)"
    )
    p.add_argument("--v8-python", default=V8_PYTHON)
    p.add_argument("--v8-model", default="yolov8n.yaml", help="a .pt, or the untrained yaml")
    p.add_argument("--v8-imgsz", type=int, default=DEFAULTS.img_size)
    p.add_argument(
        "--v8-map", default="0.784", help="YOLOv8n's mAP@0.5: a number or a file holding one"
    )
    p.add_argument("--no-v8", action="store_true")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--quick", action="store_true", help="8 images, batches 1 and 4, one repeat")
    args = p.parse_args(argv)

    batches = (1, 4) if args.quick else (1, 16)
    repeats = 1 if args.quick else args.repeats
    dataset = load_dataset(args.data, args.split)
    if args.quick:
        dataset.samples = dataset.samples[:8]
    paths = [s.image for s in dataset.samples]
    threads = default_threads()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    log(f"{len(paths)} images of {args.data} ({args.split}); {threads} threads")

    peak = matmul_gflops(1024 if args.quick else 2048, 3 if args.quick else 10)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_all(
            args.model,
            args.data,
            Path(tmp),
            8 if args.quick else args.calib_images,
            args.img_size,
            log,
        )
        detectors, keras_model, meta = open_detectors(
            args.model, exported, args.img_size, threads, args.conf
        )
        macs = total_macs(keras_model)
        from yolo_cli.boxes import resize_image
        from yolo_cli.data.image import read_image

        inputs = np.stack(
            [resize_image(read_image(p), meta.img_size, meta.resize)[0] for p in paths[:16]]
        ).astype(np.float32)
        for name, (detector, folded) in detectors.items():
            log(f"timing {name}")
            row = Row(name, threads)
            for b in batches:
                row.end_to_end[b] = end_to_end(detector, paths, b, repeats)
            row.model_ms = model_stage(detector, folded, inputs, repeats)
            row.gflops = 2 * macs / row.model_ms / 1e6
            from yolo_cli.inference import Detector, Thresholds

            scoring = Detector(
                detector.engine or detector.model,
                detector.meta,
                Thresholds(conf=DEFAULTS.eval_conf),
                fold_bn=folded,
            )
            row.map50 = map50(scoring, paths, dataset)
            rows.append(row)
        log("where the time goes (TF)")
        stages = where_time_goes(keras_model, meta, paths, batches, repeats)

    v8 = {}
    if not args.no_v8:
        for label, t in (("defaults", 0), ("2 threads", 2)):
            log(f"timing YOLOv8n ({label})")
            result = run_v8(
                args.v8_python, args.v8_model, paths, args.v8_imgsz, batches, repeats, t
            )
            if result:
                v8[label] = result
    v8_map = _number_or_file(args.v8_map)
    report(args, rows, v8, v8_map, peak, macs, meta, stages, batches, len(paths))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": [r.__dict__ for r in rows],
                    "v8": v8,
                    "matmul_gflops": peak,
                    "stages": stages,
                    "macs": macs,
                },
                indent=1,
            )
        )


def _number_or_file(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    path = Path(value)
    return float(path.read_text().split()[0]) if path.is_file() else None


def report(args, rows, v8, v8_map, peak, macs, meta, stages, batches, n) -> None:
    b1, bn = batches
    mode = "QUICK SMOKE RUN (not a measurement)" if args.quick else "measured"
    print(f"# bench_runtimes — {mode}")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {n} images of "
        f"{args.data} ({args.split}); ours: {args.model} at {meta.img_size} px ({meta.resize}), "
        f"{macs / 1e9:.3f} G multiply-adds/image; YOLOv8n: {args.v8_model} at {args.v8_imgsz} px"
    )
    print(f"float32 matmul on this CPU: {peak:.1f} GFLOP/s\n")
    v8_ref = v8.get("2 threads", {}).get(str(b1), {}).get("ms_per_image")
    print(
        f"| runtime | threads | batch {b1} ms/img | batch {bn} ms/img | images/s (b{b1}) | "
        f"× YOLOv8n 2 threads (b{b1}) | model stage ms | GFLOP/s | % of matmul | mAP@0.5 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{v8_ref / r.end_to_end[b1]:.2f}" if v8_ref else "–"
        share = "int8 ops" if "int8" in r.name else f"{100 * r.gflops / peak:.0f} %"
        print(
            f"| {r.name} | {r.threads} | {r.end_to_end[b1]:.1f} | {r.end_to_end[bn]:.1f} | "
            f"{1000 / r.end_to_end[b1]:.1f} | {ratio} | {r.model_ms:.1f} | {r.gflops:.1f} | "
            f"{share} | {r.map50:.3f} |"
        )
    for label, result in v8.items():
        e1, e2 = result[str(b1)]["ms_per_image"], result[str(bn)]["ms_per_image"]
        inference = result[str(b1)]["inference_ms"]
        gflops = result.get("gflops")
        rate = gflops / inference * 1000 if gflops else None
        ratio = f"{v8_ref / e1:.2f}" if v8_ref else "–"
        print(
            f"| YOLOv8n ({label}) | {result['threads']} | {e1:.1f} | {e2:.1f} | {1000 / e1:.1f} | "
            f"{ratio} | {inference:.1f} | {rate or float('nan'):.1f} | "
            f"{100 * rate / peak if rate else float('nan'):.0f} % | "
            f"{v8_map if v8_map is not None else float('nan'):.3f} (given) |"
        )
    if rows and v8_ref:
        fastest = min(rows, key=lambda r: r.end_to_end[b1])
        floats = [r for r in rows if "int8" not in r.name]
        best_float = max(floats, key=lambda r: r.gflops)
        print(
            f"\nfastest of ours at batch {b1}: {fastest.name}, {1000 / fastest.end_to_end[b1]:.1f} "
            f"images/s = {v8_ref / fastest.end_to_end[b1]:.2f}× YOLOv8n with 2 threads (goal ≥ 3× "
            f"at ≥ its mAP: {fastest.map50:.3f} vs {v8_map}); best float32 model stage: "
            f"{best_float.name}, {100 * best_float.gflops / peak:.0f} % of matmul (goal ≥ 50 %)"
        )
    print("\nWhere the time goes, TensorFlow path (BatchNorm folded), ms per image:")
    keys = [k for k in stages[0] if k != "batch"]
    print("| batch | " + " | ".join(keys) + " |")
    print("|---:|" + "---:|" * len(keys))
    for s in stages:
        print(f"| {s['batch']} | " + " | ".join(f"{s[k]:.2f}" for k in keys) + " |")
    llc = cache_mb()
    if llc:
        print(f"(last-level cache: {llc:.0f} MB)")


if __name__ == "__main__":
    main()
