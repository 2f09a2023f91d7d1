"""Training as a library call: :func:`train` starts a run, :func:`resume` continues or extends
one; both report through :class:`TrainHooks` and return a :class:`TrainResult` whose
:class:`Outcome` says how the run ended. Nothing here prints.

One loop serves every strategy (none, mirrored, multiworker): a per-replica step run with
``strategy.run`` over ``experimental_distribute_dataset``, losses averaged over the global batch.
What the loop trains — heads, network, loss, batches, learning-rate schedule — comes from
:mod:`yolo_cli.train.recipe`.

A run folder holds ``last.keras`` (weights, optimizer state and the run state in one file, see
:mod:`yolo_cli.train.checkpoint`), ``best.keras`` (best val mAP@0.5, no optimizer state),
``history.csv``, ``history.png`` and TensorBoard event files (:mod:`yolo_cli.train.logs`).

Stopping. SIGINT (Ctrl-C) and SIGTERM ask the run to stop: the step in flight completes and
counts, ``last.keras`` is saved with it, and the run returns ``INTERRUPTED`` or ``TERMINATED``.
A second Ctrl-C quits at once without saving (``KeyboardInterrupt``; the previous checkpoint
stays). A hook may raise ``KeyboardInterrupt`` to stop like Ctrl-C at that point. A NaN or
infinite loss or weight stops the run (``STOPPED_NAN``) without saving anything of it.

Exactness. An epoch's data order and augmentation depend only on ``(seed, epoch)``, and the
checkpoint holds the optimizer state and the step reached, so a resumed run computes bit for bit
what the uninterrupted run computes, whether it was stopped by a signal at a step or killed at
any moment (it then repeats the steps since the last checkpoint, identically).
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError
from yolo_cli.modelfile import ModelMeta, first_non_finite
from yolo_cli.train import recipe
from yolo_cli.train.checkpoint import (
    BEST,
    CHECKPOINT,
    RunState,
    read_checkpoint,
    remove_stale_temporaries,
    write_checkpoint,
)
from yolo_cli.train.ema import WeightAverage
from yolo_cli.train.logs import Board, write_history
from yolo_cli.train.options import TrainConfig

_BOARD_SIDE = 640  # validation images in TensorBoard are shrunk to fit this square


class Outcome(Enum):
    """How a run ended."""

    FINISHED = "finished"  # every planned epoch done (a --minutes budget: what fitted)
    EARLY_STOPPED = "early_stopped"  # --patience epochs without a val mAP gain; best kept
    STOPPED_NAN = "stopped_nan"  # a NaN or infinite loss or weight; nothing of it saved
    INTERRUPTED = "interrupted"  # SIGINT (Ctrl-C) or a hook's KeyboardInterrupt; saved
    TERMINATED = "terminated"  # SIGTERM; saved


def _ignore(*args) -> None:
    """A hook that does nothing."""


@dataclass
class TrainHooks:
    """How a run reports; every hook defaults to doing nothing.

    on_epoch_start(epoch, epochs, steps, step): epoch ``epoch`` (from 1) of the ``epochs``
    planned begins; it has ``steps`` training steps, ``step`` of them already done (a resumed
    epoch). on_step(step, steps, loss): step ``step`` (from 1) of ``steps`` is done and counted.
    on_epoch_end(row, epochs): the epoch's history row (``epoch``, ``lr``, ``train_loss``, the loss
    parts, ``val_loss``, ``val_map50``) and the planned epoch count after it. on_problem(line):
    ``<file>: <problem>``, once per file, for samples the run skips. on_notice(line): anything
    else worth a line (anchors chosen, boxes the targets drop, why the run stopped).
    """

    on_epoch_start: Callable[[int, int, int, int], None] = _ignore
    on_step: Callable[[int, int, float], None] = _ignore
    on_epoch_end: Callable[[dict, int], None] = _ignore
    on_problem: Callable[[str], None] = _ignore
    on_notice: Callable[[str], None] = _ignore


@dataclass
class TrainResult:
    """What a run did. epochs: the planned count; step: steps done into the next epoch (0 at
    an epoch boundary); best_map50, best_map: val mAP@0.5 and mAP@[.5:.95] of the epoch of
    best fitness (:func:`recipe.fitness`), ``None`` without validation; dropped_boxes: ``(dropped,
    total)`` training boxes the targets cannot hold; skipped: images skipped as unreadable;
    detail: one line saying why the run stopped, empty when it finished."""

    run_dir: Path
    outcome: Outcome
    epochs_done: int
    epochs: int
    step: int = 0
    best_map50: float | None = None
    best_map: float | None = None
    best_epoch: int = 0
    dropped_boxes: tuple[int, int] = (0, 0)
    skipped: int = 0
    seconds: float = 0.0
    detail: str = ""


def epochs_in_budget(minutes: float, elapsed: float, epochs_done: int, pace: float) -> int:
    """The epoch count a ``minutes`` budget holds: the epochs done plus the whole epochs that fit
    in the time left at ``pace`` seconds per epoch (``elapsed`` in seconds)."""
    return epochs_done + max(0, int((minutes * 60 - elapsed) // pace))


@dataclass
class Budget:
    """A session's wall-clock budget. After each epoch the planned count becomes what fits
    (:func:`epochs_in_budget`) at the pace of the session's epochs after its first (the first
    also traces the graphs), or of the first alone; the learning-rate schedule follows."""

    minutes: float
    started: float  # time.monotonic() when the session's training began
    epochs_at_start: int
    first_epoch_end: float | None = None

    def plan(self, epochs_done: int, now: float) -> int:
        if self.first_epoch_end is None:
            self.first_epoch_end = now
            pace = now - self.started
        else:
            pace = (now - self.first_epoch_end) / (epochs_done - self.epochs_at_start - 1)
        return epochs_in_budget(self.minutes, now - self.started, epochs_done, max(pace, 1e-9))


class _SetupStopped(BaseException):
    """A stop signal that arrived before training began; a ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` on the way (a weights loader's)
    mistakes it for the failure of what it interrupted."""


class StopSignals:
    """SIGINT and SIGTERM as requests to stop, for the duration of the ``with`` block.

    Until :meth:`arm` (while the run is set up) a signal stops at once (nothing is saved yet);
    after it, a signal only sets :attr:`signum`, which the loop checks between steps. A second
    SIGINT raises ``KeyboardInterrupt`` at once. Only the main thread receives signals, so
    elsewhere nothing is installed.
    """

    def __init__(self):
        self.signum: int | None = None
        self._armed = False
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def arm(self) -> None:
        self._armed = True

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum
        if not self._armed:
            raise _SetupStopped

    def outcome(self) -> Outcome:
        return Outcome.TERMINATED if self.signum == signal.SIGTERM else Outcome.INTERRUPTED


def _make_train_step(model, optimizer, loss_fn, strategy, global_batch: int, average=None):
    import tensorflow as tf

    from yolo_cli.modelfile import model_outputs

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            per_image, parts = loss_fn(targets, model_outputs(model, images, training=True))
            loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, {
            k: tf.nn.compute_average_loss(v, global_batch_size=global_batch)
            for k, v in parts.items()
        }

    @tf.function
    def step(images, targets):
        loss, parts = strategy.run(replica_step, args=(images, targets))
        if average is not None:
            average.update()
        reduce = tf.distribute.ReduceOp.SUM
        return strategy.reduce(reduce, loss, axis=None), {
            k: strategy.reduce(reduce, v, axis=None) for k, v in parts.items()
        }

    return step


def _make_val_step(model, loss_fn):
    import tensorflow as tf

    from yolo_cli.modelfile import model_outputs

    @tf.function
    def step(images, targets):
        per_image, _ = loss_fn(targets, model_outputs(model, images, training=False))
        return tf.reduce_sum(per_image), tf.shape(per_image)[0]

    return step


@dataclass
class Validation:
    """One validation pass: loss per image, mAP@0.5 and mAP@[.5:.95] (NaN without images), and
    a few images with their predictions drawn (for TensorBoard)."""

    loss: float
    map50: float
    map: float
    images: list[tuple[str, np.ndarray]]

    @classmethod
    def unscored(cls) -> Validation:
        """No scores: a run without val images, or an epoch not validated."""
        return cls(math.nan, math.nan, math.nan, [])


class Trainer:
    """A run's moving parts — data, network, optimizer, loss, step functions — and the passes
    over them. :func:`build_trainer` makes one from a config.

    skip: called with a ``<file>: <problem>`` line for each sample skipped as unreadable.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        meta: ModelMeta,
        strategy,
        train_set,
        val_set,
        model,
        optimizer,
        loss_fn,
        augmentation,
        skip: Callable[[str], None],
        average=None,
    ):
        self.cfg, self.meta, self.strategy = cfg, meta, strategy
        self.train_set, self.val_set = train_set, val_set
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.augmentation = augmentation
        self.skip = skip
        self.average = average
        self._train_step = _make_train_step(model, optimizer, loss_fn, strategy, cfg.batch, average)
        self._val_step = _make_val_step(model, loss_fn)
        self._stream: Iterator | None = None
        self._stream_end = 0
        self._stream_mosaic_until: int | None = None
        self._detector = None

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder (always, except the other workers of a
        multi-worker run)."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        return (
            resolver is None
            or resolver.task_type in (None, "chief")
            or (resolver.task_type == "worker" and resolver.task_id == 0)
        )

    def steps_per_epoch(self) -> int:
        steps = len(self.train_set) // self.cfg.batch
        if self.cfg.max_steps:
            steps = min(steps, self.cfg.max_steps)
        return max(1, steps)

    def batches(
        self, epoch: int, step: int, epochs: int, mosaic_until: int | None = None
    ) -> Iterator:
        """The distributed training stream positioned at step ``step`` of ``epoch``, with
        mosaics in the epochs before ``mosaic_until`` (every epoch when ``None``).

        One stream serves the run's remaining epochs (a fresh pipeline per epoch left threads
        that halved the step rate); it is rebuilt only when the run outgrows it (a budget
        that allows more epochs) or its mosaics stop.
        """
        if (
            self._stream is None
            or epoch >= self._stream_end
            or mosaic_until != self._stream_mosaic_until
        ):
            self._stream = None  # the old pipeline's threads go before the new one starts
            ds = recipe.batches(
                self.train_set,
                self.meta,
                self.cfg,
                augment=self.cfg.augment,
                params=self.augmentation,
                epoch=epoch,
                epochs=epochs - epoch,
                batches_per_epoch=self.steps_per_epoch(),
                drop_remainder=True,
                mosaic_until=mosaic_until,
            )
            self._stream = iter(self.strategy.experimental_distribute_dataset(ds.skip(step)))
            self._stream_end, self._stream_mosaic_until = epochs, mosaic_until
        return self._stream

    def step(self, images, targets, lr: float) -> tuple[float, dict[str, float]]:
        """One optimizer step at learning rate ``lr``; returns the loss and its parts."""
        self.optimizer.learning_rate.assign(lr)
        loss, parts = self._train_step(images, targets)
        return float(loss), {k: float(v) for k, v in parts.items()}

    def first_non_finite(self) -> str | None:
        """The name of the first model or optimizer variable holding a NaN or infinity."""
        return first_non_finite([*self.model.weights, *self.optimizer.variables])

    def deployed(self):
        """A ``with`` block in which the network holds the weights to validate and deploy:
        the moving averages (:mod:`yolo_cli.train.ema`) when the run keeps them."""
        return self.average.applied() if self.average is not None else nullcontext()

    def validate(self, stopping: Callable[[], bool]) -> Validation | None:
        """Validation loss per image, mAP@0.5 and mAP@[.5:.95] (COCO-style AP, detections at the
        eval threshold) of the deployed weights (:meth:`deployed`); ``None`` when ``stopping()``
        turned true on the way. Unreadable images are skipped (reported through ``skip``)."""
        with self.deployed():
            return self._validate(stopping)

    def _validate(self, stopping: Callable[[], bool]) -> Validation | None:
        from yolo_cli.data.image import read_image
        from yolo_cli.inference import Detector, Thresholds
        from yolo_cli.metrics import COCO_IOU_THRESHOLDS, evaluate

        if len(self.val_set) == 0:
            return Validation.unscored()
        total, count = 0.0, 0
        for images, targets in recipe.batches(self.val_set, self.meta, self.cfg, augment=False):
            if stopping():
                return None
            s, n = self._val_step(images, targets)
            total += float(s)
            count += int(n)
        # unfolded, the detector reads the network's variables: traced once, it scores every
        # epoch's weights (the moving averages while deployed() holds them)
        if self._detector is None:
            thresholds = Thresholds(conf=DEFAULTS.eval_conf)
            self._detector = Detector(self.model, self.meta, thresholds, fold_bn=False)
        detector = self._detector
        truth, shown = [], []

        def readable():
            for s in self.val_set.samples:
                if stopping():
                    return
                try:
                    image = read_image(s.image)
                except YoloError as e:
                    self.skip(f"{e} (skipped)")
                    continue
                truth.append((s.boxes, s.classes))
                if len(shown) < DEFAULTS.board_images:
                    shown.append((Path(s.image).name, image))
                yield image

        detections = list(detector.detect_stream(readable(), self.cfg.batch))
        if stopping():
            return None
        result = evaluate(
            truth, detections, self.meta.num_classes, iou_thresholds=COCO_IOU_THRESHOLDS
        )
        drawn = [
            (name, _drawn(image, det, self.meta.names))
            for (name, image), det in zip(shown, detections)
        ]
        return Validation(total / max(count, 1), result.map, result.map_all, drawn)

    def save_best(self, run_dir: Path) -> None:
        from yolo_cli.modelfile import save_model

        with self.deployed():
            save_model(self.model, run_dir / BEST, self.meta, include_optimizer=False)

    def save_checkpoint(self, run_dir: Path, state: RunState) -> None:
        write_checkpoint(run_dir / CHECKPOINT, self.model, self.meta, state)


def _drawn(image: np.ndarray, detections, names) -> np.ndarray:
    """``image`` shrunk to fit :data:`_BOARD_SIDE` with the detections above the detection
    threshold drawn."""
    import cv2

    from yolo_cli.draw import draw_detections
    from yolo_cli.postprocess import Detections

    keep = detections.scores > DEFAULTS.conf_threshold
    kept = Detections(detections.boxes[keep], detections.scores[keep], detections.classes[keep])
    out = draw_detections(image, kept, names)
    scale = _BOARD_SIDE / max(out.shape[:2])
    if scale < 1:
        size = (round(out.shape[1] * scale), round(out.shape[0] * scale))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    return out


def load_splits(cfg: TrainConfig):
    """The train and val splits of ``cfg.data`` (default: the cached synthetic scenes); the
    val split may be empty. Raises :class:`YoloError` when the train split is."""
    from yolo_cli.data.load import build, read_source
    from yolo_cli.data.synth import default_synthetic

    path = cfg.data if cfg.data is not None else default_synthetic(n=cfg.synth_n)
    source = read_source(path)
    train, val = build(source, "train"), build(source, "val")
    if len(train) == 0:
        raise YoloError(
            f"{path}: no usable images in the train split ({source.problems.summary()})"
        )
    return train, val


def build_trainer(
    cfg: TrainConfig,
    hooks: TrainHooks,
    checkpoint: tuple[Path, ModelMeta] | None = None,
    skip: Callable[[str], None] | None = None,
) -> Trainer:
    """Device and strategy → data → heads → network and optimizer (weights from
    ``cfg.weights`` or from ``checkpoint``, a ``last.keras`` and its metadata) → loss.

    The datasets' problems go to ``hooks.on_problem``; ``skip`` (default the same hook) hears
    of each sample the trainer skips."""
    import keras

    from yolo_cli.device import select_device, select_strategy
    from yolo_cli.modelfile import load_model, model_path, read_meta

    strategy = select_strategy(cfg.strategy, select_device(cfg.device))
    keras.utils.set_random_seed(cfg.seed)
    train_set, val_set = load_splits(cfg)
    cfg = replace(cfg, lr=recipe.peak_lr(cfg, len(train_set.names)))
    for line in dict.fromkeys(train_set.problems.lines()):  # both splits' problems
        hooks.on_problem(line)
    if cfg.patience and len(val_set) == 0:
        raise YoloError(f"{train_set.root}: --patience needs a val split, and there is none")
    source = source_meta = None
    if checkpoint is not None:
        if not recipe.is_own(checkpoint[1]):
            source_path, source_meta = checkpoint  # a converted graph: rebuilt from the file
        cfg = replace(cfg, img_size=checkpoint[1].img_size)
        meta = replace(checkpoint[1], extra={**checkpoint[1].extra, "config": asdict(cfg)})
        if meta.names != list(train_set.names):
            raise YoloError(
                f"{train_set.root}: classes {list(train_set.names)} differ from the run's "
                f"{meta.names}"
            )
    else:
        if cfg.weights:
            source_path = model_path(cfg.weights)
            source_meta = read_meta(source_path)
        cfg = replace(cfg, img_size=recipe.input_size(cfg, source_meta))
        heads, line = recipe.plan_heads(cfg, train_set, source_meta)
        if line:
            hooks.on_notice(line)
        meta = ModelMeta(
            kind="yolo",
            names=list(train_set.names),
            img_size=cfg.img_size,
            heads=heads,
            conf=recipe.detect_conf(cfg),
            extra={"config": asdict(cfg), **recipe.lineage(source_meta)},
        )
    with strategy.scope():
        if source_meta is not None:
            source, _ = load_model(source_path)
        model, copied = recipe.build_network(cfg, meta, source, source_meta)
        optimizer = keras.optimizers.Adam(cfg.lr)
        model.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
        average = WeightAverage(model, optimizer) if cfg.ema else None
    if source is not None and checkpoint is None:
        hooks.on_notice(f"initialised {copied} layers from {cfg.weights}")
    if checkpoint is not None:
        try:
            model.load_weights(checkpoint[0])
        except Exception as e:  # Keras raises many types for a file that does not fit
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise YoloError(f"{checkpoint[0]}: cannot load the run's weights ({reason})") from None
    return Trainer(
        cfg,
        meta,
        strategy,
        train_set,
        val_set,
        model,
        optimizer,
        recipe.build_loss(cfg, meta),
        recipe.augmentation(cfg, train_set),
        skip or hooks.on_problem,
        average,
    )


@contextmanager
def _relay(logger_name: str, report: Callable[[str], None]):
    """Route a library logger's warnings to ``report`` (and not to the root logger) for the
    ``with`` block; the input pipeline logs the samples it skips this way."""
    logger = logging.getLogger(logger_name)

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            report(record.getMessage())

    handler, propagate = Relay(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _Skips:
    """Reports each skipped file once (the input pipeline and the validation pass may both
    meet the same unreadable image) and keeps them.

    The input pipeline reads images on tf.data's threads: a line heard there waits until the
    run's own thread passes it on (:meth:`flush`, before each hook call of the loop), so that
    ``hooks.on_problem`` is only ever called from the thread that started the run.
    """

    def __init__(self, hooks: TrainHooks):
        self.hooks = hooks
        self.files: set[str] = set()
        self.waiting: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.thread = threading.get_ident()

    def __call__(self, line: str) -> None:
        """``line`` is ``<file>: <problem>`` for a sample the run skips."""
        self.waiting.put(line)
        if threading.get_ident() == self.thread:
            self.flush()

    def flush(self) -> None:
        """Report the lines heard so far (on the run's own thread only)."""
        if threading.get_ident() != self.thread:
            return
        while not self.waiting.empty():
            line = self.waiting.get()
            file = line.split(": ", 1)[0]
            if file not in self.files:
                self.files.add(file)
                self.hooks.on_problem(line)

    def before(self, hooks: TrainHooks) -> TrainHooks:
        """``hooks`` whose progress calls first report the lines heard."""

        def flushing(hook):
            def call(*args):
                self.flush()
                hook(*args)

            return call

        return replace(
            hooks,
            on_epoch_start=flushing(hooks.on_epoch_start),
            on_step=flushing(hooks.on_step),
            on_epoch_end=flushing(hooks.on_epoch_end),
        )


def train(cfg: TrainConfig, hooks: TrainHooks | None = None) -> TrainResult:
    """Train a detector into ``cfg.out`` (default: the next ``runs/train/expN``).

    Raises :class:`YoloError` before any work for a run folder that cannot be made or already
    holds a run, and for data or weights that cannot be used (an empty run folder is removed).
    """
    from yolo_cli.runs import run_folder

    hooks = hooks or TrainHooks()
    with run_folder(cfg.out, "train") as run_dir:
        for name in (CHECKPOINT, BEST):
            if (run_dir / name).exists():
                raise YoloError(
                    f"{run_dir}: already holds a run; use --resume {run_dir} or another --out"
                )
        state = RunState(config=asdict(cfg), epochs=cfg.epochs)
        return _session(cfg, hooks, run_dir, state, cfg.minutes, checkpoint=None)


def resume(
    run_dir: str | Path,
    hooks: TrainHooks | None = None,
    *,
    epochs: int | None = None,
    minutes: float | None = None,
    patience: int | None = None,
    device: str | None = None,
    strategy: str | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its checkpoint, exactly where it stopped.

    epochs: extend (or shorten) the run to this many epochs in all; minutes: train this many
    more minutes (the epoch count re-planned after every epoch). Either one re-plans the
    learning-rate schedule for the new total from the current step on (extending a finished
    run raises the rate again to where the longer schedule is at that step). patience, device,
    strategy: replace the run's own. Raises :class:`YoloError` (one line) for a folder without
    a usable checkpoint or an ``epochs`` below the epochs already done.
    """
    hooks = hooks or TrainHooks()
    run_dir = Path(run_dir)
    path, meta, state = read_checkpoint(run_dir)
    try:
        cfg = TrainConfig(**state.config)
    except (TypeError, YoloError) as e:
        raise YoloError(f"{path}: corrupt run state (config: {e})") from None
    changes = dict(epochs=epochs, patience=patience, device=device, strategy=strategy)
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if epochs is not None:
        if epochs < state.epochs_done or (epochs == state.epochs_done and state.step):
            raise YoloError(
                f"--epochs {epochs}: {run_dir} has done {state.epochs_done} epochs already"
            )
        state.epochs = epochs
    if minutes is not None:
        cfg = replace(cfg, minutes=minutes)  # checked like any other option
        pace = state.seconds / state.epochs_done if state.epochs_done else None
        fits = int(minutes * 60 // pace) if pace else 1
        state.epochs = state.epochs_done + max(1, fits)
    state.config = asdict(cfg)
    for p in remove_stale_temporaries(run_dir):
        hooks.on_notice(f"removed {p}, left by a write cut short")
    if state.epochs_done >= state.epochs:
        hooks.on_notice(
            f"{run_dir}: all {state.epochs} epochs done; --epochs N or --minutes M extends it"
        )
        return _result(run_dir, state, Outcome.FINISHED, _Skips(hooks), "")
    return _session(cfg, hooks, run_dir, state, minutes, checkpoint=(path, meta))


def _session(
    cfg: TrainConfig,
    hooks: TrainHooks,
    run_dir: Path,
    state: RunState,
    minutes: float | None,
    checkpoint: tuple[Path, ModelMeta] | None,
) -> TrainResult:
    """Set up and run the loop under the stop signals; returns the result."""
    skips = _Skips(hooks)
    with StopSignals() as signals, _relay("yolo_cli.data.pipeline", skips):
        try:
            trainer = build_trainer(cfg, hooks, checkpoint, skips)
            if checkpoint is None:
                state.dropped_boxes = list(
                    recipe.dropped_boxes(trainer.train_set, trainer.meta, trainer.cfg)
                )
            signals.arm()
        except _SetupStopped:
            detail = "stopped before training began; nothing new saved"
            return _result(run_dir, state, signals.outcome(), skips, detail)
        dropped, total = state.dropped_boxes
        if dropped:
            hooks.on_notice(
                f"targets drop {dropped} of {total} training boxes (every anchor of their "
                "cell taken by a larger box)"
            )
        board = Board(run_dir) if trainer.is_chief else None
        budget = Budget(minutes, time.monotonic(), state.epochs_done) if minutes else None
        loop = _Loop(trainer, state, run_dir, skips.before(hooks), signals, board, budget)
        try:
            outcome, detail = loop.run()
        except KeyboardInterrupt:
            if signals.signum is not None:
                raise  # a second Ctrl-C: quit without saving
            loop.save()
            outcome, detail = Outcome.INTERRUPTED, loop.stopped_at()
        finally:
            if board is not None:
                board.close()
    if outcome is Outcome.STOPPED_NAN:
        if (run_dir / CHECKPOINT).exists():
            detail += f"; kept the last good checkpoint {run_dir / CHECKPOINT}"
        else:
            detail += "; nothing saved"
    return _result(run_dir, loop.state, outcome, skips, detail)


def _best_map(state: RunState) -> float:
    """Val mAP@[.5:.95] of the best epoch (NaN for a row from before it was recorded)."""
    return state.history[state.best_epoch - 1].get("val_map", math.nan)


def _result(run_dir, state: RunState, outcome, skips: _Skips, detail: str) -> TrainResult:
    skips.flush()
    return TrainResult(
        run_dir=run_dir,
        outcome=outcome,
        epochs_done=state.epochs_done,
        epochs=state.epochs,
        step=state.step,
        best_map50=state.best_map50,
        best_map=_best_map(state) if state.best_epoch else None,
        best_epoch=state.best_epoch,
        dropped_boxes=tuple(state.dropped_boxes),
        skipped=len(skips.files),
        seconds=state.seconds,
        detail=detail,
    )


class _Loop:
    """The epochs of one session over a :class:`RunState` that always describes the model's
    weights as they are: a step is counted in the same statement that follows it."""

    def __init__(self, trainer: Trainer, state: RunState, run_dir, hooks, signals, board, budget):
        self.trainer, self.state, self.run_dir = trainer, state, run_dir
        self.hooks, self.signals, self.board, self.budget = hooks, signals, board, budget
        self.seconds_before = state.seconds
        self.started = time.monotonic()
        self.saved = True  # the state on disk (or none yet) is the state in memory
        self.mosaics_stop: int | None = None

    def mosaic_until(self) -> int | None:
        """The epoch from which this session trains without mosaics (``None``: not yet), with a
        notice when they stop (:func:`recipe.mosaics_stop`)."""
        s, cfg = self.state, self.trainer.cfg
        stop = recipe.mosaics_stop(self.mosaics_stop, s.epochs_done, s.epochs, cfg.close_mosaic)
        if self.mosaics_stop is None and stop is not None and cfg.augment and cfg.mosaic:
            self.hooks.on_notice(
                f"epoch {stop + 1} of {s.epochs}: mosaics off for the rest of the run "
                f"(--close-mosaic {cfg.close_mosaic})"
            )
        self.mosaics_stop = stop
        return stop

    def stopping(self) -> bool:
        return self.signals.signum is not None

    def stopped_at(self) -> str:
        s = self.state
        where = f"epoch {s.epochs_done + 1}, step {s.step}" if s.step else f"epoch {s.epochs_done}"
        if not (self.run_dir / CHECKPOINT).exists():
            return f"stopped after {where}; nothing to save"
        return f"stopped after {where}; saved {self.run_dir / CHECKPOINT}"

    def run(self) -> tuple[Outcome, str]:
        s, cfg = self.state, self.trainer.cfg
        while True:
            if self.stopping():
                self.save()
                return self.signals.outcome(), self.stopped_at()
            if s.epochs_done >= s.epochs:
                return Outcome.FINISHED, ""
            if cfg.patience and s.best_epoch and s.epochs_done - s.best_epoch >= cfg.patience:
                return Outcome.EARLY_STOPPED, (
                    f"no val fitness gain for {s.epochs_done - s.best_epoch} epochs; "
                    f"best {recipe.describe_best(s.best_map50, _best_map(s), s.best_epoch)}"
                )
            bad = self.train_epoch()
            if bad:
                return Outcome.STOPPED_NAN, bad
            if self.stopping():
                continue
            bad = self.trainer.first_non_finite()
            if bad:
                return Outcome.STOPPED_NAN, (
                    f"weight {bad} is not finite after epoch {s.epochs_done + 1}"
                )
            validation = self.validate()
            if validation is not None:
                self.end_epoch(validation)

    def validate(self) -> Validation | None:
        """The epoch's validation, unscored when :func:`recipe.validates` skips it; ``None``
        when a stop signal cut it short."""
        s, trainer = self.state, self.trainer
        cfg, epoch = trainer.cfg, s.epochs_done + 1
        scored = len(trainer.val_set) * sum(
            math.isfinite(r.get("val_loss", math.nan)) for r in s.history
        )
        seen = epoch * trainer.steps_per_epoch() * cfg.batch
        stop_at = s.best_epoch + cfg.patience if cfg.patience else None
        if not recipe.validates(epoch, s.epochs, scored, seen, cfg.val_share, stop_at):
            return Validation.unscored()
        return trainer.validate(self.stopping)

    def train_epoch(self) -> str | None:
        """The epoch's remaining steps, until done or asked to stop; returns why the run must
        stop for a non-finite loss, else ``None``."""
        s, trainer = self.state, self.trainer
        steps = trainer.steps_per_epoch()
        if s.step >= steps:
            return None
        self.hooks.on_epoch_start(s.epochs_done + 1, s.epochs, steps, s.step)
        batches = trainer.batches(s.epochs_done, s.step, s.epochs, self.mosaic_until())
        while s.step < steps and not self.stopping():
            batch = next(batches, None)
            if batch is None:  # unreadable images were skipped: the stream ran short
                s.step, self.saved = steps, False
                break
            global_step = s.epochs_done * steps + s.step
            lr = recipe.learning_rate(global_step, steps, s.epochs, trainer.cfg)
            loss, parts = trainer.step(*batch, lr)
            if not math.isfinite(loss):
                return f"loss is {loss} at epoch {s.epochs_done + 1}, step {s.step + 1}"
            s.step, s.sums, self.saved = s.step + 1, _added(s.sums, loss, parts, lr), False
            if self.board is not None:
                self.board.step(global_step + 1, loss)
            self.hooks.on_step(s.step, steps, loss)
        return None

    def end_epoch(self, validation: Validation) -> None:
        """Close the epoch: history row, best.keras, then last.keras (that order: see
        :mod:`yolo_cli.train.checkpoint`), history files, TensorBoard."""
        s, trainer = self.state, self.trainer
        n = max(s.sums.get("steps", 0), 1)
        row = {
            "epoch": s.epochs_done + 1,
            "lr": s.sums.get("lr", float("nan")),
            "train_loss": s.sums.get("train_loss", 0.0) / n,
            **{p: s.sums.get(p, 0.0) / n for p in recipe.LOSS_PARTS},
            "val_loss": validation.loss,
            "val_map50": validation.map50,
            "val_map": validation.map,
        }
        # without a val mAP to go by, best.keras follows the latest epoch
        score = recipe.fitness(row)
        improved = not math.isfinite(score) and s.best_map50 is None
        best = recipe.fitness(s.history[s.best_epoch - 1]) if s.best_epoch else math.nan
        if math.isfinite(score) and not score <= best:
            s.best_map50, s.best_epoch, improved = validation.map50, row["epoch"], True
        s.history.append(row)
        s.epochs_done, s.step, s.sums, self.saved = s.epochs_done + 1, 0, {}, False
        if self.budget is not None:
            s.epochs = self.budget.plan(s.epochs_done, time.monotonic())
        if trainer.is_chief:
            with _writing(self.run_dir):
                if improved:
                    trainer.save_best(self.run_dir)
                self.save()
                write_history(self.run_dir, s.history, recipe.LOSS_PARTS)
            shown = validation.images if improved else []
            self.board.epoch(row, recipe.LOSS_PARTS, shown)
        self.saved = True
        self.hooks.on_epoch_end(row, s.epochs)

    def save(self) -> None:
        """Write the checkpoint of the state in memory (chief only), unless it is on disk."""
        self.state.seconds = self.seconds_before + time.monotonic() - self.started
        if self.trainer.is_chief and not self.saved:
            with _writing(self.run_dir):
                self.trainer.save_checkpoint(self.run_dir, self.state)
            if self.board is not None:
                self.board.flush_steps()
        self.saved = True


@contextmanager
def _writing(run_dir: Path):
    """A write that fails (disk full, permissions) as one :class:`YoloError` line; the file it
    was replacing stays whole (every write is atomic)."""
    try:
        yield
    except OSError as e:
        raise YoloError(f"{e.filename or run_dir}: cannot write ({e.strerror or e})") from None


def _added(sums: dict, loss: float, parts: dict, lr: float) -> dict:
    """The epoch's running sums with one more step (``lr``: the latest rate)."""
    out = dict(sums)
    out["steps"] = out.get("steps", 0) + 1
    out["train_loss"] = out.get("train_loss", 0.0) + loss
    for k, v in parts.items():
        out[k] = out.get(k, 0.0) + v
    out["lr"] = lr
    return out
