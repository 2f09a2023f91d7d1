"""``yolo export``: a model file → a self-describing SavedModel folder, ``.tflite`` or ``.onnx``.

The exported network is the inference graph: BatchNorm folded into the convolutions
(:func:`yolo_cli.inference.fold_batchnorm`), input ``(batch, size, size, 3)`` float32 RGB 0..255,
outputs the raw grids, one per head. The model's metadata (class names, heads with strides and
anchors, input size, resize mode, class activation; plus ``extra["export"]``: format, precision,
source file, multiply-adds) travels inside the artifact:

- SavedModel: ``assets/yolo_cli.json``; endpoints ``serve`` (raw grids, the first and so the
  ``serving_default`` signature), ``detect`` (a uint8 image batch → final detections: decode,
  score threshold, per-class NMS inside) and ``detect_float`` (the same for float32 0..255);
- LiteRT: a ``yolo_cli`` metadata buffer in the flatbuffer (``--half``: float16 weights;
  ``--int8``: int8 weights and activations calibrated on training images, float input/output);
- ONNX: a ``yolo_cli`` entry of ``metadata_props`` (``--half``: float16 weights and compute,
  float32 input/output).

Keras 3's ``model.export`` writes the LiteRT and ONNX files; the SavedModel is its
``ExportArchive`` with the extra endpoints and the asset.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from yolo_cli import __version__
from yolo_cli.config import DEFAULTS, EXPORT_FORMATS, LIMITS
from yolo_cli.errors import YoloError
from yolo_cli.modelfile import META_NAME, ModelMeta

FORMATS = EXPORT_FORMATS
_SUFFIX = {"saved_model": "_saved_model", "tflite": ".tflite", "onnx": ".onnx"}


@dataclass
class ExportOptions:
    """What ``yolo export`` was asked. model: a model file or a shipped model's short name.
    fmt: one of :data:`FORMATS`. half: float16 weights (tflite, onnx). int8_data: a dataset
    whose train split calibrates int8 (tflite). out: the artifact's path (default
    :func:`default_out`). img_size: input side of the artifact (default: the model's own).
    calib_images: training images the int8 calibration runs. conf, nms_iou, max_det, box_vote:
    the thresholds and box voting of a SavedModel's ``detect`` endpoints."""

    model: str | None
    fmt: str
    half: bool = False
    int8_data: str | None = None
    out: str | None = None
    img_size: int | None = None
    calib_images: int = DEFAULTS.calib_images
    conf: float = DEFAULTS.conf_threshold
    nms_iou: float = DEFAULTS.nms_iou
    max_det: int = DEFAULTS.max_det
    box_vote: bool = DEFAULTS.box_vote


def precision(options: ExportOptions) -> str:
    """``fp32``, ``fp16`` (``--half``) or ``int8`` (``--int8``)."""
    return "int8" if options.int8_data else "fp16" if options.half else "fp32"


def default_out(source: Path, fmt: str, prec: str) -> Path:
    """``models/default.keras`` → ``default.tflite``, ``default_fp16.tflite``,
    ``default_int8.tflite``, ``default.onnx``, ``default_saved_model/`` in the current folder."""
    tag = "" if prec == "fp32" else f"_{prec}"
    return Path(f"{source.stem}{tag}{_SUFFIX[fmt]}")


def check_options(options: ExportOptions) -> None:
    """Refuse thresholds out of range and combinations no format supports; raises
    :class:`YoloError`."""
    if options.fmt not in FORMATS:
        raise YoloError(f"--format {options.fmt!r}: expected one of {', '.join(FORMATS)}")
    LIMITS.score.check("--conf", options.conf)
    LIMITS.score.check("--nms-iou", options.nms_iou)
    if options.half and options.int8_data:
        raise YoloError("--half and --int8: choose one precision")
    if options.half and options.fmt == "saved_model":
        raise YoloError("--half applies to tflite and onnx; a SavedModel is exported in float32")
    if options.int8_data and options.fmt != "tflite":
        raise YoloError("--int8 applies to --format tflite")


def export_model(
    options: ExportOptions, on_step: Callable[[str], None] | None = None
) -> tuple[Path, ModelMeta]:
    """Write the artifact ``options`` ask for → ``(its path, the metadata it carries)``.

    on_step: receives a short line per stage (loading, calibrating, converting). Raises
    :class:`YoloError` for a bad model, option or dataset, or a missing optional dependency.
    """
    from yolo_cli.fileio import check_writable
    from yolo_cli.inference import fold_batchnorm
    from yolo_cli.modelfile import load_model, model_path
    from yolo_cli.summary import total_macs

    step = on_step or (lambda line: None)
    check_options(options)
    source = model_path(options.model)
    model, meta = load_model(source)
    if meta.kind != "yolo":
        raise YoloError(f"{source}: a {meta.kind!r} model; only YOLO detectors export")
    if options.img_size is not None and options.img_size != meta.img_size:
        from yolo_cli.model import resized_model

        model = resized_model(model, meta, options.img_size, source)
        meta = replace(meta, img_size=options.img_size)
    graph = fold_batchnorm(model)
    prec = precision(options)
    record = {
        "format": options.fmt,
        "precision": prec,
        "source": source.name,
        "macs": total_macs(model),
        "yolo_cli": __version__,
    }
    if options.fmt == "saved_model":
        record["detect"] = {
            "conf": options.conf,
            "nms_iou": options.nms_iou,
            "box_vote": options.box_vote,
            "max_det": options.max_det,
        }
    if options.int8_data:
        record["calibration"] = {"data": str(options.int8_data), "split": "train"}
    meta = replace(meta, extra={**meta.extra, "export": record})
    meta.validate(source)
    out = Path(options.out) if options.out else default_out(source, options.fmt, prec)
    suffix = out.suffix.lower()
    if options.fmt == "saved_model" and suffix in (".keras", ".tflite", ".onnx"):
        raise YoloError(f"{out}: saved_model exports are folders, not {suffix} files")
    if options.fmt != "saved_model" and suffix != _SUFFIX[options.fmt]:
        raise YoloError(f"{out}: {options.fmt} exports end in {_SUFFIX[options.fmt]}")
    check_writable(out, folder=options.fmt == "saved_model")
    step(f"exporting {source} ({prec}, input {meta.img_size}) to {out}")
    if options.fmt == "saved_model":
        write_saved_model(graph, meta, out, options)
    elif options.fmt == "tflite":
        calibration = None
        if options.int8_data:
            images = calibration_images(options.int8_data, meta, options.calib_images)
            record["calibration"]["images"] = len(images)
            step(f"calibrating int8 on {len(images)} train images of {options.int8_data}")
            calibration = images
        write_tflite(graph, meta, out, prec, calibration)
    else:
        write_onnx(graph, meta, out, prec)
    return out, meta


def calibration_images(data: str, meta: ModelMeta, n: int) -> np.ndarray:
    """Up to ``n`` images of ``data``'s train split, resized as the model resizes →
    ``(n, size, size, 3)`` float32, evenly spread over the split."""
    from yolo_cli.boxes import resize_image
    from yolo_cli.data.image import read_image
    from yolo_cli.data.load import load_dataset

    dataset = load_dataset(data, "train")
    samples = dataset.samples
    picks = np.unique(np.linspace(0, len(samples) - 1, min(n, len(samples))).astype(int))
    images = []
    for i in picks:
        try:
            image = read_image(samples[i].image)
        except YoloError:
            continue
        images.append(resize_image(image, meta.img_size, meta.resize)[0])
    if not images:
        raise YoloError(f"{data}: no readable train image to calibrate int8 on")
    return np.stack(images).astype(np.float32)


def _input_spec(meta: ModelMeta, dtype):
    import tensorflow as tf

    return tf.TensorSpec((None, meta.img_size, meta.img_size, 3), dtype, name="images")


def write_saved_model(graph, meta: ModelMeta, out: Path, options: ExportOptions) -> None:
    """A SavedModel folder: ``serve`` (raw grids), ``detect`` (uint8 batch) and
    ``detect_float`` (float32 batch) → ``boxes (N, max_det, 4)`` xyxy model-input pixels,
    ``scores``, ``classes`` int32, ``count`` (rows past ``count`` are zeros); the metadata in
    ``assets/yolo_cli.json``. An existing folder at ``out`` is replaced."""
    import keras
    import tensorflow as tf

    from yolo_cli.fileio import atomic_path
    from yolo_cli.modelfile import model_outputs
    from yolo_cli.postprocess import decode, select

    def detections(images):
        raws = model_outputs(graph, tf.cast(images, tf.float32))
        boxes, p_c, probs = decode(raws, meta.heads, meta.img_size, meta.class_activation)
        boxes, scores, classes, count = select(
            boxes, p_c, probs, options.conf, options.nms_iou, options.max_det, options.box_vote
        )
        return {"boxes": boxes, "scores": scores, "classes": classes, "count": count}

    if out.is_file():
        raise YoloError(f"{out}: a file is in the way of the SavedModel folder")
    with tempfile.TemporaryDirectory() as tmp, atomic_path(out, replace_folder=True) as target:
        (Path(tmp) / META_NAME).write_text(meta.to_json())
        archive = keras.export.ExportArchive()
        archive.track(graph)
        # ExportArchive.track keeps only lookup-table resources, so the asset goes on the root
        # object it saves, where tf.saved_model copies it into assets/
        archive._tf_trackable.yolo_cli_metadata = tf.saved_model.Asset(str(Path(tmp) / META_NAME))
        archive.add_endpoint(
            "serve", lambda images: graph(images, training=False), [_input_spec(meta, tf.float32)]
        )
        archive.add_endpoint("detect", detections, [_input_spec(meta, tf.uint8)])
        archive.add_endpoint("detect_float", detections, [_input_spec(meta, tf.float32)])
        archive.write_out(str(target), verbose=False)
        if not (target / "assets" / META_NAME).is_file():
            raise YoloError(f"{out}: the metadata asset was not written")


def write_tflite(graph, meta: ModelMeta, out: Path, prec: str, calibration=None) -> None:
    """A ``.tflite`` flatbuffer (builtin ops only) with the metadata buffer ``yolo_cli``.
    fp16: float16 weights (dequantized at load by XNNPACK); int8: weights and activations int8,
    ranges from ``calibration`` ``(n, size, size, 3)`` float32, input and output float32."""
    import tensorflow as tf

    from yolo_cli.fileio import atomic_path, write_atomic

    kwargs: dict = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if prec == "fp16":
        kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
        kwargs["target_spec"]["supported_types"] = [tf.float16]
    elif prec == "int8":
        kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
        kwargs["representative_dataset"] = _representative(calibration)
        kwargs["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with atomic_path(out, suffix=".tflite") as tmp:
        try:
            graph.export(
                str(tmp),
                format="litert",
                verbose=False,
                input_signature=[_input_spec(meta, tf.float32)],
                **kwargs,
            )
        except Exception as e:  # the converter's errors are long; the first line says it
            raise YoloError(f"{out}: TFLite conversion failed ({str(e).splitlines()[0]})") from None
        data = add_tflite_metadata(tmp.read_bytes(), meta.to_json().encode())
    write_atomic(out, data)


def _representative(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def batches():
        for image in images:
            yield [image[None]]

    return batches


def add_tflite_metadata(flatbuffer: bytes, payload: bytes) -> bytes:
    """``flatbuffer`` with a ``yolo_cli`` metadata entry pointing at a new buffer of
    ``payload`` (any earlier ``yolo_cli`` entry is replaced)."""
    import flatbuffers

    from yolo_cli.runtimes import TFLITE_META, _tflite_schema

    schema = _tflite_schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = TFLITE_META
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != TFLITE_META.encode()]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_onnx(graph, meta: ModelMeta, out: Path, prec: str) -> None:
    """An ``.onnx`` model (tf2onnx through Keras) with the metadata in ``metadata_props``;
    fp16: float16 weights and compute, float32 input and output."""
    import tensorflow as tf

    from yolo_cli.fileio import atomic_path
    from yolo_cli.runtimes import ONNX_META, require

    onnx = require("onnx", "--format onnx")
    require("tf2onnx", "--format onnx")
    with atomic_path(out, suffix=".onnx") as tmp:
        try:
            with warnings.catch_warnings():
                # Keras's tf2onnx patch probes np.object; numpy 2 answers with a FutureWarning
                warnings.simplefilter("ignore", FutureWarning)
                graph.export(
                    str(tmp),
                    format="onnx",
                    verbose=False,
                    input_signature=[_input_spec(meta, tf.float32)],
                )
        except Exception as e:  # tf2onnx's errors are long; the first line says it
            raise YoloError(f"{out}: ONNX conversion failed ({str(e).splitlines()[0]})") from None
        proto = onnx.load(str(tmp))
        if prec == "fp16":
            float16 = require("onnxruntime.transformers.float16", "--format onnx --half")
            proto = float16.convert_float_to_float16(proto, keep_io_types=True)
        del proto.metadata_props[:]
        proto.metadata_props.add(key=ONNX_META, value=meta.to_json())
        proto.producer_name = "yolo-cli"
        proto.producer_version = __version__
        onnx.save(proto, str(tmp))


def describe(path: Path, meta: ModelMeta) -> str:
    """One line on what was written: path, size, precision, input, classes, heads."""
    record = meta.extra.get("export", {})
    size = (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else path.stat().st_size
    )
    heads = ", ".join(f"stride {h.stride} × {len(h.anchors)} anchors" for h in meta.heads)
    return (
        f"wrote {path} ({size / 1e6:.1f} MB, {record.get('format')} {record.get('precision')}): "
        f"input {meta.img_size}×{meta.img_size} {meta.resize}, {meta.num_classes} classes "
        f"({', '.join(meta.names)}), {meta.class_activation}, heads: {heads}"
    )
