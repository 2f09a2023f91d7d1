"""How a run learns: the parts a training recipe chooses, one small function each.

The heads (anchors by k-means), the network, the loss, the batches and the learning-rate
schedule. :class:`yolo_cli.train.loop.Trainer` calls these and knows nothing else of YOLO, so a
new recipe (another loss, target rule, several heads, mosaic) changes this module only. The
contract between them:

- the network maps ``(B, img_size, img_size, 3)`` float32 RGB 0..255 to one raw tensor per
  head (:func:`yolo_cli.modelfile.model_outputs`);
- :func:`batches` yields ``(images, targets)``, ``targets`` any structure the loss reads;
- the loss maps ``(targets, raws)`` to ``(per_image (B,), parts)``, ``parts`` a dict of
  ``(B,)`` tensors named by :data:`LOSS_PARTS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from yolo_cli.boxes import Letterbox
from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError
from yolo_cli.loss import PARTS
from yolo_cli.modelfile import Head, ModelMeta

LOSS_PARTS = PARTS  # the loss's parts by name: history columns and TensorBoard tags


def scaled_box_shapes(dataset, img_size: int) -> np.ndarray:
    """Box (w, h) of every object after letterboxing its image to ``img_size`` → ``(N, 2)``."""
    shapes = []
    for s in dataset.samples:
        scale = Letterbox.fit(s.width, s.height, img_size).scale
        shapes.append((s.boxes[:, 2:] - s.boxes[:, :2]) * scale)
    return np.concatenate(shapes) if shapes else np.zeros((0, 2), np.float32)


def input_size(cfg, source: ModelMeta | None) -> int:
    """The run's input side: ``cfg.img_size``, else the ``source`` model's, else the default.
    A converted ``source`` keeps its own (its graph is built for it)."""
    if source is not None and not is_own(source):
        if cfg.img_size not in (None, source.img_size):
            raise YoloError(
                f"--img-size {cfg.img_size}: {cfg.weights} is a converted network built for "
                f"{source.img_size} px; training from it runs at that size"
            )
        return source.img_size
    if cfg.img_size is not None:
        return cfg.img_size
    return source.img_size if source is not None else DEFAULTS.img_size


def peak_lr(cfg, num_classes: int) -> float:
    """The run's peak learning rate: ``cfg.lr``, else ultralytics' rule for short runs,
    ``DEFAULTS.lr_per_class · 5 / (4 + num_classes)`` (fewer classes, a larger step)."""
    if cfg.lr is not None:
        return cfg.lr
    return round(DEFAULTS.lr_per_class * 5 / (4 + num_classes), 6)


def anchors_per_head(cfg, n_heads: int) -> list[int]:
    """How many of the run's anchors each head gets: ``cfg.num_anchors`` split as evenly as
    possible, finer heads first (default: 5 for one grid, 3 a head for several)."""
    total = cfg.num_anchors or (
        DEFAULTS.num_anchors if n_heads == 1 else DEFAULTS.anchors_per_head * n_heads
    )
    if total < n_heads:
        raise YoloError(f"--num-anchors {total}: {n_heads} heads need at least one anchor each")
    return [len(part) for part in np.array_split(np.arange(total), n_heads)]


def plan_heads(cfg, train_set, source: ModelMeta | None = None) -> tuple[list[Head], str | None]:
    """The model's heads and their anchors.

    Strides: the coarsest ``cfg.heads`` of ``DEFAULTS.head_strides`` for this project's
    network (1: 32; 2: 16, 32; 3: 8, 16, 32), the ``source`` network's own when it is converted
    (its heads are rebuilt for these classes). Anchors:
    k-means on the training boxes at the input size, sorted by area, the smallest to the finest
    head; a ``source`` of this project's network trained at the same size with the same heads
    lends its own. ``scale_xy`` 2 under the ``ratio`` rule (its neighbour cells' offsets reach
    half a cell out), else 1. Returns the heads and a line saying how the anchors were chosen
    (``None`` when they came from this project's ``source``; for a converted one it says which
    classes keep its weights, :func:`yolo_cli.model.new_heads`).
    Raises :class:`YoloError` when the split has fewer boxes than anchors.
    """
    from yolo_cli.anchors import kmeans_anchors

    scale = 2.0 if cfg.assign == "ratio" else 1.0
    strides = (
        DEFAULTS.head_strides[-cfg.heads :]
        if source is None or is_own(source)
        else sorted(h.stride for h in source.heads)
    )
    counts = anchors_per_head(cfg, len(strides))
    if source is not None and is_own(source) and source.img_size == cfg.img_size:
        if [(h.stride, len(h.anchors)) for h in source.heads] == list(zip(strides, counts)):
            return [Head(h.stride, h.anchors, scale) for h in source.heads], None
    shapes = scaled_box_shapes(train_set, cfg.img_size)
    if len(shapes) < sum(counts):
        raise YoloError(
            f"{train_set.root}: {len(shapes)} boxes in the train split are too few "
            f"for {sum(counts)} anchors"
        )
    anchors, mean_iou = kmeans_anchors(shapes, sum(counts), seed=cfg.seed)
    anchors = anchors.round(3)
    shown = ", ".join(f"{w:.0f}×{h:.0f}" for w, h in anchors)
    line = f"anchors (k-means on {len(shapes)} boxes, mean best IoU {mean_iou:.3f}): {shown}"
    split = np.split(anchors, np.cumsum(counts)[:-1])
    if source is not None and not is_own(source):
        matched = zip(train_set.names, source_classes(train_set.names, source))
        shared = [n for n, m in matched if m is not None]
        line += f"; heads start from {cfg.weights}'s slots of the nearest anchor shape"
        line += f" (box, p_c and {', '.join(shared)})" if shared else " (box and p_c)"
    return [Head(st, a.tolist(), scale) for st, a in zip(strides, split)], line


def source_classes(names, source: ModelMeta) -> list[int | None]:
    """For each class of ``names``, the ``source`` model's class it is (by name, spelling or
    synonym, as :func:`yolo_cli.labelsets.match_classes` matches them), else ``None``."""
    from yolo_cli.labelsets import match_classes

    try:
        pairs = match_classes(source.names, names).pairs
    except YoloError:  # no class shared
        pairs = []
    classes: list[int | None] = [None] * len(names)
    for m, d, _ in pairs:
        classes[d] = m
    return classes


def is_own(meta: ModelMeta) -> bool:
    """Whether a model file holds this project's network (:func:`yolo_cli.model.build_model`),
    not a converted one's graph (imported, or trained here from an imported one)."""
    return "darknet" not in meta.extra


