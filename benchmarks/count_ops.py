#!/usr/bin/env python
"""What each training-step variant actually executes: kernel counts from the TF profiler.

Timings on a shared 2-core machine drift by ±25 %, so a 5 % overhead is hard to prove by
the clock alone. Kernel counts do not drift: this profiles ONE call of each variant of
``bench_train_step.py`` (same model, batch and flags) and counts the convolution kernels
that ran, forward (``Conv2D``/fused), backward to the input (``Conv2DBackpropInput``) and
backward to the weights (``Conv2DBackpropFilter``), plus all kernels.

A PGD-k attack must run k forward + k input-backward passes; a standard step one forward,
one input-backward (minus the first layer) and one weight-backward; the adversarial step
the sum. Anything above that is work the framework adds.

Example::

    python benchmarks/count_ops.py --model resnet20v2 --width 0.5 --image 28x28x1 --steps-k 7 \\
        --components --json benchmarks/results/ops_fmnist.json
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train_step as bench  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402
except ImportError:  # pragma: no cover - older/newer layouts
    from tsl.profiler.protobuf import xplane_pb2  # type: ignore  # noqa: E402


def kernel_counts(fn) -> Counter:
    """Op types executed by one call of ``fn`` (after warm-up), from a profiler trace."""
    fn()
    fn()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        bench._sync(fn())
        tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(paths[-1], "rb") as f:
            space.ParseFromString(f.read())
    counts: Counter = Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute") and "Eigen" not in line.name:
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" in name and not name.startswith("ThreadpoolListener") \
                        and not name.startswith("ExecutorState"):
                    counts[name.rsplit(":", 1)[-1].strip()] += 1
    return counts


def summarise(counts: Counter) -> dict:
    def total(pred):
        return sum(v for k, v in counts.items() if pred(k))

    return {
        "conv_forward": total(lambda k: "Conv2D" in k and "Backprop" not in k),
        "conv_backprop_input": total(lambda k: "Conv2DBackpropInput" in k),
        "conv_backprop_filter": total(lambda k: "Conv2DBackpropFilter" in k),
        "all_kernels": sum(counts.values()),
    }


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    json_path = None
    if "--json" in argv:
        i = argv.index("--json")
        json_path = argv[i + 1]
        del argv[i:i + 2]
    args = bench.parse_args(argv)
    variants, meta, _ = bench.build(args)
    k = args.steps_k
    rows = {}
    for name, fn in variants.items():
        if name.endswith("_xla"):
            continue  # XLA clusters hide the kernels
        counts = kernel_counts(fn)
        rows[name] = {**summarise(counts), "top": dict(counts.most_common(12))}
    fwd = rows["grad"]["conv_forward"]
    print(f"{args.model} width {args.width}, batch {args.batch}, {args.image}, PGD-{k}: "
          f"one forward pass = {fwd} convolutions")
    print(f"{'variant':16s} {'fwd conv':>9s} {'= passes':>9s} {'bwd-input':>10s} {'bwd-filter':>11s} {'kernels':>8s}")
    for name, r in rows.items():
        print(f"{name:16s} {r['conv_forward']:9d} {r['conv_forward'] / fwd:9.2f} "
              f"{r['conv_backprop_input']:10d} {r['conv_backprop_filter']:11d} {r['all_kernels']:8d}")
    print(f"expected for PGD-{k} attack: {k} forward passes; adversarial step: {k + 1}")
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump({"args": vars(args), "model": meta, "convs_per_forward": fwd, "variants": rows}, f, indent=2)
        print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
