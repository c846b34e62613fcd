"""Throughput of the PSR grid sensitivity (``advtf psr``) vs plain batched inference.

``advtf.analysis.psr.grid_sensitivity`` evaluates ``B * m`` images ``x' - delta_Gi`` (every grid
removal of every pair). Its floor is a compiled forward pass over that many images at the same
batch size. This benchmark times both, interleaved over rounds in one process so machine drift
hits both alike (shared 2-core machines drift by +-25%):

- ``forward``: a ``tf.function`` calling the model on ``B * m`` pre-built images, ``chunk`` at a time;
- ``psr``: ``grid_sensitivity`` (builds the removals inside the compiled loop, gathers logits).

It prints removals/s for both and the paired ratio t_psr / t_forward (median over rounds): near 1
means building the removals and the bookkeeping cost nothing next to the forward passes.

Model: ``resnet18`` at ``--width`` on ``--image`` sized random inputs (random weights: throughput only).

The table goes to ``OUT.txt`` and the per-round seconds, rates and ratio to ``OUT.json``; ``--out``
defaults to ``benchmarks/results/psr_chunk<CHUNK>``.

Example::

    python benchmarks/bench_psr.py --image 28x28x1 --width 0.125 --pairs 50 --grid 4 --chunk 256 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="28x28x1")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="output prefix (default: benchmarks/results/psr_chunk<CHUNK>)")
    args = parser.parse_args()
    out = Path(args.out or Path(__file__).resolve().parent / "results" / f"psr_chunk{args.chunk}")

    from advtf.analysis.psr import grid_masks, grid_sensitivity
    from advtf.models import create_model

    h, w, c = (int(v) for v in args.image.split("x"))
    model = create_model("resnet18", input_shape=(h, w, c), num_classes=10, width=args.width, seed=0)
    rng = np.random.default_rng(0)
    x_adv = rng.uniform(size=(args.pairs, h, w, c)).astype(np.float32)
    delta = rng.uniform(-0.1, 0.1, size=x_adv.shape).astype(np.float32)
    label, target = rng.integers(0, 10, args.pairs), rng.integers(0, 10, args.pairs)
    masks = grid_masks(h, w, args.grid, args.grid)
    total = args.pairs * len(masks)
    padded = -(-total // args.chunk) * args.chunk
    images = tf.constant(rng.uniform(size=(padded // args.chunk, args.chunk, h, w, c)).astype(np.float32))

    @tf.function
    def forward(batches):
        return tf.map_fn(lambda z: model(z, training=False), batches, fn_output_signature=tf.float32)

    def run_psr():
        grid_sensitivity(model, x_adv, delta, label, target, masks, chunk=args.chunk)

    def run_forward():
        forward(images).numpy()

    run_psr(), run_forward()  # trace
    times = {"psr": [], "forward": []}
    for _ in range(args.rounds):
        for name, fn in (("forward", run_forward), ("psr", run_psr)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ratio = statistics.median(p / f for p, f in zip(times["psr"], times["forward"]))
    rates = {name: total / statistics.median(times[name]) for name in ("forward", "psr")}
    lines = [f"{args.pairs} pairs x {len(masks)} grids = {total} removals, chunk {args.chunk}, "
             f"resnet18 width {args.width}, {args.image}"]
    lines += [f"  {name:8s} {rate:8.0f} removals/s (median of {args.rounds})" for name, rate in rates.items()]
    lines.append(f"  t_psr / t_forward = {ratio:.2f} (median paired ratio)")
    print("\n".join(lines))
    report = {"args": vars(args), "removals": total, "seconds": times, "removals_per_second": rates,
              "ratio_psr_to_forward": ratio, "load_average": os.getloadavg()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_name(out.name + ".txt").write_text("\n".join(lines) + "\n")
    print(f"written: {out}.json, {out}.txt")


if __name__ == "__main__":
    main()
