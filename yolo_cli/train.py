"""Training wiring: data → anchors → model → YoloLoss → one custom loop under any tf.distribute
strategy → checkpoints, history and plots in a run folder.

One loop serves every strategy (none, mirrored, multiworker): a per-replica step run with
``strategy.run`` over ``experimental_distribute_dataset``, losses averaged over the global batch.
A run folder holds ``last.keras`` (weights + optimizer state, written after every epoch and on
Ctrl-C), ``best.keras`` (best validation mAP@0.5), ``state.json`` (epochs done, best score,
schedule), ``history.csv`` and ``history.png``. ``resume`` continues from the next epoch with the
optimizer state, learning-rate schedule and data order of an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError
from yolo_cli.modelfile import Head, ModelMeta
from yolo_cli.plots import plot_history
from yolo_cli.runs import next_run_dir

log = logging.getLogger(__name__)

HISTORY_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "coord",
    "obj",
    "noobj",
    "cls",
    "val_loss",
    "val_map50",
)


@dataclass
class TrainConfig:
    """Everything ``yolo train`` takes. ``data=None`` means the synthetic street scenes."""

    data: str | None = None
    out: str | None = None
    num_anchors: int = DEFAULTS.num_anchors
    epochs: int = DEFAULTS.epochs
    img_size: int = DEFAULTS.img_size
    batch: int = DEFAULTS.batch
    lr: float = DEFAULTS.lr
    warmup_epochs: float = DEFAULTS.warmup_epochs
    seed: int = DEFAULTS.seed
    width: float = 0.5
    lambda_obj: float = DEFAULTS.lambda_obj
    augment: bool = True
    device: str = "auto"
    strategy: str = "auto"
    weights: str | None = None
    freeze: int = 0
    synth_n: int = 2000
    max_steps: int | None = None  # per epoch; for smoke tests and multi-worker checks
    minutes: float | None = None  # wall-clock budget: sets the epoch count after every epoch
    extra: dict = field(default_factory=dict)


def learning_rate(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 5 % of ``lr`` at the end."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def epochs_in_budget(minutes: float, elapsed: float, epochs_done: int, pace: float) -> int:
    """The epoch count a ``minutes`` budget holds: the epochs done plus the whole epochs that fit
    in the time left at ``pace`` seconds per epoch (``elapsed`` in seconds)."""
    return epochs_done + max(0, int((minutes * 60 - elapsed) // pace))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_splits(cfg: TrainConfig):
    from yolo_cli.data.load import load_dataset
    from yolo_cli.data.synth import default_synthetic

    path = cfg.data if cfg.data is not None else default_synthetic(n=cfg.synth_n, seed=0)
    train = load_dataset(path, split="train")
    val = load_dataset(path, split="val")
    if len(train) == 0:
        raise YoloError(f"{path}: no training images in the train split")
    return train, val


def scaled_box_shapes(dataset, img_size: int) -> np.ndarray:
    """Box (w, h) of every object after letterboxing its image to ``img_size`` → ``(N, 2)``."""
    shapes = []
    for s in dataset.samples:
        scale = min(img_size / s.width, img_size / s.height)
        shapes.append((s.boxes[:, 2:] - s.boxes[:, :2]) * scale)
    return np.concatenate(shapes) if shapes else np.zeros((0, 2), np.float32)


def _transfer_weights(model, source) -> int:
    """Copy weights layer by layer (by name, where shapes agree); returns how many layers."""
    by_name = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in model.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        if [w.shape for w in src.get_weights()] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(src.get_weights())
            copied += 1
    return copied


class Trainer:
    """Holds a run: strategy, data, model, optimizer, loss, and the run folder's files."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, resume_state: dict | None = None):
        import keras
        import tensorflow as tf

        from yolo_cli.anchors import kmeans_anchors
        from yolo_cli.device import select_device, select_strategy
        from yolo_cli.loss import YoloLoss
        from yolo_cli.model import build_model, freeze_blocks
        from yolo_cli.modelfile import load_model

        self.cfg = cfg
        self.run_dir = run_dir
        self.device = select_device(cfg.device)
        self.strategy = select_strategy(cfg.strategy, self.device)
        keras.utils.set_random_seed(cfg.seed)
        self.train_set, self.val_set = _load_splits(cfg)
        self.names = list(self.train_set.names)
        if cfg.img_size % 32:
            raise YoloError(f"--img-size {cfg.img_size}: must be a multiple of 32")

        source = None
        if resume_state is not None:
            anchors = np.asarray(resume_state["meta"]["heads"][0]["anchors"], np.float32)
        elif cfg.weights:
            source, source_meta = load_model(cfg.weights)
            anchors = np.asarray(source_meta.heads[0].anchors, np.float32)
            if len(anchors) != cfg.num_anchors or source_meta.img_size != cfg.img_size:
                anchors = None
        else:
            anchors = None
        if anchors is None:
            shapes = scaled_box_shapes(self.train_set, cfg.img_size)
            if len(shapes) < cfg.num_anchors:
                raise YoloError(
                    f"{cfg.data}: too few boxes ({len(shapes)}) for {cfg.num_anchors} anchors"
                )
            anchors, mean_iou = kmeans_anchors(shapes, cfg.num_anchors, seed=cfg.seed)
            log.info(
                "anchors (k-means, mean best IoU %.3f): %s", mean_iou, anchors.round(1).tolist()
            )
        self.anchors = anchors
        self.meta = ModelMeta(
            kind="yolo",
            names=self.names,
            img_size=cfg.img_size,
            heads=[Head(DEFAULTS.stride, anchors.round(3).tolist())],
            extra={"config": {k: v for k, v in asdict(cfg).items() if k != "extra"}},
        )

        with self.strategy.scope():
            self.model = build_model(len(self.names), anchors, cfg.img_size, width=cfg.width)
            if source is not None:
                n = _transfer_weights(self.model, source)
                log.info("initialised %d layers from %s", n, cfg.weights)
            if cfg.freeze:
                freeze_blocks(self.model, cfg.freeze)
            self.optimizer = keras.optimizers.Adam(cfg.lr)
            self.model.compile(optimizer=self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        if resume_state is not None:
            self.model.load_weights(run_dir / "last.keras")
        self.loss_fn = YoloLoss(self.meta.heads, cfg.img_size, lambda_obj=cfg.lambda_obj)
        self.augmentation = None
        if cfg.augment:
            from yolo_cli.data.augment import Augmentation
            from yolo_cli.data.pipeline import dataset_colour_basis

            self.augmentation = Augmentation(pca=dataset_colour_basis(self.train_set))
        self.global_batch = cfg.batch
        self._train_step = self._make_train_step(tf)
        self._val_step = self._make_val_step(tf)
        self._detector = None
        self._stream, self._stream_end = None, 0

    @property
    def is_chief(self) -> bool:
        resolver = getattr(self.strategy, "cluster_resolver", None)
        return (
            resolver is None
            or resolver.task_type in (None, "chief")
            or (resolver.task_type == "worker" and resolver.task_id == 0)
        )

    def _make_train_step(self, tf):
        model, opt, loss_fn, strategy = self.model, self.optimizer, self.loss_fn, self.strategy
        global_batch = self.global_batch

        def replica_step(images, targets):
            with tf.GradientTape() as tape:
                raw = model(images, training=True)
                per_image, parts = loss_fn([targets["grid"]], targets["boxes"], [raw])
                loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss, {
                k: tf.nn.compute_average_loss(v, global_batch_size=global_batch)
                for k, v in parts.items()
            }

        @tf.function
        def step(images, targets):
            loss, parts = strategy.run(replica_step, args=(images, targets))
            reduce = tf.distribute.ReduceOp.SUM
            return strategy.reduce(reduce, loss, axis=None), {
                k: strategy.reduce(reduce, v, axis=None) for k, v in parts.items()
            }

        return step

    def _make_val_step(self, tf):
        model, loss_fn = self.model, self.loss_fn

        @tf.function
        def step(images, targets):
            raw = model(images, training=False)
            per_image, _ = loss_fn([targets["grid"]], targets["boxes"], [raw])
            return tf.reduce_sum(per_image), tf.shape(per_image)[0]

        return step

    def steps_per_epoch(self) -> int:
        steps = len(self.train_set) // self.global_batch
        if self.cfg.max_steps:
            steps = min(steps, self.cfg.max_steps)
        return max(1, steps)

    def _dataset(self, dataset, epoch: int, augment: bool, drop_remainder: bool, **kw):
        from yolo_cli.data.pipeline import make_dataset

        return make_dataset(
            dataset,
            self.anchors,
            self.cfg.img_size,
            len(self.names),
            self.global_batch,
            augment=augment,
            seed=self.cfg.seed,
            epoch=epoch,
            drop_remainder=drop_remainder,
            params=self.augmentation,
            **kw,
        )

    def _train_batches(self, epoch: int, step: int):
        """The distributed training stream positioned at ``(epoch, step)``.

        One stream serves every remaining epoch (``train`` draws them in order); it is built at
        the first call (a resumed run starts mid-epoch) and rebuilt only when the run outgrows
        it (a wall-clock budget that allows more epochs).
        """
        if self._stream is None or epoch >= self._stream_end:
            steps = self.steps_per_epoch()
            ds = self._dataset(
                self.train_set,
                epoch,
                self.cfg.augment,
                drop_remainder=True,
                epochs=self.cfg.epochs - epoch,
                batches_per_epoch=steps,
            )
            self._stream = iter(self.strategy.experimental_distribute_dataset(ds.skip(step)))
            self._stream_end = self.cfg.epochs
        return self._stream

    def train_epoch(self, epoch: int, progress: TrainProgress) -> dict:
        """One pass over the training split from ``progress.step``; returns mean loss and parts.

        ``progress.step`` advances after every step, so an interruption knows exactly where
        the epoch stopped; the data order of an epoch is fixed by (seed, epoch), so a resumed
        run skips the batches already seen and sees the rest in the same order.
        """
        import click

        steps = self.steps_per_epoch()
        batches = self._train_batches(epoch, progress.step)
        totals = {"train_loss": 0.0, **{k: 0.0 for k in ("coord", "obj", "noobj", "cls")}}
        seen = 0
        bar = click.progressbar(
            length=steps,
            label=f"epoch {epoch + 1}/{self.cfg.epochs}",
            file=sys.stderr if progress.show else open(os.devnull, "w"),  # noqa: SIM115
            show_pos=True,
        )
        with bar:
            bar.update(progress.step)
            while progress.step < steps:
                batch = next(batches, None)
                if batch is None:  # unreadable images were skipped: the stream ran short
                    break
                images, targets = batch
                step = epoch * steps + progress.step
                self.optimizer.learning_rate.assign(learning_rate(step, steps, self.cfg))
                loss, parts = self._train_step(images, targets)
                loss = float(loss)
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss} at epoch {epoch + 1}, step {progress.step + 1}"
                    )
                totals["train_loss"] += loss
                for k, v in parts.items():
                    totals[k] += float(v)
                seen += 1
                progress.step += 1
                bar.update(1)
                if progress.on_step is not None:
                    progress.on_step(epoch, progress.step, loss)
        return {k: v / max(seen, 1) for k, v in totals.items()}

    def validate(self) -> dict:
        """Validation loss per image and mAP@0.5 (COCO-style AP, detections at conf 0.001)."""
        from yolo_cli.data.image import read_image
        from yolo_cli.inference import Detector, Thresholds
        from yolo_cli.metrics import evaluate

        if len(self.val_set) == 0:
            return {"val_loss": float("nan"), "val_map50": float("nan")}
        total, count = 0.0, 0
        for images, targets in self._dataset(self.val_set, 0, False, drop_remainder=False):
            s, n = self._val_step(images, targets)
            total += float(s)
            count += int(n)
        if self._detector is None:
            self._detector = Detector(self.model, self.meta, Thresholds(conf=DEFAULTS.eval_conf))
        detector = self._detector
        images = (read_image(s.image) for s in self.val_set.samples)
        detections = list(detector.detect_stream(images, self.global_batch))
        truth = [(s.boxes, s.classes) for s in self.val_set.samples]
        result = evaluate(truth, detections, len(self.names), iou_thresholds=(DEFAULTS.eval_iou,))
        return {"val_loss": total / max(count, 1), "val_map50": float(result.map)}

    def save(self, name: str, include_optimizer: bool = True) -> None:
        """Write ``name`` (e.g. ``last.keras``) in the run folder atomically (chief only)."""
        from yolo_cli.modelfile import save_model

        if self.is_chief:
            save_model(self.model, self.run_dir / name, self.meta, include_optimizer)


