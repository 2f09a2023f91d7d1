"""The training losses, over every head of a model. Both follow the course's rule — the box
and class are learned only where an object is assigned, p_c everywhere.

``course`` (:class:`YoloLoss`), the course's localization loss with YOLO's weights. Where an
object is assigned (target ``p_c = 1``)::

    λ_obj · (p̂_c − 1)²  +  λ_coord · [(x̂ − x)² + (ŷ − y)² + (t̂_w − t_w)² + (t̂_h − t_h)²]
                +  cross-entropy(class)

and where none is, only ``λ_noobj · (p̂_c − 0)²`` — except that predictions whose box already
overlaps some ground-truth box with IoU > ``ignore_iou`` are not pushed toward ``p_c = 0``
(YOLOv2), since they are good boxes that merely lost the assignment. Box terms are compared in
the activated parameterisation of :func:`yolo_cli.postprocess.activate` (cell offsets after the
sigmoid, log-space sizes), which is how :mod:`yolo_cli.targets` writes the target. Each image's
loss is the sum over its slots.

``iou`` (:class:`IouAwareLoss`), the same rule with the error measures YOLOv4/v5 found to learn
real data: the box error is ``1 − CIoU`` of the decoded boxes (one number for position, size
and shape, insensitive to the object's scale), and p_c is learned by binary cross-entropy
everywhere toward an IoU-aware target — the IoU of the slot's predicted box with its object
where one is assigned, 0 elsewhere — so a slot's p_c comes to say how good its box is. The
empty slots' term is a mean per head (so thousands of empty slots cannot drown the few
assigned ones: the failure of the squared error on small, rare objects), weighted finer heads
first (YOLOv5's balance); box and class terms are means over each head's assigned slots in
the batch, summed over the heads (YOLOv5's: a head that is given few objects still learns their
boxes as firmly as one given many).

Both return per-image losses ``(batch,)`` and their parts (:data:`PARTS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yolo_cli.config import DEFAULTS

PARTS = ("coord", "obj", "noobj", "cls")
LOSSES = ("course", "iou")


def _class_error(tf, logits, onehot, class_activation: str):
    """Cross-entropy of the class scores against a one-hot target, per slot."""
    if class_activation == "sigmoid":
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=onehot, logits=logits)
        return tf.reduce_sum(bce, -1)
    return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)


def _per_image(tf, x):
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


@dataclass
class YoloLoss:
    """The course's loss: callable ``(grids_true, boxes_true, raws) → (loss (batch,), parts)``.

    grids_true, raws: one ``(batch, S_h, S_h, B_h, 5 + C)`` tensor per head (targets from
    :func:`yolo_cli.targets.assign_targets`, raw model outputs); boxes_true: ``(batch, M, 4)``
    xyxy model-input pixels, zero-padded (:func:`yolo_cli.targets.pad_boxes`). heads: the
    :class:`yolo_cli.modelfile.Head` of each. parts maps :data:`PARTS` to ``(batch,)`` tensors.
    """

    heads: Sequence
    img_size: int
    class_activation: str = "softmax"
    lambda_coord: float = DEFAULTS.lambda_coord
    lambda_obj: float = DEFAULTS.lambda_obj
    lambda_noobj: float = DEFAULTS.lambda_noobj
    ignore_iou: float = DEFAULTS.ignore_iou

    def __call__(self, grids_true, boxes_true, raws):
        import tensorflow as tf

        from yolo_cli.boxes import iou_tf
        from yolo_cli.postprocess import activate, grid_to_boxes

        parts = {k: 0.0 for k in PARTS}
        for grid_true, raw, head in zip(grids_true, raws, self.heads):
            raw = tf.cast(raw, tf.float32)
            grid_true = tf.cast(grid_true, tf.float32)
            obj = grid_true[..., 0]
            act = activate(raw, self.class_activation, head.scale_xy)
            p_c = act[..., 0]
            box_err = tf.reduce_sum(tf.square(act[..., 1:5] - grid_true[..., 1:5]), -1)
            cls_err = _class_error(tf, raw[..., 5:], grid_true[..., 5:], self.class_activation)
            pred_boxes, _, _ = grid_to_boxes(act, head.anchors, self.img_size)
            best_iou = tf.reduce_max(iou_tf(pred_boxes, boxes_true), axis=-1)
            ignore = tf.reshape(tf.cast(best_iou > self.ignore_iou, tf.float32), tf.shape(obj))
            ignore = tf.stop_gradient(ignore)
            empty = (1.0 - obj) * (1.0 - ignore)
            parts["coord"] += self.lambda_coord * _per_image(tf, obj * box_err)
            parts["obj"] += self.lambda_obj * _per_image(tf, obj * tf.square(p_c - 1.0))
            parts["noobj"] += self.lambda_noobj * _per_image(tf, empty * tf.square(p_c))
            parts["cls"] += _per_image(tf, obj * cls_err)
        return tf.add_n(list(parts.values())), parts


# YOLOv5's objectness balance, finest head first (its P3, P4, P5)
_BALANCE = (4.0, 1.0, 0.4)


@dataclass
class IouAwareLoss:
    """``1 − CIoU`` box error, IoU-aware binary cross-entropy on p_c, class cross-entropy; same
    call as :class:`YoloLoss`.

    Weights (YOLOv5's, for a loss averaged per image), each on a sum over the heads:
    ``lambda_box · 3 / n_heads`` on each head's mean ``1 − CIoU`` over its assigned slots; on
    p_c, ``(img_size / 640)² · 3 / n_heads`` times each head's mean binary cross-entropy over
    all its slots times its balance (4, 1, 0.4 from the finest head); ``lambda_cls · 3 /
    n_heads`` on each head's mean class cross-entropy over its assigned slots. ``obj`` and
    ``noobj`` are the p_c term's assigned and empty slots.
    """

    heads: Sequence
    img_size: int
    class_activation: str = "softmax"
    lambda_box: float = DEFAULTS.lambda_box
    lambda_cls: float = DEFAULTS.lambda_cls

    def __call__(self, grids_true, boxes_true, raws):
        import tensorflow as tf

        from yolo_cli.boxes import ciou_tf
        from yolo_cli.postprocess import activate, grid_to_boxes

        n_heads = len(self.heads)
        per_head = 3 / n_heads
        obj_weight = (self.img_size / 640) ** 2 * per_head
        box_weight, cls_weight = self.lambda_box * per_head, self.lambda_cls * per_head
        order = sorted(range(n_heads), key=lambda i: self.heads[i].stride)
        balance = {h: _BALANCE[min(rank, len(_BALANCE) - 1)] for rank, h in enumerate(order)}
        batch = tf.cast(tf.shape(raws[0])[0], tf.float32)
        parts = {k: 0.0 for k in PARTS}
        for i, (grid_true, raw, head) in enumerate(zip(grids_true, raws, self.heads)):
            raw = tf.cast(raw, tf.float32)
            grid_true = tf.cast(grid_true, tf.float32)
            act = activate(raw, self.class_activation, head.scale_xy)
            pred_boxes, _, _ = grid_to_boxes(act, head.anchors, self.img_size)
            true_boxes, obj, _ = grid_to_boxes(grid_true, head.anchors, self.img_size)
            ciou = ciou_tf(pred_boxes, true_boxes)
            target = obj * tf.stop_gradient(tf.maximum(ciou, 0.0))
            bce = tf.nn.sigmoid_cross_entropy_with_logits(
                labels=target, logits=tf.reshape(raw[..., 0], tf.shape(target))
            )
            slots = tf.cast(tf.shape(bce)[1], tf.float32)
            weight = obj_weight * balance[i] / slots
            cls_err = _class_error(tf, raw[..., 5:], grid_true[..., 5:], self.class_activation)
            assigned_per_image = tf.maximum(tf.reduce_sum(obj), 1.0) / batch
            parts["coord"] += box_weight * _per_image(tf, obj * (1.0 - ciou)) / assigned_per_image
            parts["obj"] += weight * _per_image(tf, obj * bce)
            parts["noobj"] += weight * _per_image(tf, (1.0 - obj) * bce)
            cls_sum = _per_image(tf, grid_true[..., 0] * cls_err)
            parts["cls"] += cls_weight * cls_sum / assigned_per_image
        return tf.add_n(list(parts.values())), parts


def make_loss(name: str, heads, img_size: int, class_activation: str = "softmax", **weights):
    """The loss ``name`` (:data:`LOSSES`) for these heads; ``weights`` override its λ's."""
    if name == "course":
        return YoloLoss(heads, img_size, class_activation, **weights)
    if name == "iou":
        return IouAwareLoss(heads, img_size, class_activation, **weights)
    raise ValueError(f"loss is one of {LOSSES}, got {name!r}")
