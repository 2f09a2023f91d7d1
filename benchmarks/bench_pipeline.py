"""Does the input pipeline feed the model fast enough? Images/s of ``make_dataset`` (plain
letterbox and augmented) next to images/s of the default model's training step, on BCCD's
train split and on synthetic street scenes.

    .venv/bin/python benchmarks/bench_pipeline.py [--synth-n 250] [--steps 6] [--epochs 3]

The train step is ``yolo_cli.train.Trainer``'s (forward, YoloLoss, gradients, Adam update, the
default model of ``yolo train``) on one batch held in memory, so it measures the model alone;
"fed" runs the same step on batches straight from the augmented pipeline, sharing the CPU
with it. Goal: pipeline ≥ 3× the train step.

The CPU is shared with other work, so each rate is the best of several repeats (whole epochs
for the pipeline, single steps for the model), and CPU time per image (this process, all
threads) is printed too: it hardly depends on what else runs, and its ratio says what share
of the CPU the pipeline takes from training. Prints markdown tables; every number comes from
this one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
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


def pipeline(trainer, augment: bool, epoch: int, drop_remainder: bool = False):
    from yolo_cli.data.pipeline import make_dataset

    return make_dataset(
        trainer.train_set,
        trainer.anchors,
        trainer.cfg.img_size,
        len(trainer.names),
        trainer.cfg.batch,
        augment=augment,
        seed=0,
        epoch=epoch,
        drop_remainder=drop_remainder,
        params=trainer.augmentation,
    )


def epoch_rate(trainer, augment: bool, epochs: int) -> tuple[float, float]:
    """Best images/s and CPU ms/image of whole pipeline epochs (after a warm-up), model idle."""
    epoch = iter(range(epochs + 1))

    def one_epoch() -> int:
        return sum(int(images.shape[0]) for images, _ in pipeline(trainer, augment, next(epoch)))

    one_epoch()
    return best(one_epoch, epochs)


def step_rates(trainer, steps: int) -> tuple[float, float, float]:
    """Train step on one batch in memory (best images/s, CPU ms/image), and the images/s of
    ``steps`` steps fed by the augmented pipeline (throughput, prefetch buffer full)."""
    ds = pipeline(trainer, True, 0, drop_remainder=True)
    images, targets = next(iter(ds))
    batch = int(images.shape[0])

    def step(images=images, targets=targets) -> int:
        float(trainer._train_step(images, targets)[0])
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


def measure(name: str, data: Path, args, run_dir: Path) -> dict:
    from yolo_cli.train import TrainConfig, Trainer

    cfg = TrainConfig(data=str(data), img_size=args.img_size, batch=args.batch, device="cpu")
    trainer = Trainer(cfg, run_dir / name)
    row = dict(data=f"{name} ({len(trainer.train_set)} train images)")
    row["plain"], row["plain_cpu"] = epoch_rate(trainer, False, args.epochs)
    row["aug"], row["aug_cpu"] = epoch_rate(trainer, True, args.epochs)
    row["step"], row["step_cpu"], row["fed"] = step_rates(trainer, args.steps)
    print(f"  {name}: done", file=sys.stderr)
    return row


def main() -> None:
    from yolo_cli.config import datasets_root
    from yolo_cli.data.load import load_dataset
    from yolo_cli.data.synth import write_synthetic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bccd", type=Path, default=datasets_root() / "bccd" / "BCCD")
    parser.add_argument("--synth-n", type=int, default=250, help="synthetic scenes (80 %% train)")
    parser.add_argument("--img-size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="timed pipeline epochs (best)")
    parser.add_argument("--steps", type=int, default=6, help="timed train steps (best)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth = write_synthetic(tmp / "synth", args.synth_n, seed=0, size=args.img_size)
        rows = [measure("BCCD", args.bccd, args, tmp), measure("synthetic", synth, args, tmp)]
    bccd = load_dataset(args.bccd, "train")
    decoders = letterbox_rates(bccd, args.img_size, args.batch, args.epochs)

    print(f"{datetime.date.today()}, {os.cpu_count()} CPU cores (load average {load_before:.1f} "
          f"at start, {os.getloadavg()[0]:.1f} at end), img {args.img_size}, batch {args.batch}; "
          f"command: {' '.join(sys.argv)}")  # fmt: skip
    print()
    print("Wall clock, best of repeats (images/s):")
    print()
    print(
        "| data | pipeline, plain | pipeline, augmented | train step | plain / step "
        "| augmented / step | train step fed by the augmented pipeline |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['data']} | {r['plain']:.0f} | {r['aug']:.0f} | {r['step']:.1f} "
            f"| {r['plain'] / r['step']:.0f}× | {r['aug'] / r['step']:.0f}× | {r['fed']:.1f} |"
        )
    print()
    print("CPU time per image, all threads of this process (ms):")
    print()
    print("| data | pipeline, plain | pipeline, augmented | train step | step / augmented |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['data']} | {r['plain_cpu']:.1f} | {r['aug_cpu']:.1f} | {r['step_cpu']:.0f} "
            f"| {r['step_cpu'] / r['aug_cpu']:.0f}× |"
        )
    print()
    print(f"Read + decode + letterbox alone, BCCD train split ({len(bccd)} images):")
    print()
    print("| tool | images/s (best) | CPU ms/image |")
    print("| --- | ---: | ---: |")
    for name, (rate, cpu_ms) in decoders.items():
        print(f"| {name} | {rate:.0f} | {cpu_ms:.1f} |")


if __name__ == "__main__":
    main()