def _write_history(run_dir: Path, rows: list[dict]) -> None:
    lines = [",".join(HISTORY_FIELDS)]
    for r in rows:
        lines.append(
            ",".join(
                f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k]) for k in HISTORY_FIELDS
            )
        )
    _atomic_write_text(run_dir / "history.csv", "\n".join(lines) + "\n")
    plot_history(rows, run_dir / "history.png")


def _read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.csv"
    if not path.exists():
        return []
    with path.open() as f:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_map50: float
    stopped: str | None = None  # why the run ended early, if it did


@dataclass
class TrainProgress:
    """Where a run is: completed epochs and steps done in the current one.

    on_step(epoch, step, loss) is called after every step (a progress hook for callers).
    """

    epochs_done: int = 0
    step: int = 0
    show: bool = True
    on_step: Callable[[int, int, float], None] | None = None


def train(
    cfg: TrainConfig,
    resume: str | Path | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train a detector, or resume an interrupted run from its folder; returns what it wrote.

    Ctrl-C (KeyboardInterrupt) saves ``last.keras`` with the weights and optimizer state of
    that moment and records the step reached, so ``resume`` continues exactly there.
    """
    if resume is not None:
        run_dir = Path(resume)
        state_path = run_dir / "state.json"
        if not state_path.is_file() or not (run_dir / "last.keras").is_file():
            raise YoloError(f"{run_dir}: not a resumable run (needs state.json and last.keras)")
        try:
            state = json.loads(state_path.read_text())
            cfg = TrainConfig(**state["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise YoloError(f"{state_path}: corrupt run state ({e})") from None
    else:
        run_dir = Path(cfg.out) if cfg.out else next_run_dir("runs/train")
        if (run_dir / "state.json").exists():
            raise YoloError(
                f"{run_dir}: already holds a run; use --resume {run_dir} or another --out"
            )
        state = None
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir, resume_state=state)
    if show_progress:
        problems = dict.fromkeys(
            trainer.train_set.problems.lines() + trainer.val_set.problems.lines()
        )
        for line in problems:
            print(line, file=sys.stderr)
    rows = _read_history(run_dir) if state else []
    progress = TrainProgress(
        epochs_done=state["epochs_done"] if state else 0,
        step=state.get("step", 0) if state else 0,
        show=show_progress,
        on_step=on_step,
    )
    best = state["best_map50"] if state else -1.0

    def write_state() -> None:
        if trainer.is_chief:
            payload = {
                "config": asdict(cfg),
                "meta": asdict(trainer.meta),
                "epochs_done": progress.epochs_done,
                "step": progress.step,
                "best_map50": best,
            }
            _atomic_write_text(run_dir / "state.json", json.dumps(payload, indent=1))

    stopped = None
    started = time.monotonic()
    try:
        while progress.epochs_done < cfg.epochs:
            epoch = progress.epochs_done
            train_stats = trainer.train_epoch(epoch, progress)
            val_stats = trainer.validate()
            if cfg.minutes and state is None:
                # as ultralytics' `time=`, the learning-rate schedule stretching to match; the
                # pace is that of the epochs after the first, which also traces the graphs
                now = time.monotonic()
                if epoch == 0:
                    first_epoch_end = now
                pace = (now - first_epoch_end) / epoch if epoch else now - started
                cfg.epochs = epochs_in_budget(cfg.minutes, now - started, epoch + 1, pace)
            row = {
                "epoch": epoch + 1,
                "lr": float(trainer.optimizer.learning_rate.numpy()),
                **train_stats,
                **val_stats,
            }
            rows.append(row)
            progress.epochs_done, progress.step = epoch + 1, 0
            trainer.save("last.keras")
            if math.isfinite(row["val_map50"]) and row["val_map50"] > best:
                best = row["val_map50"]
                trainer.save("best.keras", include_optimizer=False)
            elif not (run_dir / "best.keras").exists():
                trainer.save("best.keras", include_optimizer=False)
            if trainer.is_chief:
                _write_history(run_dir, rows)
            write_state()
            log.info("epoch %d: %s", epoch + 1, row)
            if show_progress:
                print(
                    f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.3f}  "
                    f"val loss {row['val_loss']:.3f}  val mAP@0.5 {row['val_map50']:.3f}",
                    file=sys.stderr,
                )
    except FloatingPointError as e:
        stopped = f"stopped: {e}; kept the last good checkpoint {run_dir / 'last.keras'}"
    except KeyboardInterrupt:
        trainer.save("last.keras")
        write_state()
        stopped = (
            f"interrupted at epoch {progress.epochs_done + 1}, step {progress.step}; "
            f"saved {run_dir / 'last.keras'} (continue with --resume {run_dir})"
        )
    return TrainResult(run_dir, progress.epochs_done, best, stopped)
