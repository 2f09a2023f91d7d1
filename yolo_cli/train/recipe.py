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

from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError
from yolo_cli.loss import PARTS
from yolo_cli.modelfile import Head, ModelMeta

LOSS_PARTS = PARTS  # the loss's parts by name: history columns and TensorBoard tags


def scaled_box_shapes(dataset, img_size: int) -> np.ndarray:
    """Box (w, h) of every object after letterboxing its image to ``img_size`` → ``(N, 2)``."""
    shapes = []
    for s in dataset.samples:
        scale = min(img_size / s.width, img_size / s.height)
        shapes.append((s.boxes[:, 2:] - s.boxes[:, :2]) * scale)
    return np.concatenate(shapes) if shapes else np.zeros((0, 2), np.float32)


def plan_heads(cfg, train_set, source: ModelMeta | None = None) -> tuple[list[Head], str | None]:
    """The model's heads: one grid of stride 32 whose ``cfg.num_anchors`` anchors are the
    k-means shapes of the training boxes, or the ``source`` model's when it was trained at
    the same size with as many anchors. Returns the heads and a line saying how the anchors
    were chosen (``None`` when they came from ``source``). Raises :class:`YoloError` when the
    split has fewer boxes than anchors.
    """
    from yolo_cli.anchors import kmeans_anchors

    if source is not None:
        anchors = source.heads[0].anchors
        if len(anchors) == cfg.num_anchors and source.img_size == cfg.img_size:
            return [Head(DEFAULTS.stride, anchors)], None
    shapes = scaled_box_shapes(train_set, cfg.img_size)
    if len(shapes) < cfg.num_anchors:
        raise YoloError(
            f"{train_set.root}: {len(shapes)} boxes in the train split are too few "
            f"for {cfg.num_anchors} anchors"
        )
    anchors, mean_iou = kmeans_anchors(shapes, cfg.num_anchors, seed=cfg.seed)
    anchors = anchors.round(3)
    shown = ", ".join(f"{w:.0f}×{h:.0f}" for w, h in anchors)
    line = f"anchors (k-means on {len(shapes)} boxes, mean best IoU {mean_iou:.3f}): {shown}"
    return [Head(DEFAULTS.stride, anchors.tolist())], line


def build_network(cfg, meta: ModelMeta, source=None):
    """The uncompiled Keras network for ``meta``; with ``source`` (a Keras model), every layer
    whose name and weight shapes agree starts from its weights; the first ``cfg.freeze``
    backbone blocks are frozen. Returns ``(model, layers copied from source)``."""
    from yolo_cli.model import build_model, freeze_blocks

    model = build_model(meta.num_classes, meta.heads, cfg.img_size, width=cfg.width)
    copied = _transfer_weights(model, source) if source is not None else 0
    if cfg.freeze:
        freeze_blocks(model, cfg.freeze)
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


def build_loss(cfg, meta: ModelMeta) -> Callable:
    """The course's loss (:class:`yolo_cli.loss.YoloLoss`) as ``(targets, raws) →
    (per_image (B,), parts)``; ``targets`` as :func:`batches` yields them."""
    from yolo_cli.loss import YoloLoss

    loss = YoloLoss(meta.heads, cfg.img_size, meta.class_activation, lambda_obj=cfg.lambda_obj)

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

    return Augmentation(pca=dataset_colour_basis(train_set))


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
):
    """Epochs ``epoch … epoch + epochs − 1`` of ``dataset`` as one ``tf.data.Dataset`` of
    ``(images (B, S, S, 3) float32, {"grids": one per head, "boxes"})`` batches of ``cfg.batch``
    (:func:`yolo_cli.data.pipeline.make_dataset`); an epoch's order and augmentation depend
    only on ``(cfg.seed, epoch)``."""
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
    )


def dropped_boxes(train_set, meta: ModelMeta) -> tuple[int, int]:
    """``(dropped, total)``: training boxes the target encoding drops because every anchor of
    their cell is taken (on the plain letterbox path; no image is read)."""
    from yolo_cli.data.pipeline import collision_count

    return collision_count(train_set, meta.heads, meta.img_size, meta.num_classes)


def learning_rate(step: int, steps_per_epoch: int, epochs: int, cfg) -> float:
    """The rate at global ``step`` of a run planned for ``epochs``: linear warm-up over
    ``cfg.warmup_epochs``, then cosine decay from ``cfg.lr`` to 5 % of it at the end."""
    total = max(1, epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
