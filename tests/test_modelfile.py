import json
import zipfile

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.errors import YoloError
from yolo_cli.model import build_model
from yolo_cli.modelfile import ModelMeta, load_model, read_meta, save_model

ANCHORS = [[20.0, 30.0], [60.0, 50.0]]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    model = build_model(2, np.array(ANCHORS), 64, width=0.25)
    meta = ModelMeta("yolo", ["cat", "dog"], 64, ANCHORS, {"note": "test"})
    path = save_model(model, tmp_path_factory.mktemp("m") / "small.keras", meta)
    return model, meta, path


def test_round_trip_carries_names_anchors_size(small):
    model, meta, path = small
    loaded, got = load_model(path)
    assert got == meta
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)
    assert not list(path.parent.glob(".*tmp*"))


def test_plain_keras_file_is_not_a_yolo_model(tmp_path):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(YoloError, match="not a yolo-cli model"):
        load_model(path)


def test_corrupt_and_missing_files(tmp_path, small):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(YoloError, match="not a Keras model archive"):
        load_model(bad)
    with pytest.raises(YoloError, match="not found"):
        load_model(tmp_path / "missing.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(small[2].read_bytes()[:2000])
    with pytest.raises(YoloError):
        load_model(truncated)


def test_tampered_file_with_lambda_layer_is_refused(tmp_path, small):
    """Someone rewrites config.json to smuggle a Lambda layer (code) into the model file."""
    _, meta, path = small
    hostile = tmp_path / "hostile.keras"
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(hostile)
    with zipfile.ZipFile(hostile, "a") as z:
        z.writestr("yolo_cli.json", json.dumps(meta.__dict__))
    with pytest.raises(YoloError, match="Lambda"):
        load_model(hostile)
    result = CliRunner().invoke(cli, ["info", str(hostile)])
    assert result.exit_code == 2
    assert "Lambda" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_bad_metadata(tmp_path, small):
    path = tmp_path / "meta.keras"
    path.write_bytes(small[2].read_bytes())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("yolo_cli.json", "{not json")
    with pytest.raises(YoloError):
        read_meta(path)


def test_info_prints_layer_table(small):
    result = CliRunner().invoke(cli, ["info", str(small[2])])
    assert result.exit_code == 0, result.output
    assert "classes (2): cat, dog" in result.output
    assert "20×30" in result.output and "multiply-adds" in result.output


def test_deployable_file_drops_optimizer_state(tmp_path):
    import tensorflow as tf

    model = build_model(2, np.array(ANCHORS), 64, width=0.25)
    model.compile(optimizer=keras.optimizers.Adam())
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    meta = ModelMeta("yolo", ["cat", "dog"], 64, ANCHORS)
    full = save_model(model, tmp_path / "full.keras", meta)
    slim = save_model(model, tmp_path / "slim.keras", meta, include_optimizer=False)
    assert slim.stat().st_size < 0.5 * full.stat().st_size
    loaded, got = load_model(slim)
    assert got == meta
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)
