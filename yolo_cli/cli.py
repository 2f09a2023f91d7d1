"""The ``yolo`` command, also installed as ``yolo-cli`` (ultralytics installs a ``yolo`` too): a
click group whose subcommands parse options and call one library function each. Library modules
(and TensorFlow) are imported inside the commands so that ``yolo --help`` stays fast.

One spelling per idea in every command (tests/test_cli_consistency.py keeps the table): a
dataset read is ``--data``, a model ``--model`` (a file or a shipped model's name), a path
written ``--out``, the input side ``--img-size``. Older spellings and ultralytics' are accepted
without showing in ``--help``: options' ``aliases`` and :class:`_Positional` arguments.
``--debug`` and ``--quiet`` go before or after the subcommand's name."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import warnings

import click

from yolo_cli import __version__
from yolo_cli.baselines.detector import METHODS
from yolo_cli.config import (
    DARKNET_CONF,
    DATASET_FORMATS,
    DEFAULTS,
    DETECT_MODEL,
    EVAL_MODEL,
    EXPORT_FORMATS,
    LIMITS,
    MODELS_DIR,
    SHIPPED_MODELS,
    Range,
    max_pixels,
)
from yolo_cli.device import STRATEGIES
from yolo_cli.errors import YoloError
from yolo_cli.loss import LOSSES
from yolo_cli.targets import RULES


class _Option(click.Option):
    """An option that also accepts ``aliases`` (older spellings, ultralytics' ones), which
    ``--help`` does not show; an error message names the alias only when it was typed."""

    def __init__(self, param_decls, aliases: tuple[str, ...] = (), **attrs):
        super().__init__([*param_decls, *aliases], **attrs)
        self.aliases = tuple(aliases)

    def shown_opts(self) -> list[str]:
        return [opt for opt in self.opts if opt not in self.aliases]

    def get_help_record(self, ctx):
        opts, self.opts = self.opts, self.shown_opts()
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts

    def get_error_hint(self, ctx) -> str:
        typed = {arg.split("=")[0] for arg in ctx.meta.get("argv", ())} if ctx else set()
        named = self.shown_opts() + [alias for alias in self.aliases if alias in typed]
        return " / ".join(f"'{opt}'" for opt in named)


def option(*param_decls: str, aliases: tuple[str, ...] = (), positional: bool = False, **attrs):
    """``click.option`` with hidden ``aliases``; with ``positional``, the value may also come as
    a hidden positional argument (``required`` then holds for the two together)."""
    if not positional:
        return click.option(*param_decls, cls=_Option, aliases=aliases, **attrs)
    required = attrs.pop("required", False)
    if required:
        attrs["help"] += "  [required]"
    name = next(
        (d for d in param_decls if d.isidentifier()), param_decls[0].lstrip("-").replace("-", "_")
    )

    def decorate(f):
        f = click.option(*param_decls, cls=_Option, aliases=aliases, **attrs)(f)
        return click.argument(
            f"{name}_positional", cls=_Positional, option=name, required=required
        )(f)

    return decorate


class _Positional(click.Argument):
    """The positional spelling of the option named ``option`` (``yolo info M`` is ``yolo info
    --model M``), accepted but shown nowhere; with ``required``, one of the two must be given."""

    def __init__(self, param_decls, option: str, required: bool = False, **attrs):
        super().__init__(param_decls, required=False, **attrs)
        self.option = option
        self.option_required = required

    def get_usage_pieces(self, ctx) -> list[str]:
        return []

    def merge(self, ctx: click.Context) -> None:
        """Move the positional value (if any) into ``ctx.params[self.option]``."""
        value = ctx.params.pop(self.name, None)
        param = next(p for p in ctx.command.params if p.name == self.option)
        if value is None:
            if self.option_required and ctx.params.get(self.option) is None:
                raise click.MissingParameter(ctx=ctx, param=param)
            return
        if ctx.params.get(self.option) is not None:
            raise click.UsageError(f"{param.opts[0]} given twice; give {value!r} once", ctx)
        ctx.params[self.option] = value


# --debug and --quiet: flags of the group and of every command, so that they work before and
# after the subcommand's name; they land in the root context's meta
_DEBUG, _QUIET = "yolo_cli.debug", "yolo_cli.quiet"


def _remember(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().meta[_DEBUG if param.name == "debug" else _QUIET] = True


def _verbosity_options() -> list[click.Option]:
    return [
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_remember,
            help="Show tracebacks, debug logs and TensorFlow's start-up lines.",
        ),
        click.Option(
            ["--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_remember,
            help="No notices and no per-file skip lines (errors and the summary still show).",
        ),
    ]


def _quiet() -> bool:
    return bool(click.get_current_context().find_root().meta.get(_QUIET))


def _note(line: str) -> None:
    """A notice or a per-file skip line on stderr (``--quiet`` drops it)."""
    if not _quiet():
        click.echo(line, err=True)


# Options that several commands share, spelled once.
device_option = click.option(
    "--device",
    default=DEFAULTS.device,
    show_default=True,
    help="auto|cpu|gpu|gpu:N; N alone is gpu:N (ultralytics' --device 0).",
)


def _model_help(default: str | None) -> str:
    """``--model``'s help: a file or a shipped model's name, and the default one."""
    names = ", ".join(SHIPPED_MODELS)
    shipped = f"Model file, or a shipped model's name ({names})"
    if default is None:
        return f"{shipped}."
    path = MODELS_DIR.name + "/" + SHIPPED_MODELS[default]
    return f"{shipped}. Default: {default} ({path})."


def model_option(
    default: str | None = DETECT_MODEL,
    help: str = "",
    multiple: bool = False,
    positional: bool = False,
):
    """``--model``: a model file or a shipped model's name; ``help`` goes after what it takes."""
    return option(
        "--model",
        positional=positional,
        type=click.Path(),
        multiple=multiple,
        metavar="MODEL",
        help=f"{_model_help(default)} {help}".strip(),
    )


models_option = model_option(
    default=DETECT_MODEL,
    multiple=True,
    help="Repeat for an ensemble, merged by weighted boxes fusion.",
)


def data_option(help: str, required: bool = False, positional: bool = False):
    """``--data``: a dataset read (VOC, COCO or YOLO txt)."""
    return option(
        "--data",
        positional=positional,
        type=click.Path(),
        metavar="DATASET",
        required=required,
        help=help,
    )


def out_option(help: str, required: bool = False, positional: bool = False, file_okay: bool = True):
    """``--out``: what a command writes."""
    return option(
        "--out",
        positional=positional,
        type=click.Path(file_okay=file_okay),
        required=required,
        help=help,
    )


def split_option(default: str | None, help: str):
    """``--split``: train, val, test or all."""
    return option("--split", default=default, show_default=default is not None, help=help)


def seed_option(help: str):
    return ranged_option("--seed", help=help)


def num_anchors_option(*name: str, **attrs):
    """``--num-anchors`` (``--anchors`` and ``--k`` accepted); ``name``: the parameter's."""
    return ranged_option("--num-anchors", *name, aliases=("--anchors", "--k"), **attrs)


augment_option = click.option(
    "--augment",
    is_flag=True,
    help="Test-time augmentation: the image and its mirror at three input sizes, merged.",
)


def threshold_option(name: str, default: float | None, help: str):
    """A score or IoU threshold (``--conf``, ``--iou``, ``--nms-iou``) in ``LIMITS.score``; NaN
    is left for the library's check, whose message names the option."""
    return click.option(
        name,
        default=default,
        show_default=default is not None,
        type=click.FloatRange(LIMITS.score.low, LIMITS.score.high),
        help=help,
    )


nms_iou_option = threshold_option(
    "--nms-iou",
    DEFAULTS.nms_iou,
    "Non-max suppression: a box whose IoU with a better one of its class exceeds this is dropped.",
)
box_vote_option = click.option(
    "--box-vote/--no-box-vote",
    default=DEFAULTS.box_vote,
    show_default=True,
    help="Move each box NMS keeps to the score-weighted mean of itself and the boxes of its class "
    "it suppressed: tighter boxes from the several predictions of one object.",
)
max_det_option = click.option(
    "--max-det",
    default=DEFAULTS.max_det,
    show_default=True,
    type=click.IntRange(1),
    help="Keep at most this many detections per image, best first.",
)


def choice_option(name: str, choices, help: str):
    """An option taking one of ``choices``, its default ``DEFAULTS.<name>`` (``--loss``:
    ``loss``)."""
    return click.option(
        name,
        default=getattr(DEFAULTS, name.lstrip("-").replace("-", "_")),
        show_default=True,
        type=click.Choice(choices),
        help=help,
    )


method_option = choice_option(
    "--method",
    METHODS,
    "Detector: YOLO, or a window classifier (--model) slid naively or convolutionally.",
)


def _int_range(limits: Range) -> click.IntRange:
    return click.IntRange(limits.low, limits.high)


class _FiniteRange(click.FloatRange):
    """A float range that refuses NaN (which compares false with both bounds)."""

    def convert(self, value, param, ctx) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


def _float_range(limits: Range) -> click.FloatRange:
    return _FiniteRange(limits.low, limits.high, min_open=limits.low_open)


_FROM_DEFAULTS = object()


def ranged_option(*param_decls: str, field: str = "", default=_FROM_DEFAULTS, **attrs):
    """A numeric option whose range is ``LIMITS.<field>`` and whose default is
    ``DEFAULTS.<field>`` unless given; ``field`` is the option's own name (``--close-mosaic``:
    ``close_mosaic``) unless given. Whole numbers when both ends of the range are."""
    field = field or param_decls[0].lstrip("-").replace("-", "_")
    limits = getattr(LIMITS, field)
    if default is _FROM_DEFAULTS:
        default = getattr(DEFAULTS, field)
    whole = isinstance(limits.low, int) and isinstance(limits.high, int)
    kind = _int_range(limits) if whole else _float_range(limits)
    return option(
        *param_decls, default=default, show_default=default is not None, type=kind, **attrs
    )


class _ImageSize(click.IntRange):
    """A model input side: a multiple of the stride in :data:`yolo_cli.config.LIMITS`'s range."""

    name = "img_size"

    def __init__(self):
        super().__init__(*LIMITS.img_size)

    def convert(self, value, param, ctx) -> int:
        size = super().convert(value, param, ctx)
        if size % DEFAULTS.stride:
            self.fail(f"{size} is not a multiple of {DEFAULTS.stride}.", param, ctx)
        return size


def img_size_option(
    default: int | None = DEFAULTS.img_size,
    help: str = "Model input side in pixels.",
    aliases: tuple[str, ...] = (),
):
    """``--img-size`` (ultralytics' ``--imgsz`` accepted): a multiple of 32 in 32…4096;
    ``default=None`` for "the model's own"."""
    return option(
        "--img-size",
        aliases=("--imgsz", *aliases),
        default=default,
        show_default=default is not None,
        type=_ImageSize(),
        help=f"{help} A multiple of {DEFAULTS.stride}.",
    )


class _Command(click.Command):
    """A subcommand: takes ``--debug`` and ``--quiet`` as the group does, fills its options from
    their hidden positional spellings, and sets up logging before it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.extend(_verbosity_options())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for param in self.params:
            if isinstance(param, _Positional):
                param.merge(ctx)
        return rest

    def invoke(self, ctx: click.Context):
        meta = ctx.find_root().meta
        _set_up_output(debug=bool(meta.get(_DEBUG)), quiet=bool(meta.get(_QUIET)))
        max_pixels()  # a bad $YOLO_CLI_MAX_PIXELS is one error before any work, not one per image
        return super().invoke(ctx)


class _Group(click.Group):
    """Turns a :class:`YoloError` into one line on stderr and exit status 2 (a traceback with
    ``--debug``) and a Ctrl-C its command did not handle into exit status 130; keeps the
    command line as typed in ``ctx.meta["argv"]`` (``yolo eval`` records it in metrics.json).
    Its commands are :class:`_Command`, its subgroups ``_Group``."""

    command_class = _Command
    group_class = type

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.extend(_verbosity_options())

    def make_context(self, info_name, args, parent=None, **extra):
        argv = [info_name or "yolo", *args]
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta.setdefault("argv", argv)
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except YoloError as e:
            if ctx.find_root().meta.get(_DEBUG):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:  # one the command did not handle: exit as a shell expects
            ctx.exit(130)


# Library loggers whose INFO lines are notices for the user: the default synthetic dataset
# being generated (on first use only), a dataset without splits scored whole.
_NOTICE_LOGGERS = ("yolo_cli.data.synth", "yolo_cli.evaluate")


class _Notices(logging.Handler):
    """Prints each record as a plain line on the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


_NOTICES = _Notices()


def _set_up_output(debug: bool, quiet: bool) -> None:
    """What a command prints besides its results: yolo_cli's debug logs with ``--debug``, the
    notices unless ``--quiet``; TensorFlow's start-up lines, its logged warnings (such as
    tf.function retracing) and Python warnings only with ``--debug``."""
    from yolo_cli.nativelog import filter_tensorflow_import

    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        warnings.simplefilter("ignore")  # libraries' advice to programmers, not to users
    filter_tensorflow_import()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("yolo_cli").setLevel(logging.DEBUG if debug else logging.NOTSET)
    logging.getLogger("tensorflow").setLevel(logging.NOTSET if debug else logging.ERROR)
    for name in _NOTICE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
        logger.propagate = False
        if _NOTICES not in logger.handlers:
            logger.addHandler(_NOTICES)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="yolo-cli")
