"""The Keras YOLO grid/anchor model: a Darknet-tiny style backbone and 1×1 convolutional heads.

Input: ``(batch, size, size, 3)`` float32 RGB in 0..255 (the model rescales), ``size`` a multiple
of 32. Output: per head, raw logits ``(batch, S, S, B, 5 + C)`` with ``S = size / stride`` — the
course's ``[p_c, b_x, b_y, b_w, b_h, c_1 … c_C]`` per cell and anchor, decoded by
:mod:`yolo_cli.postprocess`. Only stock Keras layers (no Lambda), so the file loads in safe mode.

The backbone: block 1 is a 3×3 stride-2 conv → BatchNorm → LeakyReLU (the full-resolution
layers are memory-bound on a CPU); blocks 2–5 are 3×3 conv → BatchNorm → LeakyReLU → 2×2 max
pool (stride 32 after block 5); blocks 6 and 7 are 3×3 conv blocks at stride 32. The optional
passthrough (YOLOv2) squeezes block 5's stride-16 map with a 1×1 conv and folds each 2×2 patch
into channels (space-to-depth) before block 7, so small objects keep their finer detail at the
coarse grid. The stride-32 head reads block 7. A head at stride 16 (or 8) reads the next coarser
map, reduced by a 1×1 conv, upsampled ×2 and joined to the backbone's own map at that stride,
through one 3×3 conv block (YOLOv3-tiny's top-down path).
"""

from __future__ import annotations

import numpy as np

from yolo_cli.config import DEFAULTS

STRIDE = DEFAULTS.stride  # the backbone's total stride: the coarsest head's
HEAD_STRIDES = DEFAULTS.head_strides
BASE_FILTERS = (16, 32, 64, 128, 256, 512, 512)


def block_names(n_blocks: int = len(BASE_FILTERS)) -> list[str]:
    """Names of the backbone blocks, in order; ``--freeze N`` freezes the first N."""
    return [f"block{i + 1}" for i in range(n_blocks)]


