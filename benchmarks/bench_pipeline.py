"""Does the input pipeline feed the model fast enough? Images/s of ``make_dataset`` — plain
letterbox, augmented without mosaic, augmented with mosaic on every image — next to images/s
of a training step of the network those batches are for, on real datasets.

    .venv/bin/python benchmarks/bench_pipeline.py [--data PATH ...] [--heads 3] [--steps 6]

Each dataset's train split gets the heads ``yolo train`` would plan from it: k-means anchors on
the letterboxed boxes, one stride-32 grid (``--heads 1``: the course's, rule ``best``) or grids
at strides 32, 16 (and 8) sharing them by size (``--heads 2`` or ``3``, rule ``ratio``). The
train step is forward, the course's loss over every head, gradients and an Adam update of
``yolo_cli.model.build_model``'s network, on one batch held in memory, so it measures the model
alone; "fed" runs the same step on batches straight from the mosaic pipeline, sharing the CPU
with it. Goal: pipeline ≥ 3× the train step.

The CPU is shared with other work, so each rate is the best of several repeats (whole epochs
of one stream for the pipeline, after the first, which fills the image cache; single steps for
the model), and CPU time per image (this process, all
threads) is printed too: it hardly depends on what else runs, and its ratio says what share
of the CPU the pipeline takes from training. Prints markdown tables; every number comes from
this one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def best(run: Callable[[], int], repeats: int) -> tuple[float, float]:
    """Run ``run`` (returns how many images it did) ``repeats`` times → best images per wall
    second and least CPU milliseconds per image."""
    rate, cpu_ms = 0.0, float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        n = run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rate, cpu_ms = max(rate, n / wall), min(cpu_ms, 1000 * cpu / n)
    return rate, cpu_ms


PATHS = ("plain", "augmented, no mosaic", "augmented, mosaic")


def plan_heads(dataset, img_size: int, num_heads: int):
    """The heads ``yolo train --heads num_heads`` plans for ``dataset`` → ``(heads, rule)``:
    the course's one stride-32 grid of 5 anchors (rule ``best``), or 3 k-means anchors a head
    (rule ``ratio``)."""
    from yolo_cli.train import TrainConfig
    from yolo_cli.train.recipe import plan_heads as plan

    rule = "best" if num_heads == 1 else "ratio"
    cfg = TrainConfig(heads=num_heads, img_size=img_size, assign=rule)
    return plan(cfg, dataset)[0], rule


def pipeline(setup, path: str, epoch: int = 0, epochs: int = 1, drop_remainder: bool = False):
    """``make_dataset`` of the train split over ``epochs`` epochs, on one of :data:`PATHS`."""
    from dataclasses import replace

    from yolo_cli.data.pipeline import make_dataset

    params = replace(setup["params"], mosaic_p=1.0 if path == PATHS[2] else 0.0)
    return make_dataset(
        setup["train"],
        setup["heads"],
        setup["img_size"],
        len(setup["train"].names),
        setup["batch"],
        augment=path != PATHS[0],
        seed=0,
        epoch=epoch,
        rule=setup["rule"],
        drop_remainder=drop_remainder,
        params=params,
        epochs=epochs,
    )


def epoch_rate(setup, path: str, epochs: int) -> tuple[float, float]:
    """Best images/s and CPU ms/image of whole epochs of one stream, as training draws them
    (the first, which also fills the image cache, is left out), model idle."""
    stream = iter(pipeline(setup, path, epochs=epochs + 1, drop_remainder=True))
    per_epoch = len(setup["train"]) // setup["batch"]

    def one_epoch() -> int:
        return sum(int(next(stream)[0].shape[0]) for _ in range(per_epoch))

    one_epoch()
    return best(one_epoch, epochs)


def train_step(setup):
    """A compiled training step ``(images, targets) → loss`` of a fresh network for the heads."""
    import keras
    import tensorflow as tf

    from yolo_cli.loss import make_loss
    from yolo_cli.model import build_model
    from yolo_cli.modelfile import model_outputs

    model = build_model(len(setup["train"].names), setup["heads"], setup["img_size"])
    loss_fn = make_loss("course", setup["heads"], setup["img_size"])
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(images, targets):
        with tf.GradientTape() as tape:
            raws = model_outputs(model, images, training=True)
            loss = tf.reduce_mean(loss_fn(targets["grids"], targets["boxes"], raws)[0])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def step_rates(setup, steps: int) -> tuple[float, float, float]:
    """Train step on one batch in memory (best images/s, CPU ms/image), and the images/s of
    ``steps`` steps fed by the mosaic pipeline (throughput, prefetch buffer full)."""
    ds = pipeline(setup, PATHS[2], drop_remainder=True)
    images, targets = next(iter(ds))
    batch = int(images.shape[0])
    train = train_step(setup)

    def step(images=images, targets=targets) -> int:
        float(train(images, targets))
        return batch

    step()  # trace
    alone, cpu_ms = best(step, steps)

    batches = iter(ds.repeat())
    step(*next(batches))  # fill the prefetch buffer
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    return alone, cpu_ms, steps * batch / (time.perf_counter() - start)


def letterbox_rates(dataset, img_size: int, batch: int, epochs: int) -> dict[str, tuple]:
    """Read + decode + letterbox alone, three ways, to choose the pipeline's tool:
    ``tf.numpy_function`` over OpenCV (what ``make_dataset`` does; INTER_AREA when shrinking)
    and pure TensorFlow with an anti-aliased (same quality) or plain bilinear resize.
    Returns best images/s and CPU ms/image per tool."""
    import tensorflow as tf

    from yolo_cli.boxes import Letterbox, letterbox_image
    from yolo_cli.config import DEFAULTS
    from yolo_cli.data.image import read_image

    paths = [str(s.image) for s in dataset.samples]
    auto = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def opencv(path):
        def load(p):
            return letterbox_image(read_image(p.decode()), img_size)[0]

        return tf.numpy_function(load, [path], tf.uint8)

    def pure_tf(antialias: bool, width: int, height: int):
        lb = Letterbox.fit(width, height, img_size)
        size = (round(height * lb.scale), round(width * lb.scale))
        pad = [[lb.pad_y, img_size - size[0] - lb.pad_y], [lb.pad_x, img_size - size[1] - lb.pad_x]]

        def load(path):
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
            image = tf.round(tf.image.resize(image, size, antialias=antialias))
            return tf.cast(
                tf.pad(image, pad + [[0, 0]], constant_values=DEFAULTS.letterbox_fill), tf.uint8
            )

        return load

    def rate(load) -> tuple[float, float]:
        ds = tf.data.Dataset.from_tensor_slices(paths).map(load, **auto)
        ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)

        def one_epoch() -> int:
            return sum(int(x.shape[0]) for x in ds)

        one_epoch()
        return best(one_epoch, epochs)

    rates = {"OpenCV in tf.numpy_function (make_dataset's choice)": rate(opencv)}
    # a static graph needs one image size; BCCD's images are all 640 × 480
    sizes = {(s.width, s.height) for s in dataset.samples}
    if len(sizes) == 1:
        ((width, height),) = sizes
        rates["pure TF, antialiased resize"] = rate(pure_tf(True, width, height))
        rates["pure TF, bilinear resize"] = rate(pure_tf(False, width, height))
    return rates


def make_setup(data: Path, img_size: int, num_heads: int, batch: int) -> dict:
    """What :func:`pipeline` and :func:`train_step` need for the train split of ``data``: the
    split, the heads ``yolo train`` plans, their rule, the input size, the batch and the
    augmentation parameters."""
    from yolo_cli.data.augment import Augmentation
    from yolo_cli.data.load import load_dataset
    from yolo_cli.data.pipeline import dataset_colour_basis

    train = load_dataset(data, split="train")
    heads, rule = plan_heads(train, img_size, num_heads)
    params = Augmentation(pca=dataset_colour_basis(train))
    return dict(train=train, heads=heads, rule=rule, img_size=img_size, batch=batch, params=params)


def measure(data: Path, args) -> dict:
    setup = make_setup(data, args.img_size, args.heads, args.batch)
    train = setup["train"]
    row = dict(data=f"{data.name} ({len(train)} train images)", train=train)
    for path in PATHS:
        row[path], row[path + " cpu"] = epoch_rate(setup, path, args.epochs)
    row["step"], row["step_cpu"], row["fed"] = step_rates(setup, args.steps)
    print(f"  {data.name}: done", file=sys.stderr)
    return row


def main() -> None:
    from yolo_cli.config import DEFAULTS, datasets_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=[datasets_root() / "bccd", datasets_root() / "raccoon"],
        help="datasets (their train splits)",
    )
    parser.add_argument("--heads", type=int, choices=(1, 2, 3), default=DEFAULTS.heads)
    parser.add_argument("--img-size", type=int, default=DEFAULTS.img_size)
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch)
    parser.add_argument("--epochs", type=int, default=3, help="timed pipeline epochs (best)")
    parser.add_argument("--steps", type=int, default=6, help="timed train steps (best)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows = [measure(data, args) for data in args.data]
    decoders = letterbox_rates(rows[0]["train"], args.img_size, args.batch, args.epochs)

    print(f"{datetime.date.today()}, {os.cpu_count()} CPU cores (load average {load_before:.1f} "
          f"at start, {os.getloadavg()[0]:.1f} at end), img {args.img_size}, batch {args.batch}, "
          f"{args.heads} head(s); command: {' '.join(sys.argv)}")  # fmt: skip
    print()
    print("Wall clock, best of repeats (images/s):")
    print()
    print(f"| data | {' | '.join(f'pipeline, {p}' for p in PATHS)} | train step "
          "| mosaic / step | train step fed by the mosaic pipeline |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rates = " | ".join(f"{r[p]:.0f}" for p in PATHS)
        print(
            f"| {r['data']} | {rates} | {r['step']:.1f} | {r[PATHS[2]] / r['step']:.0f}× "
            f"| {r['fed']:.1f} |"
        )
    print()
    print("CPU time per image, all threads of this process (ms):")
    print()
    print(f"| data | {' | '.join(f'pipeline, {p}' for p in PATHS)} | train step "
          "| step / mosaic |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        cpu = " | ".join(f"{r[p + ' cpu']:.1f}" for p in PATHS)
        print(f"| {r['data']} | {cpu} | {r['step_cpu']:.0f} | "
              f"{r['step_cpu'] / r[PATHS[2] + ' cpu']:.0f}× |")  # fmt: skip
    print()
    print(f"Read + decode + letterbox alone, {rows[0]['data']}:")
    print()
    print("| tool | images/s (best) | CPU ms/image |")
    print("| --- | ---: | ---: |")
    for name, (rate, cpu_ms) in decoders.items():
        print(f"| {name} | {rate:.0f} | {cpu_ms:.1f} |")


if __name__ == "__main__":
    main()