def cli() -> None:
    """Train, run and evaluate a YOLO object detector (Keras 3 on TensorFlow).

    The same program is installed as `yolo` and as `yolo-cli` (ultralytics installs a `yolo`
    too). --debug and --quiet go before or after the command's name."""


@cli.group()
def data() -> None:
    """Inspect, convert and synthesize datasets."""


@data.command()
@data_option("Dataset to check: VOC, COCO or YOLO txt.", required=True, positional=True)
@split_option(None, "train, val, test or all (default: all, every image).")
def check(data: str, split: str | None) -> None:
    """Report a VOC, COCO or YOLO txt dataset: images, objects per class, box sizes and every
    problem found; exit status 2 when no usable image is left."""
    from yolo_cli.data.check import check_dataset, check_report

    # The report lists every problem; logging them too would print each one twice.
    logger = logging.getLogger("yolo_cli.data.dataset")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        dataset = check_dataset(data, split)
    finally:
        logger.setLevel(level)
    click.echo(check_report(dataset))
    if not dataset.samples:
        click.echo(f"error: {data}: no usable images", err=True)
        click.get_current_context().exit(2)


@data.command()
@data_option("Dataset to convert: VOC, COCO or YOLO txt.", required=True, positional=True)
@out_option("Folder to write (new or empty).", required=True, positional=True)
@option(
    "--format",
    "to",
    aliases=("--to",),
    required=True,
    type=click.Choice(DATASET_FORMATS),
    help="Format to write.",
)
@split_option(None, "Write only train, val or test (default: all, every split).")
def convert(data: str, out: str, to: str, split: str | None) -> None:
    """Write a dataset in another format into a new or empty folder; images are hard-linked.

    The splits written are the dataset's own, else seeded shares of its images."""
    from yolo_cli.data.convert import convert_dataset

    written = convert_dataset(data, out, to, split)
    first = next(iter(written.values()))
    counts = ", ".join(f"{len(d)} {s}" for s, d in written.items())
    click.echo(
        f"wrote {sum(len(d) for d in written.values())} images ({counts}), "
        f"{sum(d.num_objects() for d in written.values())} objects, {len(first.names)} "
        f"classes, as {to} to {out}; {first.problems.summary()}"
    )


