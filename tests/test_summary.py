"""Layer arithmetic checked against the course's own numbers."""

import keras
import numpy as np
from keras import layers

from yolo_cli.model import build_model
from yolo_cli.summary import conv_output_size, format_table, model_table, total_macs


def test_ten_3x3x3_filters_have_280_parameters():
    model = keras.Sequential([keras.Input((6, 6, 3)), layers.Conv2D(10, 3)])
    assert model_table(model)[0].params == 280


def test_course_39x39x3_network():
    model = keras.Sequential(
        [
            keras.Input((39, 39, 3)),
            layers.Conv2D(10, 3),
            layers.Conv2D(20, 5, strides=2),
            layers.Conv2D(40, 5, strides=2),
            layers.Flatten(),
        ]
    )
    rows = model_table(model)
    assert [r.output_shape for r in rows] == [(37, 37, 10), (17, 17, 20), (7, 7, 40), (1960,)]
    assert conv_output_size(39, 3) == 37 and conv_output_size(37, 5, 2) == 17


def test_bottleneck_multiply_adds():
    direct = keras.Sequential([keras.Input((28, 28, 192)), layers.Conv2D(32, 5, padding="same")])
    assert round(total_macs(direct) / 1e6, 1) == 120.4
    bottleneck = keras.Sequential(
        [
            keras.Input((28, 28, 192)),
            layers.Conv2D(16, 1),
            layers.Conv2D(32, 5, padding="same"),
        ]
    )
    assert round(total_macs(bottleneck) / 1e6, 1) == 12.4


def test_detector_table_totals():
    model = build_model(3, np.ones((5, 2)), 416)
    rows = model_table(model)
    assert rows[-1].output_shape == (13, 13, 5, 8)
    assert sum(r.params for r in rows) == model.count_params()
    text = format_table(rows)
    assert "G multiply-adds per image" in text and "head" in text


def test_bytes_moved_are_inputs_output_and_weights_in_float32():
    model = keras.Sequential([keras.Input((6, 6, 3)), layers.Conv2D(10, 3)])
    row = model_table(model)[0]
    assert row.bytes_moved == (6 * 6 * 3 + 4 * 4 * 10 + 280) * 4
    assert row.intensity == row.macs / row.bytes_moved


def test_first_layers_do_the_fewest_multiply_adds_per_byte():
    rows = {r.name: r for r in model_table(build_model(3, np.ones((5, 2)), 416))}
    assert rows["image"].bytes_moved == 0
    assert rows["block1_bn"].macs == 0 and rows["block1_bn"].bytes_moved > 0
    assert (
        rows["block1_conv"].intensity
        < rows["block3_conv"].intensity
        < rows["block7_conv"].intensity
    )
    concat = rows["passthrough_concat"]
    assert concat.bytes_moved == 2 * concat.activation_size * 4  # two inputs in, one out
    assert "bytes moved" in format_table(list(rows.values()))