def lineage(source: ModelMeta | None) -> dict:
    """What a model trained from ``source`` records of its graph's origin in its metadata's
    ``extra``: the Darknet files of a converted ``source`` (so that a run from it, or from a
    model trained from it, rebuilds that graph)."""
    return {} if source is None or is_own(source) else {"darknet": source.extra["darknet"]}


def build_network(cfg, meta: ModelMeta, source=None, source_meta: ModelMeta | None = None):
    """The uncompiled Keras network for ``meta``; returns ``(model, layers copied)``.

    With ``source`` (a Keras model) of this project's network, every layer whose name and
    weight shapes agree starts from its weights. A converted ``source`` (a Darknet model) keeps
    its whole graph — backbone and neck — with new heads for ``meta``'s classes and anchors
    (:func:`yolo_cli.model.new_heads`: they start from its heads' box and p_c weights, and its
    class weights for the classes it shares with ``meta``). The first ``cfg.freeze`` blocks
    are frozen (:func:`yolo_cli.model.freeze_blocks`), BatchNorm with them.
    """
    from yolo_cli.model import build_model, freeze_blocks, new_heads

    if source is not None and source_meta is not None and not is_own(source_meta):
        model = new_heads(source, source_meta, meta, source_classes(meta.names, source_meta))
        copied = sum(1 for layer in model.layers if layer.weights) - len(meta.heads)
    else:
        model = build_model(
            meta.num_classes, meta.heads, cfg.img_size, width=cfg.width, spp=cfg.spp
        )
        copied = _transfer_weights(model, source) if source is not None else 0
    if cfg.freeze:
        try:
            freeze_blocks(model, cfg.freeze)
        except ValueError as e:
            raise YoloError(str(e)) from None
    return model, copied


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


def detect_conf(cfg) -> float | None:
    """The score threshold the trained model detects at unless told (``None``: the course's
    :data:`DEFAULTS.conf_threshold`). The IoU-aware loss teaches p_c the IoU of the slot's box
    with its object, so a good box scores 0.5–0.9 and the course's 0.6 would drop half of
    them; it gets :data:`DEFAULTS.iou_conf`, the threshold ultralytics and Darknet detect at."""
    return DEFAULTS.iou_conf if cfg.loss == "iou" else None


def build_loss(cfg, meta: ModelMeta) -> Callable:
    """The run's loss (:func:`yolo_cli.loss.make_loss`: ``cfg.loss``, the course's weighing
    its assigned p_c error by ``cfg.lambda_obj``) as ``(targets, raws) → (per_image (B,),
    parts)``; ``targets`` as :func:`batches` yields them."""
    from yolo_cli.loss import make_loss

    weights = {"lambda_obj": cfg.lambda_obj} if cfg.loss == "course" else {}
    loss = make_loss(cfg.loss, meta.heads, cfg.img_size, meta.class_activation, **weights)

    def loss_fn(targets, raws):
        return loss(list(targets["grids"]), targets["boxes"], raws)

    return loss_fn


