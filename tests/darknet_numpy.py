"""An independent NumPy forward pass of a Darknet cfg + weights: the oracle for the importer.

Written from Darknet's C sources (parser.c, convolutional/maxpool/route/shortcut/upsample/
yolo/region layers) in Darknet's own layout, ``(C, H, W)`` float64, sharing no code with
``yolo_cli.darknet``. ``forward`` returns each ``[yolo]``/``[region]`` layer's input, i.e.
the raw head in Darknet's channel order ``[t_x, t_y, t_w, t_h, obj, classes…]`` per anchor;
:func:`to_project_layout` turns one into the project's ``(S, S, B, 5 + C)`` slot order
``[p_c, t_x, t_y, t_w, t_h, classes…]``.

Weights come from a ``reader(role, shape)`` callable: :func:`file_reader` reads a
``.weights`` file, :class:`RandomWeights` draws seeded values and writes them as one.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def parse(text: str) -> list[tuple[str, dict[str, str]]]:
    """Sections ``(name, {key: value})`` in order; comments ``#``/``;``, spaces removed."""
    sections = []
    for raw in text.splitlines():
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            sections.append((line[1:-1], {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1][key] = value
    return sections


def file_reader(path):
    """A reader over a ``.weights`` file; ``.seen`` holds the header's count, ``.left()``
    the floats not yet read."""
    data = np.fromfile(path, dtype=np.uint8)
    major, minor = data[:12].view(np.int32)[:2]
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    offset = 20 if wide else 16
    floats = data[offset:].view(np.float32).astype(np.float64)
    position = [0]

    def read(role, shape):
        n = int(np.prod(shape))
        chunk = floats[position[0] : position[0] + n]
        assert chunk.size == n, "weights file too short"
        position[0] += n
        return chunk.reshape(shape)

    read.left = lambda: floats.size - position[0]
    return read


class RandomWeights:
    """Seeded random weights in Darknet's order; ``write(path)`` saves them as ``.weights``.

    Kernels are scaled by 1/√fan-in so activations stay of order one through many layers;
    batch-norm variances are positive.
    """

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.values: list[np.ndarray] = []

    def __call__(self, role, shape):
        if role == "variance":
            v = self.rng.uniform(0.5, 1.5, shape)
        elif role == "kernel":
            v = self.rng.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
        elif role == "scale":
            v = self.rng.uniform(0.5, 1.5, shape)
        else:
            v = self.rng.normal(0, 0.5, shape)
        v = v.astype(np.float32)
        self.values.append(v.ravel())
        return v.astype(np.float64)

    def write(self, path, seen: int = 12345) -> None:
        header = np.array([0, 2, 0], np.int32).tobytes() + np.array([seen], np.uint64).tobytes()
        path.write_bytes(header + np.concatenate(self.values).astype("<f4").tobytes())


def activate(x, name):
    if name == "linear":
        return x
    if name == "leaky":
        return np.where(x > 0, x, 0.1 * x)
    if name == "logistic":
        return 1 / (1 + np.exp(-x))
    if name == "relu":
        return np.maximum(x, 0)
    if name == "mish":
        return x * np.tanh(np.logaddexp(0, x))
    if name == "swish":
        return x / (1 + np.exp(-x))
    raise ValueError(name)


def conv2d(x, kernel, stride, padding, groups):
    """x ``(C, H, W)``, kernel ``(N, C/groups, k, k)`` → ``(N, H', W')``; im2col + matmul."""
    c = x.shape[0]
    n, cg, k, _ = kernel.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    ho, wo = windows.shape[1:3]
    cols = windows.reshape(groups, c // groups, ho, wo, k, k).transpose(0, 1, 4, 5, 2, 3)
    cols = cols.reshape(groups, cg * k * k, ho * wo)
    w = kernel.reshape(groups, n // groups, cg * k * k)
    return np.matmul(w, cols).reshape(n, ho, wo)


def maxpool(x, size, stride, padding):
    """Darknet's max pool: ``padding // 2`` cells before, padded cells never win."""
    c, h, w = x.shape
    ho = (h + padding - size) // stride + 1
    wo = (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = np.empty((c, ho, wo))
    for i in range(ho):
        y0 = i * stride + off
        for j in range(wo):
            x0 = j * stride + off
            win = x[:, max(y0, 0) : min(y0 + size, h), max(x0, 0) : min(x0 + size, w)]
            out[:, i, j] = win.reshape(c, -1).max(axis=1)
    return out


def forward(cfg_text: str, image, read):
    """Run the network on ``image`` ``(H, W, 3)`` RGB in 0..1.

    Returns ``[(raw, anchors, classes)]`` per head in cfg order: raw ``(B·(5 + C), S, S)``.
    """
    sections = parse(cfg_text)
    x = np.asarray(image, np.float64).transpose(2, 0, 1)
    outputs, heads = [], []
    for index, (kind, o) in enumerate(sections[1:]):

        def ref(v, index=index):
            v = int(v)
            return outputs[index + v if v < 0 else v]

        if kind in ("convolutional", "conv"):
            n = int(o.get("filters", 1))
            k = int(o.get("size", 1))
            stride = int(o.get("stride", 1))
            padding = k // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
            groups = int(o.get("groups", 1))
            bn = int(o.get("batch_normalize", 0))
            bias = read("bias", (n,))
            if bn:
                scale, mean, var = read("scale", (n,)), read("mean", (n,)), read("variance", (n,))
            kernel = read("kernel", (n, x.shape[0] // groups, k, k))
            x = conv2d(x, kernel, stride, padding, groups)
            if bn:
                x = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
                x = x * scale[:, None, None]
            x = activate(x + bias[:, None, None], o.get("activation", "logistic"))
        elif kind in ("maxpool", "max"):
            stride = int(o.get("stride", 1))
            size = int(o.get("size", stride))
            x = maxpool(x, size, stride, int(o.get("padding", size - 1)))
        elif kind == "route":
            groups, gid = int(o.get("groups", 1)), int(o.get("group_id", 0))
            parts = []
            for v in o["layers"].split(","):
                src = ref(v)
                part = src.shape[0] // groups
                parts.append(src[gid * part : (gid + 1) * part])
            x = np.concatenate(parts, axis=0)
        elif kind == "shortcut":
            for v in o["from"].split(","):
                x = x + ref(v)
            x = activate(x, o.get("activation", "linear"))
        elif kind == "upsample":
            s = int(o.get("stride", 2))
            x = x.repeat(s, axis=1).repeat(s, axis=2)
        elif kind == "dropout":
            pass
        elif kind == "yolo":
            num = int(o.get("num", 1))
            mask = [int(m) for m in o["mask"].split(",")] if "mask" in o else list(range(num))
            heads.append((x, len(mask), int(o.get("classes", 20))))
            x = None
        elif kind == "region":
            heads.append((x, int(o.get("num", 1)), int(o.get("classes", 20))))
            x = None
        else:
            raise ValueError(f"oracle: no [{kind}]")
        outputs.append(x)
    return heads


def to_project_layout(raw, anchors: int, classes: int):
    """Darknet ``(B·(5 + C), S, S)`` → ``(S, S, B, 5 + C)`` with slots
    ``[obj, t_x, t_y, t_w, t_h, classes…]``."""
    _, h, w = raw.shape
    grid = raw.reshape(anchors, 5 + classes, h, w).transpose(2, 3, 0, 1)
    slots = [4, 0, 1, 2, 3, *range(5, 5 + classes)]
    return grid[..., slots]
