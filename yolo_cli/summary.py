"""A model described the way the course tabulates LeNet-5: per layer, output shape, activation
size, parameters and multiply-adds — and the bytes each layer moves.

Conv arithmetic from the course: ``n_out = ⌊(n + 2p − f) / s⌋ + 1``; a conv layer has
``(f · f · n_c + 1) · filters`` parameters (no ``+ 1`` without bias) and does
``n_out_h · n_out_w · filters · f · f · n_c`` multiply-adds per image.

Bytes moved per image: the layer's input activations read, its output written and its weights
read, float32 (4 bytes each), once each — the least memory traffic the layer can do. Multiply-
adds per byte moved (arithmetic intensity) says which layers a CPU runs at its arithmetic rate
and which wait on memory: the first layers of a detector see large images through few channels
and do few multiply-adds per byte; BatchNorm and activation layers do none and only move bytes
(why :func:`yolo_cli.inference.fold_batchnorm` removes BatchNorm, and why runtimes fuse the
activation into the convolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT32_BYTES = 4


@dataclass
class LayerRow:
    """One layer: output shape without the batch, output activations, parameters, multiply-adds
    and bytes moved per image (inputs + output + weights, float32)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    activation_size: int
    params: int
    macs: int
    bytes_moved: int = 0

    @property
    def intensity(self) -> float:
        """Multiply-adds per byte moved (0 for a layer that moves nothing)."""
        return self.macs / self.bytes_moved if self.bytes_moved else 0.0


def conv_output_size(n: int, f: int, s: int = 1, p: int = 0) -> int:
    """The course's formula ``⌊(n + 2p − f) / s⌋ + 1``."""
    return (n + 2 * p - f) // s + 1


def layer_macs(layer, input_shape=None, output_shape=None) -> int:
    """Multiply-adds per image of one Keras layer (0 for layers that do no products).

    input_shape, output_shape: ``(batch, …)`` shapes to count at (default: the layer's own, as
    built). Conv2D: ``out_h · out_w · k_h · k_w · (c_in / groups) · filters``; Dense:
    ``positions · in · units``.
    """
    from keras import layers

    if not isinstance(layer, layers.Conv2D | layers.Dense):
        return 0
    in_shape = input_shape if input_shape is not None else layer.input.shape
    out = (output_shape if output_shape is not None else layer.output.shape)[1:]
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        return int(np.prod(out)) * kh * kw * (in_shape[-1] // layer.groups)
    return int(np.prod(out[:-1] or (1,))) * in_shape[-1] * layer.units


def layer_bytes(layer) -> int:
    """Bytes one Keras layer moves per image, float32: every input activation read once, its
    output written once, its weights read once (an input layer moves nothing)."""
    from keras import layers

    if isinstance(layer, layers.InputLayer):
        return 0
    inputs = layer.input if isinstance(layer.input, list | tuple) else [layer.input]
    values = sum(int(np.prod(t.shape[1:])) for t in inputs)
    values += int(np.prod(layer.output.shape[1:])) + int(layer.count_params())
    return values * FLOAT32_BYTES


def model_table(model) -> list[LayerRow]:
    """One :class:`LayerRow` per layer of a functional/sequential Keras model (input first)."""
    rows = []
    for layer in model.layers:
        shape = tuple(int(d) for d in layer.output.shape[1:])
        rows.append(
            LayerRow(
                name=layer.name,
                kind=type(layer).__name__,
                output_shape=shape,
                activation_size=int(np.prod(shape)),
                params=int(layer.count_params()),
                macs=layer_macs(layer),
                bytes_moved=layer_bytes(layer),
            )
        )
    return rows


def format_table(rows: list[LayerRow]) -> str:
    """The table as text, with totals (parameters, multiply-adds and bytes moved per image)."""
    header = (
        f"{'layer':<24} {'type':<20} {'output shape':<18} {'activations':>12} {'params':>10} "
        f"{'MACs':>14} {'bytes moved':>13} {'MAC/B':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "×".join(str(d) for d in r.output_shape)
        lines.append(
            f"{r.name:<24} {r.kind:<20} {shape:<18} {r.activation_size:>12,} {r.params:>10,} "
            f"{r.macs:>14,} {r.bytes_moved:>13,} {r.intensity:>6.1f}"
        )
    lines.append("-" * len(header))
    params = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows)
    moved = sum(r.bytes_moved for r in rows)
    lines.append(
        f"{'total':<64} {sum(r.activation_size for r in rows):>12,} {params:>10,} {macs:>14,} "
        f"{moved:>13,} {macs / moved if moved else 0:>6.1f}"
    )
    lines.append(
        f"{params:,} parameters; {macs / 1e9:.3f} G multiply-adds per image; "
        f"{moved / 1e6:.1f} MB moved per image (float32: inputs + output + weights)"
    )
    return "\n".join(lines)


def total_macs(model) -> int:
    """Multiply-adds per image of the whole model."""
    return sum(layer_macs(layer) for layer in model.layers)