def _fractions(ctx, param, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected numbers like {_FRACTIONS}, got {value!r}") from None


_FRACTIONS = ",".join(f"{f:g}" for f in DEFAULTS.split_fractions)


@data.command()
@out_option("Folder to write the dataset into.", required=True, positional=True, file_okay=False)
@ranged_option("--n-images", "n", field="synth_scenes", aliases=("--n",), help="Scenes to render.")
@seed_option("Scene i depends on (seed, i) alone.")
@img_size_option(help="Scene side in pixels.", aliases=("--size",))
@click.option(
    "--fractions",
    default=_FRACTIONS,
    show_default=True,
    callback=_fractions,
    help="train,val,test shares of the scenes.",
)
def synth(out: str, n: int, seed: int, img_size: int, fractions: tuple[float, ...]) -> None:
    """Render synthetic street scenes (pedestrian, car, motorcycle) as a YOLO txt dataset."""
    from yolo_cli.data.load import load_dataset
    from yolo_cli.data.synth import split_sizes, write_synthetic

    root = write_synthetic(out, n, seed, img_size, fractions)
    click.echo(f"wrote {n} scenes ({img_size}×{img_size}, seed {seed}) to {root}")
    objects: dict[str, int] = {}
    for split in split_sizes(n, seed, fractions):
        written = load_dataset(root, split)
        click.echo(f"  {split}: {len(written)} images, {written.num_objects()} objects")
        for name, count in written.objects_per_class().items():
            objects[name] = objects.get(name, 0) + count
    per_class = ", ".join(f"{name} {count}" for name, count in objects.items())
    click.echo(f"{sum(objects.values())} objects: {per_class}")


def _dataset_path(path: str | None) -> str:
    """A dataset path from the command line, or the cached synthetic street scenes."""
    if path is not None:
        return path
    from yolo_cli.data.synth import default_synthetic

    return str(default_synthetic())


@cli.command()
@data_option(
    "Dataset whose boxes to cluster. Default: the synthetic street scenes.", positional=True
)
@num_anchors_option("k", help="Anchors to find.")
@img_size_option(help="Model input side in pixels the boxes are scaled to, as training does.")
@split_option("train", "train, val, test or all.")
@seed_option("Seeds the k-means starting points.")
def anchors(data: str | None, k: int, img_size: int, split: str, seed: int) -> None:
    """Anchor shapes by k-means (1 − IoU distance) on a dataset's boxes."""
    from yolo_cli.anchors import kmeans_anchors
    from yolo_cli.data.load import load_dataset
    from yolo_cli.train import scaled_box_shapes

    path = _dataset_path(data)
    dataset = load_dataset(path, split=split)
    for line in dataset.problems.lines():
        _note(line)
    shapes = scaled_box_shapes(dataset, img_size)
    if len(shapes) < k:
        where = f"{split} split" if dataset.split else "images"
        raise YoloError(f"{path}: {len(shapes)} boxes in its {where} cannot make {k} anchors")
    result, mean_iou = kmeans_anchors(shapes, k, seed=seed)
    stride = DEFAULTS.stride
    grid = img_size // stride
    click.echo(
        f"{len(shapes)} boxes, {k} anchors at input {img_size} ({grid}×{grid} grid of {stride} px cells)"
    )
    click.echo(f"{'anchor':>6} {'w px':>8} {'h px':>8} {'w cells':>8} {'h cells':>8}")
    for i, (w, h) in enumerate(result):
        click.echo(f"{i:>6} {w:>8.1f} {h:>8.1f} {w / stride:>8.2f} {h / stride:>8.2f}")
    click.echo(f"mean best IoU: {mean_iou:.3f}")


@cli.command()
@model_option(
    default=DETECT_MODEL, help="An exported .tflite, .onnx or SavedModel too.", positional=True
)
def info(model: str | None) -> None:
    """Layer table of a model: output shapes, activations, parameters, multiply-adds and bytes
    moved per layer. An exported model (.tflite, .onnx, SavedModel folder) shows the metadata
    it carries and how it was exported."""
    from yolo_cli.inference import fold_batchnorm
    from yolo_cli.modelfile import load_model, model_path, read_meta
    from yolo_cli.runtimes import artifact_format
    from yolo_cli.summary import format_table, model_table

    path = model_path(model)
    exported = path.exists() and artifact_format(path) != "keras"
    keras_model, meta = (None, read_meta(path)) if exported else load_model(path)
    click.echo(f"model: {path}")
    click.echo(
        f"kind: {meta.kind}   input: {meta.img_size}×{meta.img_size}×3 ({meta.resize})   "
        f"class scores: {meta.class_activation}"
    )
    click.echo(f"classes ({meta.num_classes}): {', '.join(meta.names)}")
    for head in meta.heads:
        shown = ", ".join(f"{w:g}×{h:g}" for w, h in head.anchors)
        grid = head.grid(meta.img_size)
        click.echo(
            f"head stride {head.stride} ({grid}×{grid} grid), anchors (w×h input px): {shown}"
        )
    if exported:
        record = meta.extra.get("export", {})
        shown = ", ".join(f"{k}: {v}" for k, v in record.items())
        click.echo(f"exported ({shown})")
        return
    click.echo(format_table(model_table(keras_model)))
    folded = model_table(fold_batchnorm(keras_model))
    click.echo(
        f"inference graph (BatchNorm folded into the convolutions): {len(folded)} layers, "
        f"{sum(r.bytes_moved for r in folded) / 1e6:.1f} MB moved per image"
    )


@cli.command(name="import")
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option(
    "--names",
    type=click.Path(dir_okay=False),
    help="Class names, one a line (Darknet's .names, e.g. coco.names). Default: class0, class1, …",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Model file to write (default: CFG's name with .keras, in the current folder). "
    "An existing file is replaced, as Keras's model.save does.",
)
def import_(cfg: str, weights: str, names: str | None, out: str | None) -> None:
    """Convert a Darknet model (CFG + WEIGHTS) into a model file for detect, eval and train.

    Reads [net], [convolutional], [maxpool], [route], [shortcut], [upsample], [dropout],
    [yolo] and [region] sections; anything else is refused with the file and line.
    """
    from pathlib import Path

    from yolo_cli.darknet import describe, import_darknet
    from yolo_cli.fileio import check_writable
    from yolo_cli.modelfile import save_model

    target = check_writable(Path(out) if out else Path(Path(cfg).stem + ".keras"))
    keras_model, meta = import_darknet(cfg, weights, names)
    path = save_model(keras_model, target, meta)
    click.echo(f"wrote {path}: {describe(meta, keras_model.count_params())}")


@cli.command(name="export")
@model_option(default=DETECT_MODEL, positional=True)
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(EXPORT_FORMATS),
    help="saved_model: a folder for TensorFlow (raw and detections signatures); tflite: "
    "LiteRT; onnx: ONNX Runtime, OpenVINO.",
)
@click.option("--half", is_flag=True, help="float16 weights (tflite, onnx).")
@click.option(
    "--int8", is_flag=True, help="int8 weights and activations (tflite), calibrated on --data."
)
@data_option("Dataset whose train split calibrates --int8.")
@click.option(
    "--calib-images",
    default=DEFAULTS.calib_images,
    show_default=True,
    type=click.IntRange(1),
    help="Train images the --int8 calibration runs.",
)
@img_size_option(default=None, help="Input side of the artifact (default: the model's own).")
@threshold_option(
    "--conf", DEFAULTS.conf_threshold, "Score threshold of a SavedModel's detect signatures."
)
@nms_iou_option
@box_vote_option
@max_det_option
@out_option("Artifact path (default: the model's name + _fp16/_int8 + .tflite/.onnx/_saved_model).")
def export(model: str | None, int8: bool, data: str | None, **options) -> None:
    """Export a model for a runtime; its class names, heads, anchors, input size and resize mode
    go inside the artifact.

    `yolo detect/eval --model` run the artifact through LiteRT, ONNX Runtime or TensorFlow
    (`pip install 'yolo-cli[export]'`)."""
    from yolo_cli.export import ExportOptions, describe, export_model

    if int8 != (data is not None):
        raise YoloError("--int8 needs --data (a dataset to calibrate on), and --data needs --int8")
    path, meta = export_model(
        ExportOptions(model, int8_data=data, **options),
        on_step=_note,
    )
    click.echo(describe(path, meta))


@cli.command()
@data_option("Dataset (VOC, COCO, YOLO txt). Default: synthetic street scenes.")
@num_anchors_option(
    "num_anchors",
    default=None,
    help="Number of anchors, shared by the heads (k-means on the training boxes). Default: "
    f"{DEFAULTS.num_anchors} for one grid, {DEFAULTS.anchors_per_head} a head for several.",
)
@ranged_option(
    "--epochs", help="Epochs in all; with --resume, extend (or cut) the run to this many."
)
@img_size_option(
    default=None,
    help=f"Model input side in pixels (default {DEFAULTS.img_size}, or the --weights model's).",
)
@ranged_option(
    "--heads",
    help="Detection grids: 1 is the course's stride-32 grid; 2 adds a stride-16 grid for "
    "smaller objects; 3 adds stride 8.",
)
@choice_option(
    "--loss",
    LOSSES,
    "course: the course's squared errors; iou: a 1 − CIoU box error and an IoU-aware "
    "cross-entropy on p_c (learns real data faster; README 'Training').",
)
@choice_option(
    "--assign",
    RULES,
    "Which slots learn an object. best: the course's midpoint cell and best anchor; "
    "ratio: also the two nearest neighbour cells and every anchor within 4x of its shape.",
)
@ranged_option(
    "--mosaic",
    default=DEFAULTS.mosaic_p,
    help="Share of training images made a mosaic of four, YOLOv5's augmentation (0: none; "
    "off by default, it did not pay in 30-minute CPU runs).",
)
@ranged_option("--close-mosaic", help="Last epochs trained without mosaics.")
@click.option(
    "--ema/--no-ema",
    default=DEFAULTS.ema,
    show_default=True,
    help="Validate and save a moving average of the weights.",
)
@click.option(
    "--spp/--no-spp",
    default=DEFAULTS.spp,
    show_default=True,
    help="Pool the coarsest features at three widths (YOLOv5's SPPF), so each cell sees the "
    "whole image.",
)
@ranged_option("--batch", help="Images per step (the global batch, over every replica).")
@ranged_option(
    "--lr",
    default=None,
    help="Peak learning rate (warm-up, then cosine decay). Default: "
    f"{DEFAULTS.lr_per_class:g} · 5 / (4 + classes), ultralytics' rule for short runs "
    f"({DEFAULTS.lr_per_class:g} for one class); {DEFAULTS.lr:g} with --method window.",
)
@ranged_option("--width", help="Channel width multiplier of the backbone.")
@ranged_option(
    "--lambda-obj",
    help="--loss course: weight of the p_c error where an object is assigned (Darknet YOLOv2: 5).",
)
@seed_option("Seeds the initial weights, the data order and the augmentation.")
@click.option("--no-augment", is_flag=True, help="Turn off the training augmentations.")
@out_option("Run folder (default runs/train/expN).")
@device_option
@choice_option(
    "--strategy",
    STRATEGIES,
    "tf.distribute strategy: auto is mirrored over several GPUs, else none.",
)
@click.option(
    "--weights",
    type=click.Path(),
    help="Initialise from this model file or shipped model (transfer learning; e.g. coco: its "
    "backbone and neck, new heads for these classes).",
)
@ranged_option(
    "--freeze",
    help="Freeze the first N blocks of the --weights network (this project's: 7 blocks; a "
    "converted one: its first N cfg layers), BatchNorm with them.",
)
@click.option(
    "--resume",
    type=click.Path(),
    metavar="RUN",
    help="Continue the run in folder RUN exactly where it stopped; with --epochs or --minutes, "
    "extend it.",
)
@ranged_option(
    "--patience",
    help="Stop when val fitness (0.1·mAP@0.5 + 0.9·mAP@[.5:.95], YOLOv8's) has not improved "
    "for N epochs (0: never); best.keras keeps the best.",
)
@ranged_option(
    "--val-share",
    help="Validation's share of the images a run passes through the network (about its share "
    "of the time): epochs between validations go unscored, never the last two; 1: every epoch.",
)
@ranged_option("--max-steps", default=None, help="Cap steps per epoch (quick checks).")
@ranged_option(
    "--minutes",
    default=None,
    help="Wall-clock budget: after every epoch, the epoch count becomes what fits (overrides "
    "--epochs); with --resume, train this many more minutes.",
)
@choice_option(
    "--method",
    ["yolo", "window"],
    "yolo: the detector; window: the crop classifier of the sliding-window baselines.",
)
def train(resume: str | None, method: str, **options) -> None:
    """Train a YOLO detector; writes best.keras, last.keras, history and TensorBoard events to
    the run folder.

    Exit status: 0 when the run finished or stopped early (--patience), 1 when a NaN or
    infinite loss stopped it, 130 on Ctrl-C and 143 on SIGTERM (both save last.keras first:
    continue with --resume RUN).

    With --method window, train the sliding-window crop classifier instead (options --data,
    --epochs, --batch, --lr, --seed, --out)."""
    if method == "window":
        _train_window(options)
        return
    from yolo_cli import train as training

    ctx = click.get_current_context()
    printer = _TrainPrinter()
    try:
        if resume is not None:
            result = training.resume(resume, printer.hooks(), **_resume_changes(ctx, options))
        else:
            options["augment"] = not options.pop("no_augment")
            result = training.train(training.TrainConfig(**options), printer.hooks())
    except KeyboardInterrupt:
        printer.close()
        click.echo("aborted: nothing saved since the last checkpoint", err=True)
        ctx.exit(130)
    finally:
        printer.close()
    if result.detail:
        click.echo(result.detail, err=True)
    click.echo(_train_summary(result))
    ctx.exit(_TRAIN_EXIT[result.outcome.value])


# exit status by yolo_cli.train.Outcome: 128 + the signal number for the signals, as a shell
_TRAIN_EXIT = {
    "finished": 0,
    "early_stopped": 0,
    "stopped_nan": 1,
    "interrupted": 130,
    "terminated": 143,
}
# what --resume may change; the rest is the run's own
_RESUME_OPTIONS = ("epochs", "minutes", "patience", "device", "strategy")


def _given(ctx: click.Context) -> dict[str, str]:
    """The options given on the command line (not left at their defaults): name → spelling."""
    from click.core import ParameterSource

    return {
        p.name: p.opts[0]
        for p in ctx.command.params
        if p.expose_value and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT
    }


def _resume_changes(ctx: click.Context, options: dict) -> dict:
    """The options given with ``--resume`` (others are refused: the run keeps its own)."""
    given = {k: v for k, v in _given(ctx).items() if k not in ("resume", "method")}
    fixed = [opt for name, opt in given.items() if name not in _RESUME_OPTIONS]
    if fixed:
        raise YoloError(
            f"--resume continues the run with its own settings: {', '.join(fixed)} cannot "
            f"change (only --{', --'.join(_RESUME_OPTIONS)})"
        )
    return {name: options[name] for name in given}


def _train_summary(result) -> str:
    """``finished: 30/30 epochs; best val mAP@0.5 0.612, mAP@[.5:.95] 0.301 (epoch 27); weights
    in runs/train/exp``."""
    if result.best_map50 is None:
        best = "no val mAP (no val split)"
    else:
        from yolo_cli.train.recipe import describe_best

        best = f"best {describe_best(result.best_map50, result.best_map, result.best_epoch)}"
    saved = (result.run_dir / "last.keras").exists()
    where = f"weights in {result.run_dir}" if saved else "nothing saved"
    done = f"{result.epochs_done}/{result.epochs} epochs"
    if result.step:
        done += f" and {result.step} steps"
    return f"{result.outcome.value}: {done}; {best}; {where}"


class _TrainPrinter:
    """Prints a training run on stderr: a progress bar per epoch (with the step's loss), a
    line per epoch, and problems and notices as lines above the bar (not with ``--quiet``)."""

    def __init__(self):
        self.bar = None
        self.loss = float("nan")

    def hooks(self):
        from yolo_cli.train import TrainHooks

        return TrainHooks(
            on_epoch_start=self.epoch_start,
            on_step=self.step,
            on_epoch_end=self.epoch_end,
            on_problem=self.line,
            on_notice=self.line,
        )

    def epoch_start(self, epoch: int, epochs: int, steps: int, step: int) -> None:
        self.close()
        self.bar = click.progressbar(
            length=steps,
            label=f"epoch {epoch}/{epochs}",
            file=sys.stderr,
            show_pos=True,
            item_show_func=lambda _: f"loss {self.loss:.3f}",
        )
        self.bar.__enter__()
        self.bar.update(step)

    def step(self, step: int, steps: int, loss: float) -> None:
        self.loss = loss
        if self.bar is not None:
            self.bar.update(1)

    def epoch_end(self, row: dict, epochs: int) -> None:
        self.close()
        val = (
            f"val loss {row['val_loss']:.3f}  val mAP@0.5 {row['val_map50']:.3f}  "
            f"mAP@[.5:.95] {row['val_map']:.3f}"
            if math.isfinite(row["val_loss"])
            else "not validated"
        )
        click.echo(f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.3f}  {val}", err=True)

    def line(self, text: str) -> None:
        # over a progress bar: clear its line first; the bar redraws below on its next update
        over_bar = self.bar is not None and sys.stderr.isatty()
        _note(f"\r\x1b[K{text}" if over_bar else text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


_WINDOW_TRAIN_OPTIONS = ("data", "epochs", "batch", "lr", "seed", "out")


def _train_window(options: dict) -> None:
    """``yolo train --method window``: YOLO-only options given on the command line are refused."""
    from yolo_cli.baselines.train_window import WindowTrainConfig, train_window

    given = _given(click.get_current_context())
    yolo_only = [
        opt for name, opt in given.items() if name not in (*_WINDOW_TRAIN_OPTIONS, "method")
    ]
    if yolo_only:
        raise YoloError(f"--method window: {', '.join(yolo_only)} apply to YOLO training only")
    cfg = WindowTrainConfig(
        data=options["data"],
        out=options["out"],
        epochs=options["epochs"],
        batch=options["batch"] if "batch" in given else None,
        lr=DEFAULTS.lr if options["lr"] is None else options["lr"],
        seed=options["seed"],
        verbose=2,
    )
    result = train_window(cfg)
    acc = result.held_out
    if acc is None:
        score = "no val split, so no held-out score"
    else:
        score = (
            f"held-out crop accuracy {acc.overall:.3f} (objects {acc.objects:.3f}, "
            f"background {acc.background:.3f}) on {acc.crops} val crops"
        )
    click.echo(
        f"window classifier: {cfg.epochs} epochs on {result.train_images} images; {score}; "
        f"weights in {result.run_dir}"
    )


@cli.command(name="eval")
@data_option("Labelled dataset. Default: fresh synthetic test scenes.")
@split_option("test", "Split of --data to score on: train, val, test or all.")
@model_option(
    default=EVAL_MODEL,
    multiple=True,
    help="Repeat for an ensemble, merged by weighted boxes fusion.",
)
@method_option
@augment_option
@click.option(
    "--class-map",
    metavar="MODEL=DATASET,…",
    help="Model classes that are dataset classes of other names (same and synonymous names "
    "match by themselves).",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True),
    help="Score saved detections instead: a COCO results JSON or a folder of YOLO txt with a confidence column.",
)
@threshold_option("--iou", DEFAULTS.eval_iou, "IoU for a detection to count as correct.")
@threshold_option(
    "--conf", DEFAULTS.eval_conf, "Score threshold (low: mAP needs the whole ranking)."
)
@nms_iou_option
@box_vote_option
@max_det_option
@ranged_option("--batch", default=DEFAULTS.eval_batch, help="Images per model call.")
@device_option
@out_option("Run folder (default runs/eval/expN).")
def eval_(**options) -> None:
    """Score a model (or saved predictions) on a labelled dataset: AP per class, mAP.

    A model whose classes differ from the dataset's is scored on the classes they share."""
    import shlex

    from yolo_cli.evaluate import EvalOptions, format_report, run_eval

    def progress(total: int):
        if total > _PROGRESS_MIN and sys.stderr.isatty():
            return click.progressbar(length=total, label="eval", file=sys.stderr)
        return None

    command = shlex.join(click.get_current_context().meta.get("argv", []))
    report = run_eval(EvalOptions(**options, command=command), progress=progress)
    for line in report.problems.lines():
        _note(line)
    if report.problems:
        click.echo(report.problems.summary(), err=True)
    click.echo(f"{report.source} on {report.dataset.root} ({report.dataset.split or 'all'})")
    click.echo(format_report(report))
    click.echo(f"wrote {report.run_dir / 'metrics.json'} and {report.run_dir / 'pr_curve.png'}")


_PROGRESS_MIN = 10  # fewer inputs than this finish before a bar would say anything


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@models_option
@method_option
@augment_option
@threshold_option(
    "--conf",
    None,
    "Discard boxes whose score p_c·P(class) is at or below this; labels, --save-conf "
    "and JSON show that same score. Default: the model's own (the course's "
    f"{DEFAULTS.conf_threshold:g} for models trained with --loss course, {DEFAULTS.iou_conf:g} "
    f"with --loss iou, Darknet's {DARKNET_CONF:g} for converted ones such as --model coco).",
)
@nms_iou_option
@box_vote_option
@max_det_option
@img_size_option(default=None, help="Model input side (default: the model's own).")
@click.option(
    "--batch",
    default=DEFAULTS.batch,
    show_default=True,
    type=click.IntRange(1),
    help="Images per model call (a stream's frames go one at a time).",
)
@device_option
@click.option("--classes", help="Keep only these classes, by name or id: car,person or 0,2.")
@out_option(
    "Results folder (default runs/detect/expN). When it exists, OUT2, OUT3 … is used instead, "
    "so that a run does not write into an earlier run's folder."
)
@click.option("--save-txt", is_flag=True, help="Write labels/NAME.txt in YOLO txt.")
@click.option("--save-conf", is_flag=True, help="Add a score column to --save-txt labels.")
@click.option(
    "--save-crop", is_flag=True, help="Write each detection's box as crops/CLASS/NAME_K.jpg."
)
@click.option(
    "--save-json",
    type=click.Path(),
    help="Write the detections to this file as COCO results (yolo eval --predictions reads it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image on stdout.")
@click.option(
    "--line-width", type=click.IntRange(1), help="Box lines in pixels (default: by image size)."
)
@click.option("--hide-labels", is_flag=True, help="Draw boxes without class labels.")
@click.option("--hide-conf", is_flag=True, help="Draw labels without scores.")
@option(
    "--every",
    aliases=("--vid-stride",),
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Every N-th video frame.",
)
@click.option("--no-save", is_flag=True, help="Do not write annotated images and videos.")
def detect(
    classes: str | None,
    as_json: bool,
    no_save: bool,
    sources: tuple[str, ...],
    model: tuple[str, ...],
    **options,
) -> None:
    """Detect objects in images, folders, globs, videos, list files, URLs and cameras.

    SOURCES: image or video files, folders, globs, a .txt file listing sources one a line,
    http(s) image URLs, streams (rtsp://, http(s):// video or MJPEG) and camera indexes (0: the
    first webcam). A stream runs until it ends or Ctrl-C.

    Every output has a name of its own: NAME is the input's name (its path inside a folder),
    made unique in the run (a.jpg and a.png: a and a-2). Annotated copies are NAME.<ext> and
    NAME.mp4; labels labels/NAME.txt, labels/NAME_FRAME.txt for video frames. Each file appears
    only once complete.

    Unreadable inputs are skipped with one line each on stderr, as are frames a video loses.
    Exit status: 0 when something was processed; 2 for a bad option, model or --out, a
    failed write, or when nothing could be processed; 130 after Ctrl-C, with the results so
    far kept.
    """
    import json

    from yolo_cli.detect import DetectOptions, run_detect

    wanted = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    options["model"] = list(model) if len(model) > 1 else (model[0] if model else None)

    bar_shown = []

    def progress(total: int):
        if total > _PROGRESS_MIN and sys.stderr.isatty():
            bar_shown.append(True)
            return click.progressbar(length=total, label="detect", file=sys.stderr)
        return None

    def skip(line: str) -> None:
        # over a progress bar: clear its line first; the bar redraws below on its next update
        _note(f"\r\x1b[K{line}" if bar_shown else line)

    try:
        summary = run_detect(
            DetectOptions(list(sources), classes=wanted, save=not no_save, **options),
            on_record=(lambda r: click.echo(json.dumps(r))) if as_json else None,
            on_skip=skip,
            progress=progress,
        )
    except KeyboardInterrupt:  # before the first frame: nothing to keep
        click.echo("interrupted", err=True)
        raise SystemExit(130) from None
    click.echo(summary.line(), err=True)
    if summary.interrupted:
        raise SystemExit(130)


@cli.command()
@data_option("Labelled dataset. Default: fresh synthetic test scenes.")
@split_option("test", "Split of --data to use: train, val, test or all.")
@option(
    "--model",
    "models",
    aliases=("--yolo-model", "--window-model"),
    type=click.Path(),
    multiple=True,
    metavar="MODEL",
    help="Twice: the window classifier the two window methods slide (`yolo train --method "
    "window` makes one) and a YOLO model, each told by the kind its file records. Once: the "
    f"window classifier, with YOLO's {EVAL_MODEL} ({MODELS_DIR.name}/"
    f"{SHIPPED_MODELS[EVAL_MODEL]}).",
)
@click.option(
    "--n-images",
    default=DEFAULTS.bench_images,
    show_default=True,
    type=click.IntRange(1),
    help="Images to run (the naive sliding window takes seconds per image).",
)
@device_option
def bench(models: tuple[str, ...], **options) -> None:
    """Naive sliding window vs its convolutional implementation vs YOLO on the same images:
    mAP@0.5, box tightness, speed, and work per image, in one table."""
    from yolo_cli.bench import BenchOptions, format_bench, run_bench

    report = run_bench(BenchOptions(**_bench_models(models), **options))
    if report.dataset.problems:
        click.echo(report.dataset.problems.summary(), err=True)
    click.echo(format_bench(report))


def _bench_models(models: tuple[str, ...]) -> dict[str, str | None]:
    """``yolo bench``'s ``--model`` files by the kind each records: ``window_model`` (one, a
    window classifier) and ``yolo_model`` (at most one; ``None``: the shipped one)."""
    from yolo_cli.modelfile import model_path, read_meta

    by_kind: dict[str, list[str]] = {"window": [], "yolo": []}
    for model in models:
        path = str(model_path(model))
        by_kind[read_meta(path).kind].append(path)
    windows, yolos = by_kind["window"], by_kind["yolo"]
    if len(windows) != 1 or len(yolos) > 1:
        raise YoloError(
            f"--model: expected one window classifier (`yolo train --method window` makes one) "
            f"and at most one YOLO model; got {len(windows)} and {len(yolos)}"
        )
    return {"window_model": windows[0], "yolo_model": yolos[0] if yolos else None}


def main() -> None:
    """The console scripts ``yolo`` and ``yolo-cli``; click names the program as it was run.

    While a command runs, SIGTERM exits with status 143 and Ctrl-C with 130, through Python's
    cleanup (pending atomic writes are discarded), also where SIGINT came in ignored (a
    script's background job), as training's handlers do; training replaces these with its own
    while it trains. Once the command is over both are ignored: the interpreter and
    TensorFlow take about a second to shut down, with the default handlers back, and a signal
    then would kill a process whose work is done and saved."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli()
    except KeyboardInterrupt:  # one that landed after the command, while click exits
        raise SystemExit(130) from None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _exit_on_signal(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
