"""yolo-cli: train, run and evaluate a Keras 3 YOLO object detector from the command line.

The same work from Python (each name is imported on first use, so ``import yolo_cli`` and
``yolo --help`` stay light)::

    from yolo_cli import Detector
    detector = Detector.from_file("synthetic")   # a .keras / .tflite / .onnx / SavedModel path
    detections = detector(image)                  # (H, W, 3) uint8 RGB → boxes, scores, classes

- :class:`Detector`, :class:`Thresholds`, :class:`Detections`: detection on NumPy images
  (:mod:`yolo_cli.inference`); ``Detections.boxes`` are ``(N, 4)`` xyxy pixels of the image.
- :func:`load_model` → ``(keras.Model, ModelMeta)``; :func:`read_meta`: class names, heads,
  input size of any model file or exported artifact.
- :func:`train_model` with a :class:`TrainConfig` (``yolo train``).
- :func:`evaluate_model` with :class:`EvalOptions` (``yolo eval``: a model on a dataset,
  writes metrics.json); :func:`evaluate_detections`: AP / mAP of detections you hold
  against ground truth (:func:`yolo_cli.metrics.evaluate`).
- :func:`export_model` with :class:`ExportOptions` (``yolo export``).
- :func:`load_dataset`: a VOC, COCO or YOLO txt dataset.
- :class:`YoloError`: every error a user can cause.
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ log lines (CUDA probes, CPU feature notes) are noise on a user's terminal.
# Those its libraries print while loading, before they read this, the CLI filters to the same
# level (yolo_cli.nativelog); `yolo --debug` shows them all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow turns oneDNN on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on
# AVX2 CPUs it trains this network 1.5× faster and detects batches 1.4× faster, single images
# 1.3× slower (benchmarks/bench_onednn.py). TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's choice.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# public name → (module, attribute); names differ from the submodules (yolo_cli.train, …)
_API = {
    "Detector": ("yolo_cli.inference", "Detector"),
    "Thresholds": ("yolo_cli.inference", "Thresholds"),
    "Detections": ("yolo_cli.postprocess", "Detections"),
    "load_model": ("yolo_cli.modelfile", "load_model"),
    "read_meta": ("yolo_cli.modelfile", "read_meta"),
    "ModelMeta": ("yolo_cli.modelfile", "ModelMeta"),
    "train_model": ("yolo_cli.train", "train"),
    "TrainConfig": ("yolo_cli.train", "TrainConfig"),
    "evaluate_model": ("yolo_cli.evaluate", "run_eval"),
    "EvalOptions": ("yolo_cli.evaluate", "EvalOptions"),
    "evaluate_detections": ("yolo_cli.metrics", "evaluate"),
    "export_model": ("yolo_cli.export", "export_model"),
    "ExportOptions": ("yolo_cli.export", "ExportOptions"),
    "load_dataset": ("yolo_cli.data.load", "load_dataset"),
    "YoloError": ("yolo_cli.errors", "YoloError"),
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'yolo_cli' has no attribute {name!r}")
    import importlib

    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
