"""Throughput of the derived-dataset builders: robustification and relabeling, vs their limit.

Robustification (``advtf.analysis.robustify.robustify_batch``) and relabeling (targeted L2 PGD,
``advtf.analysis.relabel.relabel_batch``) are per-image gradient loops; their floor is the cost
of the input gradients they need. This benchmark times, in one process, interleaved over rounds
so machine drift hits all alike (shared 2-core machines drift by +-25%):

- ``grad``: a ``tf.function`` computing one input gradient of the summed cross-entropy for a batch,
  called ``steps`` times: the arithmetic limit of any k-step gradient loop.
- ``robustify``: ``robustify_batch`` with ``steps`` steps (representation endpoint, relative
  distance, best-iterate bookkeeping).
- ``relabel``: ``relabel_batch`` (targeted PGD with ``steps`` steps + the outcome pass).

It prints images/s per builder (images through the whole k-step loop) and the paired ratio
t_builder / t_grad_block (median over rounds): a ratio near 1 means the loop adds nothing to the
gradient work (no Python-level per-step overhead).

Model: ``resnet20v2`` at ``--width`` on ``--image`` sized random inputs (random weights: for
throughput only).

Example::

    python benchmarks/bench_derived.py --image 28x28x1 --width 0.5 --batch 128 --steps 20 --rounds 5 \\
        --out benchmarks/results/derived_fmnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="28x28x1")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from advtf.analysis.relabel import relabel_batch
    from advtf.analysis.robustify import representation_model, robustify_batch
    from advtf.attacks import Threat
    from advtf.attacks.losses import cross_entropy
    from advtf.models import create_model

    shape = tuple(int(v) for v in args.image.split("x"))
    model = create_model("resnet20v2", input_shape=shape, num_classes=10, width=args.width, seed=0)
    extractor = representation_model(model)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(args.batch, *shape)).astype(np.float32))
    x0 = tf.constant(rng.uniform(size=(args.batch, *shape)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, args.batch).astype(np.int32))
    target = (y + 1) % 10
    threat = Threat(norm="l2", eps=0.5, steps=args.steps, step_size=0.1, random_start=False)

    @tf.function
    def grad(images, labels):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(cross_entropy(model(images, training=False), labels))
        return tape.gradient(loss, images)

    def run_grad():
        for _ in range(args.steps):
            g = grad(x, y)
        g.numpy()

    def run_robustify():
        out = robustify_batch(extractor, x, x0, steps=args.steps, step_size=0.1)
        out[0].numpy()

    def run_relabel():
        relabel_batch(model, x, y, target, attack="pgd", threat=threat, seed=[0, 0])

    impls = {"grad": run_grad, "robustify": run_robustify, "relabel": run_relabel}
    for fn in impls.values():  # warm-up: tracing
        fn()
    times = {k: [] for k in impls}
    names = list(impls)
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            impls[k]()
            times[k].append(time.perf_counter() - start)
    report = {"args": vars(args), "seconds": times,
              "images_per_second": {k: args.batch / statistics.median(v) for k, v in times.items()},
              "ratio_to_grad": {k: statistics.median(t / g for t, g in zip(v, times["grad"]))
                                for k, v in times.items()}}
    lines = [f"resnet20v2 width {args.width}, {args.image}, batch {args.batch}, {args.steps} steps, "
             f"{args.rounds} rounds", "| builder | images/s (median) | x grad-limit (paired median) |", "|---|---|---|"]
    lines += [f"| {k} | {report['images_per_second'][k]:.1f} | {report['ratio_to_grad'][k]:.2f} |" for k in names]
    print("\n".join(lines))
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump(report, f, indent=2)
        with open(args.out + ".txt", "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
