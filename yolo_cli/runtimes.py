"""The runtimes that compute a model's raw grids: TensorFlow for ``.keras`` files and SavedModel
folders, LiteRT for ``.tflite`` files, ONNX Runtime (or OpenVINO) for ``.onnx`` files.

Every exported artifact carries the model's metadata inside it (:mod:`yolo_cli.export`): a
``yolo_cli`` metadata buffer in a ``.tflite`` flatbuffer, a ``yolo_cli`` entry of an ONNX model's
``metadata_props``, ``assets/yolo_cli.json`` in a SavedModel. :func:`read_meta` reads it without
building the model; :func:`load_runtime` opens a model and checks that its input and outputs are
the grids the metadata describes.

A runtime is called on a float32 batch ``(N, size, size, 3)`` RGB 0..255 and returns the raw grids
as numpy, one per head in ``meta.heads`` order, each ``(N, S_h, S_h, B_h, 5 + C)``: the same
contract as the Keras model (:func:`yolo_cli.modelfile.model_outputs`), so decoding and NMS stay
:mod:`yolo_cli.postprocess`'s for every runtime. LiteRT, ONNX Runtime and OpenVINO are optional
dependencies (``pip install 'yolo-cli[export]'``); a missing one is named in a one-line error.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from yolo_cli.config import LIMITS
from yolo_cli.errors import YoloError
from yolo_cli.modelfile import META_NAME, ModelMeta

EXTRA = "pip install 'yolo-cli[export]'"
TFLITE_META = "yolo_cli"  # name of the metadata buffer in a .tflite file
ONNX_META = "yolo_cli"  # key of the ONNX metadata_props entry
SAVED_MODEL_META = Path("assets") / META_NAME


def artifact_format(path: str | Path) -> str:
    """``keras``, ``tflite``, ``onnx`` or ``saved_model`` (a folder with ``saved_model.pb``)."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        raise YoloError(f"{path}: a folder without saved_model.pb, not a SavedModel")
    suffix = path.suffix.lower()
    if suffix in (".tflite", ".onnx"):
        return suffix[1:]
    return "keras"


def require(module: str, what: str):
    """Import an optional dependency; a missing one raises :class:`YoloError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise YoloError(f"{what} needs the {module.split('.')[0]} package: {EXTRA}") from None


def read_meta(path: str | Path) -> ModelMeta:
    """The metadata of any model: a ``.keras`` file, a ``.tflite`` or ``.onnx`` file, or a
    SavedModel folder exported by ``yolo export``. Raises :class:`YoloError` for a missing,
    oversized or foreign file."""
    from yolo_cli import modelfile

    path = Path(path)
    if not path.exists():
        raise YoloError(f"{path}: model file not found")
    fmt = artifact_format(path)
    if fmt == "keras":
        return modelfile.read_meta(path)
    if fmt == "saved_model":
        file = path / SAVED_MODEL_META
        if not file.is_file():
            raise YoloError(f"{path}: not a yolo-cli SavedModel (no {SAVED_MODEL_META} inside)")
        text = _bounded(file, LIMITS.model_json_bytes).decode("utf-8", "replace")
    elif fmt == "tflite":
        text = _tflite_meta(_bounded(path, LIMITS.model_bytes), path)
    else:
        text = _onnx_meta(path)
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise YoloError(f"{path}: corrupt model metadata ({e})") from None
    return ModelMeta.from_dict(raw, path)


def _bounded(path: Path, cap: int) -> bytes:
    size = path.stat().st_size
    if size > cap:
        raise YoloError(f"{path}: {size:,} bytes, over the {cap:,}-byte cap")
    return path.read_bytes()


def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def _tflite_meta(data: bytes, path: Path) -> str:
    """The ``yolo_cli`` metadata buffer of a ``.tflite`` flatbuffer, as text."""
    schema = _tflite_schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise YoloError(f"{path}: not a TFLite model (no TFL3 identifier)")
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == TFLITE_META.encode():
                return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode("utf-8")
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise YoloError(f"{path}: corrupt TFLite model ({type(e).__name__})") from None
    raise YoloError(
        f"{path}: not a yolo-cli model (no {TFLITE_META!r} metadata; `yolo export` one)"
    )


def _onnx_meta(path: Path) -> str:
    """The ``yolo_cli`` entry of an ONNX model's ``metadata_props``."""
    onnx = require("onnx", f"{path}: reading an ONNX model")
    size = path.stat().st_size
    if size > LIMITS.model_bytes:
        raise YoloError(f"{path}: {size:,} bytes, over the {LIMITS.model_bytes:,}-byte model cap")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends for a foreign file
        raise YoloError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    for prop in proto.metadata_props:
        if prop.key == ONNX_META:
            return prop.value
    raise YoloError(f"{path}: not a yolo-cli model (no {ONNX_META!r} metadata; `yolo export` one)")


