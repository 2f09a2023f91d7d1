"""The localization loss: the course's rule on every grid cell and anchor, with YOLO's weights.

Where an object is assigned (target ``p_c = 1``)::

    λ_obj · (p̂_c − 1)²  +  λ_coord · [(x̂ − x)² + (ŷ − y)² + (t̂_w − t_w)² + (t̂_h − t_h)²]
                +  cross-entropy(class)

and where none is, only ``λ_noobj · (p̂_c − 0)²`` — except that predictions whose box already
overlaps some ground-truth box with IoU > ``ignore_iou`` are not pushed toward ``p_c = 0``
(YOLOv2), since they are good boxes that merely lost the assignment. λ_obj is 1 in the course;
Darknet's YOLOv2 configs set it to 5 (``object_scale``), which keeps the p_c of small, rare objects
from collapsing under the many λ_noobj terms of the empty cells. Box terms are compared in
the activated parameterisation of :func:`yolo_cli.postprocess.activate` (cell offsets after the
sigmoid, log-space sizes), which is how :mod:`yolo_cli.targets` writes the target.
Each image's loss is the sum over its cells and anchors; batches average over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yolo_cli.config import DEFAULTS

PARTS = ("coord", "obj", "noobj", "cls")


@dataclass
class YoloLoss:
    """Callable ``(grid_true, boxes_true, raw_pred) → (loss (batch,), parts)``.

    grid_true: ``(batch, S, S, B, 5 + C)`` from :func:`yolo_cli.targets.encode_targets`;
    boxes_true: ``(batch, M, 4)`` xyxy model-input pixels, zero-padded
    (:func:`yolo_cli.targets.pad_boxes`); raw_pred: the model's ``(batch, S, S, B, 5 + C)``.
    anchors: ``(B, 2)`` in model-input pixels. parts maps :data:`PARTS` to ``(batch,)`` tensors.
    """

    anchors: np.ndarray
    img_size: int
    lambda_coord: float = DEFAULTS.lambda_coord
    lambda_obj: float = DEFAULTS.lambda_obj
    lambda_noobj: float = DEFAULTS.lambda_noobj
    ignore_iou: float = DEFAULTS.ignore_iou

    def __call__(self, grid_true, boxes_true, raw_pred):
        import tensorflow as tf

        from yolo_cli.boxes import iou_tf
        from yolo_cli.postprocess import grid_to_boxes

        raw_pred = tf.cast(raw_pred, tf.float32)
        grid_true = tf.cast(grid_true, tf.float32)
        obj = grid_true[..., 0]
        p_c = tf.sigmoid(raw_pred[..., 0])
        offsets = tf.sigmoid(raw_pred[..., 1:3])
        box_err = tf.reduce_sum(tf.square(offsets - grid_true[..., 1:3]), -1) + tf.reduce_sum(
            tf.square(raw_pred[..., 3:5] - grid_true[..., 3:5]), -1
        )
        cls_err = tf.nn.softmax_cross_entropy_with_logits(grid_true[..., 5:], raw_pred[..., 5:])

        activated = tf.concat([p_c[..., None], offsets, raw_pred[..., 3:5]], axis=-1)
        pred_boxes, _, _ = grid_to_boxes(activated, self.anchors, self.img_size)
        best_iou = tf.reduce_max(iou_tf(pred_boxes, boxes_true), axis=-1)
        ignore = tf.reshape(tf.cast(best_iou > self.ignore_iou, tf.float32), tf.shape(obj))
        ignore = tf.stop_gradient(ignore)

        def per_image(x):
            return tf.reduce_sum(x, axis=[1, 2, 3])

        parts = {
            "coord": self.lambda_coord * per_image(obj * box_err),
            "obj": self.lambda_obj * per_image(obj * tf.square(p_c - 1.0)),
            "noobj": self.lambda_noobj * per_image((1.0 - obj) * (1.0 - ignore) * tf.square(p_c)),
            "cls": per_image(obj * cls_err),
        }
        return tf.add_n(list(parts.values())), parts