def _conv_bn_leaky(x, filters: int, kernel: int, name: str, strides: int = 1):
    from keras import layers

    x = layers.Conv2D(
        filters, kernel, strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    # synchronized: under MirroredStrategy the statistics are those of the global batch, so
    # training on N replicas computes what one device would. momentum 0.97 (YOLOv5/v8's 0.03
    # in PyTorch terms): the moving statistics catch up within a few hundred steps
    x = layers.BatchNormalization(momentum=0.97, synchronized=True, name=f"{name}_bn")(x)
    return layers.LeakyReLU(0.1, name=f"{name}_act")(x)


def _space_to_depth(x, name: str):
    """``(H, W, C)`` → ``(H/2, W/2, 4C)`` with Reshape/Permute only (safe-mode loadable)."""
    from keras import layers

    h, w, c = x.shape[1:]
    x = layers.Reshape((h // 2, 2, w // 2, 2, c), name=f"{name}_split")(x)
    x = layers.Permute((1, 3, 2, 4, 5), name=f"{name}_permute")(x)
    return layers.Reshape((h // 2, w // 2, 4 * c), name=f"{name}_fold")(x)


def build_model(
    num_classes: int,
    heads,
    img_size: int = DEFAULTS.img_size,
    width: float = DEFAULTS.width,
    passthrough: bool = True,
    name: str = "yolo",
    spp: bool = DEFAULTS.spp,
):
    """Build the detector.

    num_classes: C; heads: :class:`yolo_cli.modelfile.Head` list (strides from 8, 16, 32 —
    32 always — and their anchor counts), or an ``(B, 2)`` anchor array for the course's one
    stride-32 grid; img_size: a multiple of 32; width: multiplier on :data:`BASE_FILTERS`
    channels (1.0 is tiny-YOLO's widths); spp: pool the stride-32 features at three widths
    (:func:`_spatial_pyramid`), so each cell sees the whole input.
    Returns an uncompiled ``keras.Model``: one output ``(batch, S, S, B, 5 + C)`` for one head,
    else one per head in the order given. A finer head sees the coarser features upsampled and
    joined to its own (a top-down path as in YOLOv3-tiny).
    """
    import keras
    from keras import layers

    from yolo_cli.modelfile import Head

    if img_size % STRIDE or img_size < STRIDE:
        raise ValueError(f"img_size must be a positive multiple of {STRIDE}, got {img_size}")
    if not (isinstance(heads, list | tuple) and heads and isinstance(heads[0], Head)):
        heads = [Head(STRIDE, np.asarray(heads, np.float32).reshape(-1, 2).tolist())]
    strides = [h.stride for h in heads]
    if (
        STRIDE not in strides
        or not set(strides) <= set(HEAD_STRIDES)
        or len(set(strides)) != len(strides)
    ):
        raise ValueError(
            f"head strides are distinct values of {HEAD_STRIDES} with {STRIDE}, got {strides}"
        )
    filters = [max(8, int(round(f * width / 8)) * 8) for f in BASE_FILTERS]
    names = block_names()

    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    features = {}
    x = _conv_bn_leaky(x, filters[0], 3, names[0], strides=2)
    for i in range(1, 5):
        x = _conv_bn_leaky(x, filters[i], 3, names[i])
        features[2**i] = x  # block i + 1's output (stride 2^i), before its pool
        x = layers.MaxPooling2D(2, name=f"{names[i]}_pool")(x)
    x = _conv_bn_leaky(x, filters[5], 3, names[5])
    if passthrough:
        f = _conv_bn_leaky(features[16], max(8, filters[4] // 4), 1, "passthrough")
        x = layers.Concatenate(name="passthrough_concat")([_space_to_depth(f, "passthrough"), x])
    features[32] = _conv_bn_leaky(x, filters[6], 3, names[6])
    if spp:
        features[32] = _spatial_pyramid(features[32], "spp")
    # the head starts at p_c = 0.5 (zero bias), not at RetinaNet's prior of 0.01: under the
    # squared error on a sigmoid, p_c = 0.01 leaves an assigned slot a gradient of only
    # 2·0.99·0.01·0.99 ≈ 0.02, which makes objectness learn several times slower
    if len(heads) == 1:
        return keras.Model(
            inputs, _head(features[32], heads[0], img_size, num_classes, ""), name=name
        )
    maps = {STRIDE: features[STRIDE]}
    for stride in sorted(strides, reverse=True)[1:]:
        coarser = maps[stride * 2]
        c = max(8, coarser.shape[-1] // 2)
        up = _conv_bn_leaky(coarser, c, 1, f"lateral{stride}")
        up = layers.UpSampling2D(2, name=f"lateral{stride}_up")(up)
        joined = layers.Concatenate(name=f"lateral{stride}_concat")([up, features[stride]])
        maps[stride] = _conv_bn_leaky(joined, features[stride].shape[-1], 3, f"neck{stride}")
    outputs = [_head(maps[h.stride], h, img_size, num_classes, f"_s{h.stride}") for h in heads]
    return keras.Model(inputs, outputs, name=name)


def _spatial_pyramid(x, name: str):
    """YOLOv5's SPPF: a 1×1 conv halves the channels, three chained 5×5 max pools (stride 1)
    see 5, 9 and 13 cells around each cell, and a 1×1 conv fuses the four. At stride 32 that
    adds 384 px of receptive field for a few percent of the compute: block 7 alone sees
    about 220 px, less than a large object, let alone the image around it."""
    from keras import layers

    c = x.shape[-1]
    x = _conv_bn_leaky(x, max(8, c // 2), 1, f"{name}_reduce")
    pooled = [x]
    for i in range(3):
        pooled.append(
            layers.MaxPooling2D(5, 1, padding="same", name=f"{name}_pool{i + 1}")(pooled[-1])
        )
    x = layers.Concatenate(name=f"{name}_concat")(pooled)
    return _conv_bn_leaky(x, c, 1, f"{name}_fuse")


def _head(x, head, img_size: int, num_classes: int, suffix: str):
    """1×1 convolution to ``B·(5 + C)`` channels, reshaped to the grid ``(S, S, B, 5 + C)``."""
    from keras import layers

    s, b = img_size // head.stride, len(head.anchors)
    x = layers.Conv2D(b * (5 + num_classes), 1, name=f"head{suffix}")(x)
    return layers.Reshape((s, s, b, 5 + num_classes), name=f"grid{suffix}")(x)


def freeze_blocks(model, n: int) -> list[str]:
    """Freeze the first ``n`` blocks (transfer learning); returns the frozen layer names.

    Blocks are this project's backbone blocks (``block1`` … ``block7``), or for a converted
    Darknet network its layers by number (``conv0``, ``conv0_bn``, ``maxpool3`` … belong to
    layers 0, 0, 3: the first ``n`` layers of its cfg). BatchNorm layers of frozen blocks run in
    inference mode (Keras does this for ``trainable = False``), so their statistics stay those
    of the source model. Raises ``ValueError`` when the network has fewer than ``n`` blocks.
    """
    own = [f"{b}_" for b in block_names()]
    if any(layer.name.startswith(tuple(own)) for layer in model.layers):
        if n > len(own):
            raise ValueError(f"--freeze {n}: this network has {len(own)} blocks")
        blocks = {layer.name: _own_block(layer.name, own) for layer in model.layers}
    else:
        blocks = {layer.name: _darknet_layer(layer.name) for layer in model.layers}
        if n > 1 + max((b for b in blocks.values() if b is not None), default=-1):
            raise ValueError(f"--freeze {n}: this network has fewer layers")
    frozen = []
    for layer in model.layers:
        block = blocks[layer.name]
        if block is not None and block < n:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def _own_block(name: str, prefixes: list[str]) -> int | None:
    return next((i for i, p in enumerate(prefixes) if name.startswith(p)), None)


def _darknet_layer(name: str) -> int | None:
    """A converted network's layer number from a layer name (``conv12_bn`` → 12)."""
    import re

    m = re.match(r"^[a-z]+(\d+)(?:_|$)", name)
    return int(m.group(1)) if m else None


def new_heads(source, source_meta, meta, classes=()):
    """``source``'s network with a new 1×1 head convolution for each of ``meta``'s heads, on
    the features ``source``'s own head convolution reads: the backbone and neck keep their
    weights, the heads learn ``meta``'s classes and anchors (transfer learning from a converted
    model). ``meta.heads`` are matched to ``source``'s outputs (``source_meta.heads``) by stride.

    Each new slot starts from the source head's slot whose anchor shape is nearest (IoU of
    shapes): its p_c and box channels, the w and h biases shifted by ``log(source anchor /
    anchor)`` so that its boxes keep their size, and class ``c``'s channel from the source's
    class ``classes[c]`` (random where that is ``None`` or ``classes`` is shorter).
    """
    import keras
    from keras import layers

    outputs = []
    for out, src_head in zip(source.outputs, source_meta.heads):
        grid = out._keras_history.operation  # the Reshape to (S, S, B, 5 + C)
        conv = grid.input._keras_history.operation  # the head's 1×1 convolution
        head = next(h for h in meta.heads if h.stride == src_head.stride)
        s, b, c = conv.input.shape[1], len(head.anchors), meta.num_classes
        new = layers.Conv2D(b * (5 + c), 1, name=f"head_s{head.stride}")
        x = new(conv.input)
        kept = _kept_rows(conv.get_weights(), new.get_weights(), src_head.anchors, head, classes)
        new.set_weights(kept)
        outputs.append(
            (head.stride, layers.Reshape((s, s, b, 5 + c), name=f"grid_s{head.stride}")(x))
        )
    order = {h.stride: k for k, h in enumerate(meta.heads)}
    outputs.sort(key=lambda so: order[so[0]])
    return keras.Model(source.input, [o for _, o in outputs], name=source.name)


def _kept_rows(source, fresh, source_anchors, head, classes) -> list:
    """A head convolution's ``[kernel (1, 1, C_in, B·(5 + C)), bias (B·(5 + C),)]`` ``fresh``,
    each slot ``j`` (anchor ``head.anchors[j]``) given the p_c, box and ``classes`` channels of
    the ``source`` slot with the nearest anchor shape, its w, h bias shifted to keep its boxes."""
    from yolo_cli.boxes import iou_wh

    src_anchors = np.asarray(source_anchors, np.float32)
    new_anchors = np.asarray(head.anchors, np.float32)
    nearest = iou_wh(new_anchors, src_anchors).argmax(axis=1)
    kept = []
    for src, out in zip(source, fresh):
        src = src.reshape(*src.shape[:-1], len(src_anchors), -1)[..., nearest, :]
        out = out.reshape(*out.shape[:-1], len(new_anchors), -1).copy()
        out[..., :5] = src[..., :5]
        for c, m in enumerate(classes):
            if m is not None:
                out[..., 5 + c] = src[..., 5 + m]
        kept.append(out)
    kernel, bias = kept
    bias[:, 3:5] += np.log(src_anchors[nearest] / new_anchors)
    return [kernel.reshape(fresh[0].shape), bias.reshape(fresh[1].shape)]


def resized_model(model, meta, img_size: int, path):
    """The same network and weights at another input size.

    Every layer is convolutional except the Reshape layers, whose shapes follow the input
    size, so :func:`build_model` at ``img_size`` with the training build
    (``meta.extra["config"]["width"]``, passthrough when the model has one) takes the same
    weights. Anchors stay in input pixels: an object of n pixels looks alike at any input size.
    Raises :class:`YoloError` when the model does not say how it was built or the weights differ.
    """
    from yolo_cli.errors import YoloError

    refuse = f"{path}: --img-size {img_size} is unsupported by this model (input {meta.img_size})"
    if model is None:
        raise YoloError(f"{refuse}: an exported model runs at its export size; export it again "
                        f"with --img-size {img_size}")  # fmt: skip
    if img_size % STRIDE or img_size < STRIDE:
        raise YoloError(f"{refuse}: sizes are multiples of {STRIDE}")
    width = meta.extra.get("config", {}).get("width")
    if width is None:
        raise YoloError(f"{refuse}: the file does not record how the network was built")
    names = {layer.name for layer in model.layers}
    passthrough, spp = "passthrough_concat" in names, "spp_concat" in names
    rebuilt = build_model(meta.num_classes, meta.heads, img_size, width, passthrough, spp=spp)
    weights = model.get_weights()
    if [w.shape for w in weights] != [w.shape for w in rebuilt.get_weights()]:
        raise YoloError(f"{refuse}: its layers differ from the standard network")
    rebuilt.set_weights(weights)
    return rebuilt