def default_threads() -> int:
    """CPU threads a runtime uses unless told: every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_runtime(path: str | Path, engine: str | None = None, threads: int | None = None):
    """Open a model for inference → ``(model, meta)``.

    A ``.keras`` file gives its Keras model (:func:`yolo_cli.modelfile.load_model`); an
    exported artifact gives a runtime: ``.tflite`` → :class:`LiteRT`, ``.onnx`` →
    :class:`OnnxRuntime` (or :class:`OpenVINO` with ``engine="openvino"``), a SavedModel folder →
    :class:`SavedModel`. threads: CPU threads of LiteRT / ONNX Runtime / OpenVINO (default
    :func:`default_threads`). Raises :class:`YoloError` for a bad file, a runtime that is not
    installed, or a network whose input and outputs contradict the metadata.
    """
    from yolo_cli.modelfile import load_model

    path = Path(path)
    if not path.exists():
        raise YoloError(f"{path}: model file not found")
    fmt = artifact_format(path)
    meta = read_meta(path)
    if fmt == "keras":
        if engine not in (None, "tensorflow"):
            raise YoloError(f"{path}: a .keras model runs on TensorFlow, not {engine}")
        return load_model(path)[0], meta
    runtimes = {
        ("tflite", None): LiteRT,
        ("tflite", "litert"): LiteRT,
        ("onnx", None): OnnxRuntime,
        ("onnx", "onnxruntime"): OnnxRuntime,
        ("onnx", "openvino"): OpenVINO,
        ("saved_model", None): SavedModel,
        ("saved_model", "tensorflow"): SavedModel,
    }
    if (fmt, engine) not in runtimes:
        raise YoloError(f"{path}: a {fmt} model cannot run on {engine}")
    runtime = runtimes[fmt, engine](path, meta, threads or default_threads())
    return runtime, meta


def grid_shapes(meta: ModelMeta) -> list[tuple[int, int, int, int]]:
    """The raw grid shape of each head, without the batch: ``(S_h, S_h, B_h, 5 + C)``."""
    return [
        (h.grid(meta.img_size), h.grid(meta.img_size), len(h.anchors), 5 + meta.num_classes)
        for h in meta.heads
    ]


def head_order(shapes: list[tuple], meta: ModelMeta, path) -> list[int]:
    """Which output is each head's grid: outputs matched to heads by shape (without the batch),
    in order among equal shapes. Raises :class:`YoloError` when the outputs are not the grids."""
    want = grid_shapes(meta)
    free = list(range(len(shapes)))
    order = []
    for shape in want:
        match = next((j for j in free if tuple(shapes[j]) == shape), None)
        if match is None or len(shapes) != len(want):
            raise YoloError(
                f"{path}: outputs {[tuple(s) for s in shapes]} are not the grids {want} of "
                f"the metadata's {len(want)} heads"
            )
        free.remove(match)
        order.append(match)
    return order


def _check_input(shape, meta: ModelMeta, path) -> None:
    want = (meta.img_size, meta.img_size, 3)
    if tuple(shape) != want:
        raise YoloError(f"{path}: network input {tuple(shape)} differs from the metadata's {want}")


class LiteRT:
    """A ``.tflite`` model on the LiteRT interpreter (XNNPACK on CPU). The interpreter is sized
    for one batch size at a time and resized when a batch of another size comes."""

    name = "litert"

    def __init__(self, path: Path, meta: ModelMeta, threads: int):
        interpreter = require("ai_edge_litert.interpreter", f"{path}: running a .tflite model")
        try:
            self._interpreter = interpreter.Interpreter(str(path), num_threads=threads)
        except (ValueError, RuntimeError) as e:
            raise YoloError(f"{path}: cannot load TFLite model ({e})") from None
        self.meta, self.threads = meta, threads
        (inp,) = self._interpreter.get_input_details()
        _check_input(inp["shape_signature"][1:], meta, path)
        self._input = inp["index"]
        outputs = self._interpreter.get_output_details()
        order = head_order([o["shape_signature"][1:] for o in outputs], meta, path)
        self._outputs = [outputs[j]["index"] for j in order]
        self._batch = 0

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        images = np.ascontiguousarray(images, np.float32)
        if len(images) != self._batch:
            self._interpreter.resize_tensor_input(self._input, images.shape, strict=True)
            self._interpreter.allocate_tensors()
            self._batch = len(images)
        self._interpreter.set_tensor(self._input, images)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(i) for i in self._outputs]


class OnnxRuntime:
    """An ``.onnx`` model in an ONNX Runtime CPU session (all graph optimizations on)."""

    name = "onnxruntime"

    def __init__(self, path: Path, meta: ModelMeta, threads: int):
        ort = require("onnxruntime", f"{path}: running an .onnx model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise YoloError(f"{path}: cannot load ONNX model ({str(e).splitlines()[0]})") from None
        self.meta, self.threads = meta, threads
        (inp,) = self._session.get_inputs()
        _check_input(inp.shape[1:], meta, path)
        self._input = inp.name
        outputs = self._session.get_outputs()
        order = head_order([o.shape[1:] for o in outputs], meta, path)
        self._outputs = [outputs[j].name for j in order]

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        images = np.ascontiguousarray(images, np.float32)
        return self._session.run(self._outputs, {self._input: images})


class OpenVINO:
    """An ``.onnx`` model compiled by OpenVINO for the CPU (latency hint)."""

    name = "openvino"

    def __init__(self, path: Path, meta: ModelMeta, threads: int):
        ov = require("openvino", f"{path}: running a model on OpenVINO")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            self._compiled = core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": "f32",
                },
            )
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise YoloError(
                f"{path}: cannot compile for OpenVINO ({str(e).splitlines()[0]})"
            ) from None
        self.meta, self.threads = meta, threads
        (inp,) = self._compiled.inputs
        _check_input(tuple(d.get_length() for d in inp.get_partial_shape()[1:]), meta, path)
        outputs = list(self._compiled.outputs)
        shapes = [tuple(d.get_length() for d in o.get_partial_shape()[1:]) for o in outputs]
        self._outputs = [outputs[j] for j in head_order(shapes, meta, path)]
        self._request = self._compiled.create_infer_request()

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer([np.ascontiguousarray(images, np.float32)])
        return [np.asarray(result[o]) for o in self._outputs]


class SavedModel:
    """A SavedModel folder written by ``yolo export``, its ``serve`` endpoint (raw grids) run by
    TensorFlow. threads is accepted for the common signature; TensorFlow's own pools apply."""

    name = "tf-saved-model"

    def __init__(self, path: Path, meta: ModelMeta, threads: int):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as e:  # TF raises many types for a bad SavedModel
            raise YoloError(f"{path}: cannot load SavedModel ({str(e).splitlines()[0]})") from None
        if not hasattr(loaded, "serve"):
            raise YoloError(f"{path}: SavedModel has no 'serve' endpoint")
        self.meta, self.threads = meta, threads
        self._loaded = loaded
        spec = loaded.serve.input_signature[0]
        _check_input(spec.shape[1:], meta, path)
        grids = loaded.serve.get_concrete_function().structured_outputs
        grids = grids if isinstance(grids, list | tuple) else [grids]
        self._order = head_order([tuple(g.shape[1:]) for g in grids], meta, path)

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        out = self._loaded.serve(np.asarray(images, np.float32))
        out = out if isinstance(out, list | tuple) else [out]
        return [out[j].numpy() for j in self._order]