def augmentation(cfg, train_set):
    """The run's augmentation settings (its PCA colour basis computed once from the training
    images), or ``None`` when ``cfg.augment`` is off."""
    if not cfg.augment:
        return None
    from yolo_cli.data.augment import Augmentation
    from yolo_cli.data.pipeline import dataset_colour_basis

    return Augmentation(pca=dataset_colour_basis(train_set), mosaic_p=cfg.mosaic)


def batches(
    dataset,
    meta: ModelMeta,
    cfg,
    *,
    augment: bool,
    params=None,
    epoch: int = 0,
    epochs: int = 1,
    batches_per_epoch: int | None = None,
    drop_remainder: bool = False,
    mosaic_until: int | None = None,
):
    """Epochs ``epoch … epoch + epochs − 1`` of ``dataset`` as one ``tf.data.Dataset`` of
    ``(images (B, S, S, 3) float32, {"grids": one per head, "boxes"})`` batches of ``cfg.batch``
    (:func:`yolo_cli.data.pipeline.make_dataset`, targets by ``cfg.assign``); an epoch's order
    and augmentation depend only on ``(cfg.seed, epoch)``. Epochs from ``mosaic_until`` on
    (when given) make no mosaics."""
    from yolo_cli.data.pipeline import make_dataset

    return make_dataset(
        dataset,
        meta.heads,
        cfg.img_size,
        meta.num_classes,
        cfg.batch,
        augment=augment,
        seed=cfg.seed,
        epoch=epoch,
        drop_remainder=drop_remainder,
        params=params,
        epochs=epochs,
        batches_per_epoch=batches_per_epoch,
        rule=cfg.assign,
        mosaic_until_epoch=mosaic_until,
    )


def fitness(row: dict) -> float:
    """An epoch's score for ``best.keras`` and ``--patience``: ``DEFAULTS.fitness`` weights on
    its history row's val mAP@0.5 and mAP@[.5:.95] (NaN without them: a row of a run from
    before mAP@[.5:.95] was recorded, or a run without a val split)."""
    w50, w = DEFAULTS.fitness
    return w50 * row.get("val_map50", math.nan) + w * row.get("val_map", math.nan)


def validates(
    epoch: int,
    planned: int,
    scored: int,
    seen: int,
    share: float,
    stop_at: int | None = None,
) -> bool:
    """Whether ``epoch`` (1-based) of the ``planned`` epochs is validated: each of the last two
    is (``best.keras`` is most often one of them, and a ``--minutes`` plan may shrink by one),
    so is the epoch from which ``--patience`` stops the run without a gain (``stop_at``), and
    any other while the val images scored so far (``scored``) are at most ``share`` of all the
    images the run has passed through the network (``seen`` training images by this epoch's
    end, and ``scored``). A val image costs about what a training image does on a CPU (two
    forward passes, loss and detections, against one forward and one backward), so ``share``
    bounds validation's share of the time; BCCD's 87 val images took a third of its epochs'
    time when every epoch was validated. Counts, not seconds: the same run, resumed or not,
    scores the same epochs."""
    last = epoch >= planned - 1
    deciding = stop_at is not None and epoch >= stop_at
    return last or deciding or scored <= share * (seen + scored)


def describe_best(map50: float, map_all: float, epoch: int) -> str:
    """``val mAP@0.5 0.612, mAP@[.5:.95] 0.301 (epoch 27)``: the epoch of best fitness."""
    return f"val mAP@0.5 {map50:.3f}, mAP@[.5:.95] {map_all:.3f} (epoch {epoch})"


def mosaics_stop(stopped: int | None, epochs_done: int, planned: int, close: int) -> int | None:
    """The epoch from which a session trains without mosaics: ``stopped`` once set, else the
    first epoch to begin within the last ``close`` of the ``planned`` epochs (``None``: not
    yet; never when ``close`` is 0). A ``--minutes`` plan moves with the pace after every epoch;
    the decision does not, so the mosaics neither come back nor wait for a receding end."""
    if stopped is None and close and epochs_done >= planned - close:
        return epochs_done
    return stopped


def dropped_boxes(train_set, meta: ModelMeta, cfg) -> tuple[int, int]:
    """``(dropped, total)``: training boxes the target encoding cannot place, every slot they
    may take held by a larger box (on the plain letterbox path; no image is read)."""
    from yolo_cli.data.pipeline import collision_count

    return collision_count(train_set, meta.heads, meta.img_size, meta.num_classes, rule=cfg.assign)


def learning_rate(step: int, steps_per_epoch: int, epochs: int, cfg) -> float:
    """The rate at global ``step`` of a run planned for ``epochs``: linear warm-up over
    ``cfg.warmup_epochs``, then cosine decay from ``cfg.lr`` to 5 % of it at the end."""
    total = max(1, epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
