"""The network builder: one course grid, or several heads joined by a top-down path."""

import numpy as np
import pytest

from yolo_cli.model import build_model, resized_model
from yolo_cli.modelfile import Head, ModelMeta, check_network

HEADS = [Head(16, [[10, 10], [20, 30], [40, 20]], 2.0), Head(32, [[60, 60], [120, 90]], 2.0)]


def test_one_grid_from_an_anchor_array_is_the_course_model():
    model = build_model(3, np.ones((5, 2)), 128, width=0.25)
    assert model.output_shape == (None, 4, 4, 5, 8)
    assert model.get_layer("head") and model.get_layer("grid")


def test_two_heads_give_a_grid_each_in_the_order_given():
    model = build_model(2, HEADS, 128, width=0.25)
    assert model.output_shape == [(None, 8, 8, 3, 7), (None, 4, 4, 2, 7)]
    check_network(model, ModelMeta("yolo", ["a", "b"], 128, HEADS), "built")
    reordered = build_model(2, HEADS[::-1], 128, width=0.25)
    assert reordered.output_shape == [(None, 4, 4, 2, 7), (None, 8, 8, 3, 7)]


@pytest.mark.parametrize("strides", [(16,), (32, 32), (4, 32)])
def test_head_strides_are_checked(strides):
    with pytest.raises(ValueError, match="strides"):
        build_model(1, [Head(s, [[8, 8]]) for s in strides], 128)


def test_resized_two_head_model_keeps_its_weights():
    model = build_model(2, HEADS, 128, width=0.25)
    meta = ModelMeta("yolo", ["a", "b"], 128, HEADS, extra={"config": {"width": 0.25}})
    bigger = resized_model(model, meta, 192, "m.keras")
    assert bigger.output_shape == [(None, 12, 12, 3, 7), (None, 6, 6, 2, 7)]
    for a, b in zip(model.get_weights(), bigger.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_spatial_pyramid_sees_the_whole_grid():
    """With spp, a cell's output depends on a cell 6 cells away at stride 32 (three chained 5×5
    pools reach 6 cells out); without it, block 7 sees about 220 px, ±3.4 cells of 32 px."""
    import keras

    keras.utils.set_random_seed(1)
    size, far = 448, 6  # a 14×14 grid
    x = np.zeros((2, size, size, 3), np.float32)
    x[1, -32:, -32:] = 255.0  # a change only in the bottom-right cell
    for spp, reaches in [(True, True), (False, False)]:
        model = build_model(1, [Head(32, [[60, 60]])], size, width=0.25, passthrough=False, spp=spp)
        out = model(x, training=False).numpy()
        corner = 13 - far  # row/col of the cell `far` cells from the changed one
        changed = not np.allclose(out[0, corner, corner], out[1, corner, corner], atol=1e-6)
        assert changed is reaches
