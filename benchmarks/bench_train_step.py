#!/usr/bin/env python
"""Cost of one PGD-k adversarial training step against the arithmetic it must do.

For one model and one batch, in ONE process, every variant is timed in every round (so the
drift of this machine, ±25 % and more when other jobs share its 2 cores, hits all variants
alike). Variants:

  train_std   one standard training step, ``make_train_step(..., adversarial=None)``
  grad        one input-gradient pass: forward + backward w.r.t. the input only,
              ``training=False``, in a ``tf.function`` (one PGD iteration minus projection)
  train_adv   one PGD-k adversarial training step, ``make_train_step(..., AdversarialConfig)``
  attack      ``advtf.attacks.pgd(model, x, y, threat)``, k steps, alone
  attack_xla  the same with ``jit=True`` (XLA)                       [--xla]
  train_adv_xla  the adversarial step with ``TrainConfig(jit=True)`` [--xla-train]

and, with ``--components``, what the adversarial step does besides k gradients + 1 update:

  fwd         one inference forward pass (``training=False``)
  extras      random start + k × (ascent direction, projection, clip) on batch-shaped tensors
  attack_unrolled  the same PGD-k unrolled in Python (no ``tf.while_loop``), one ``tf.function``
  adv_unrolled  ``attack_unrolled`` then the standard training step, one ``tf.function``: a
              reference adversarial step that does only the arithmetic
  attack_fix  ``pgd`` without the extra forward pass ``_pgd_restarts`` spends choosing the
              best of ONE restart (calls the library's own ``_pgd_once``)
  train_adv_fix  the library's adversarial step built with ``attack_fix`` (a what-if for the
              proposed library change; no library file is modified)

Goal (issue): ``t_adv <= 1.1 × (k·t_grad + t_train)``. Figures are medians over ``--repeats``
rounds after ``--warmup`` untimed calls per variant (the first call traces). Each round
starts with a PAIRED measurement: the adversarial step next to a "budget block" (one
standard step then k gradient passes, each call timed), in alternating order (A B, B A, ...)
so linear drift cancels; the paired ratio ``t_adv / block`` per round, median over rounds, is
the drift-robust figure. The other variants follow in rotating order. The ratio of medians
``median(t_adv) / (k·median(t_grad) + median(t_train))`` is reported too.

Example::

    python benchmarks/bench_train_step.py --model resnet20v2 --width 0.5 --image 28x28x1 \\
        --eps 1.0 --steps-k 7 --repeats 20 --components --json benchmarks/results/fmnist.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from advtf.attacks import Threat, pgd  # noqa: E402
from advtf.attacks import threat as threats  # noqa: E402
from advtf.models import count_params, create_model  # noqa: E402
from advtf.training.loop import AdversarialConfig, TrainConfig, make_train_step  # noqa: E402
from advtf.training.schedules import make_optimizer  # noqa: E402

CORE = ("train_std", "grad", "train_adv")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default="resnet20v2")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--image", default="32x32x3", help="HxWxC, e.g. 32x32x3 or 28x28x1")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--steps-k", type=int, default=7, help="PGD steps k")
    p.add_argument("--norm", default="l2", choices=["l2", "linf"])
    p.add_argument("--eps", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=10, help="timed rounds (medians over these)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per variant (the first traces)")
    p.add_argument("--threads", type=int, default=0,
                   help="TF intra-/inter-op threads (0: TensorFlow's default, all cores)")
    p.add_argument("--xla", action="store_true", help="also time the attack with jit=True")
    p.add_argument("--xla-train", action="store_true",
                   help="also time the adversarial step with TrainConfig(jit=True)")
    p.add_argument("--components", action="store_true",
                   help="also time fwd, attack extras, unrolled references and the what-if fix")
    p.add_argument("--only", default=None,
                   help="comma-separated subset of variants, e.g. grad,attack,attack_xla")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "platform": platform.platform(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
        info["nproc"] = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):  # pragma: no cover
        pass
    return info


def _sync(out):
    """Makes sure the result exists on the host (eager CPU calls are synchronous anyway)."""
    for t in tf.nest.flatten(out):
        np.asarray(t)


def build(args):
    """The model, one batch, and ``{variant: zero-argument callable}``."""
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    h, w, c = (int(v) for v in args.image.lower().split("x"))
    shape = (h, w, c)
    keras.utils.set_random_seed(args.seed)
    model = create_model(args.model, input_shape=shape, num_classes=args.num_classes,
                         width=args.width, seed=args.seed)
    strategy = tf.distribute.get_strategy()
    optimizer = make_optimizer("sgd", 0.1)
    optimizer.build(model.trainable_variables)
    config = TrainConfig(batch_size=args.batch, seed=args.seed)
    threat = Threat(norm=args.norm, eps=args.eps, steps=args.steps_k)
    adversarial = AdversarialConfig(threat=threat)

    rng = np.random.default_rng(args.seed)
    x = tf.constant(rng.uniform(0, 1, (args.batch,) + shape).astype(np.float32))
    y = tf.constant(rng.integers(0, args.num_classes, args.batch).astype(np.int32))

    k = args.steps_k
    train_std = make_train_step(model, optimizer, None, config, args.batch, strategy)
    train_adv = make_train_step(model, optimizer, adversarial, config, args.batch, strategy)

    @tf.function(reduce_retracing=True)
    def input_grad(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            total = tf.reduce_sum(ce)
        return tape.gradient(total, x)

    counter = {"i": 0}

    def next_index():  # a fresh step index, as in training (it seeds the attack's random start)
        counter["i"] += 1
        return tf.constant(counter["i"], tf.int64)

    variants = {
        "train_std": lambda: train_std(x, y, next_index()),
        "grad": lambda: input_grad(x, y),
        "train_adv": lambda: train_adv(x, y, next_index()),
        "attack": lambda: pgd(model, x, y, threat),
    }
    if args.xla:
        variants["attack_xla"] = lambda: pgd(model, x, y, threat, jit=True)
    if args.xla_train:
        config_xla = TrainConfig(batch_size=args.batch, seed=args.seed, jit=True)
        train_adv_xla = make_train_step(model, optimizer, adversarial, config_xla, args.batch, strategy)
        variants["train_adv_xla"] = lambda: train_adv_xla(x, y, next_index())
    if args.components:
        variants.update(_components(args, model, optimizer, config, adversarial, strategy,
                                    train_std, input_grad, x, y, next_index))
    if args.only:
        keep = [v.strip() for v in args.only.split(",") if v.strip()]
        unknown = sorted(set(keep) - set(variants))
        if unknown:
            raise SystemExit(f"--only: unknown variants {unknown}; available: {sorted(variants)}")
        variants = {n: variants[n] for n in keep}
    meta = {"params": int(count_params(model)), "input_shape": list(shape), "threat": threat.to_json()}
    return variants, meta, (model, train_std, x, y)


def _components(args, model, optimizer, config, adversarial, strategy, train_std, input_grad, x, y,
                next_index):
    threat = adversarial.threat
    k = args.steps_k
    eps = tf.constant(threat.eps, tf.float32)
    alpha = tf.constant(threat.alpha, tf.float32)
    norm = threat.norm

    @tf.function
    def fwd(x):
        return model(x, training=False)

    @tf.function
    def extras(x, g, seed):  # everything _pgd_once does besides the k gradient passes
        x_adv = tf.clip_by_value(x + threats.random_start(tf.shape(x), eps, norm, seed), 0.0, 1.0)
        for _ in range(k):
            delta = threats.project(x_adv - x + alpha * threats.ascent_direction(g, norm), eps, norm)
            x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
        return x_adv

    def pgd_unrolled(x, y, seed):
        x_adv = tf.clip_by_value(x + threats.random_start(tf.shape(x), eps, norm, seed), 0.0, 1.0)
        for _ in range(k):  # Python loop: k copies of the gradient graph, no tf.while_loop
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                logits = model(x_adv, training=False)
                total = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            g = tape.gradient(total, x_adv)
            delta = threats.project(x_adv - x + alpha * threats.ascent_direction(g, norm), eps, norm)
            x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
        return x_adv

    attack_unrolled = tf.function(pgd_unrolled, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def adv_unrolled(x, y, step_index):
        x_adv = pgd_unrolled(x, y, tf.stack([tf.constant(0, tf.int64), step_index]))
        return train_std(tf.stop_gradient(x_adv), y, step_index)

    # What-if for the avoidable cost (RESULTS.md): with restarts == 1,
    # advtf.attacks.iterative._pgd_restarts still runs one more forward pass on x_adv to pick
    # the best restart, although the only run always wins. ``pgd_single`` is pgd() with that
    # pass skipped (it calls the library's own _pgd_once); ``train_adv_fix`` is
    # make_train_step with it, built by swapping the name the loop module looks up.
    import advtf.training.loop as loop_module
    from advtf.attacks import iterative

    once = tf.function(iterative._pgd_once, reduce_retracing=True)

    def pgd_single(model, x, y, threat, *, targeted=False, target=None, seed=None, jit=False):
        assert int(threat.restarts) == 1 and not targeted and not jit
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        return once(model, tf.convert_to_tensor(x, tf.float32), tf.cast(y, tf.int32),
                    tf.constant(threat.eps, tf.float32), tf.constant(threat.alpha, tf.float32),
                    tf.constant(int(threat.steps)), tf.cast(seed, tf.int64), threat.norm, False,
                    bool(threat.random_start))

    original = loop_module.pgd
    loop_module.pgd = pgd_single
    try:
        train_adv_fix = make_train_step(model, optimizer, adversarial, config, args.batch, strategy)
    finally:
        loop_module.pgd = original

    g0 = input_grad(x, y)
    seed0 = tf.constant([1, 2], tf.int64)
    return {
        "fwd": lambda: fwd(x),
        "extras": lambda: extras(x, g0, seed0),
        "attack_fix": lambda: pgd_single(model, x, y, threat),
        "train_adv_fix": lambda: train_adv_fix(x, y, next_index()),
        "attack_unrolled": lambda: attack_unrolled(x, y, seed0),
        "adv_unrolled": lambda: adv_unrolled(x, y, next_index()),
    }


def _timed(fn) -> tuple[float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    _sync(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def measure(variants: dict, repeats: int, warmup: int, k: int):
    """Wall and process-CPU seconds of every call, per variant; plus the paired budget blocks."""
    names = list(variants)
    warm = {}
    for name in names:  # warm-up: the first call traces (and compiles, for XLA); never timed
        t0 = time.perf_counter()
        for _ in range(max(warmup, 1)):
            _sync(variants[name]())
        warm[name] = time.perf_counter() - t0
        print(f"  warm-up {name}: {warm[name]:.1f} s", file=sys.stderr, flush=True)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    blocks = []  # per round: seconds of (train_std + k × grad), measured next to train_adv
    paired = all(n in variants for n in CORE)

    def run(name):
        w, c = _timed(variants[name])
        wall[name].append(w)
        cpu[name].append(c)
        return w

    def block():
        return run("train_std") + sum(run("grad") for _ in range(k))

    others = [n for n in names if not (paired and n in CORE)]
    for r in range(repeats):
        if paired:  # A B / B A alternation: linear drift cancels in the paired ratio
            if r % 2 == 0:
                run("train_adv")
                blocks.append(block())
            else:
                blocks.append(block())
                run("train_adv")
        shift = r % len(others) if others else 0
        for name in others[shift:] + others[:shift]:  # rotate: no position bias
            run(name)
        print(f"  round {r + 1}/{repeats} "
              + (f"adv/block={wall['train_adv'][-1] / blocks[-1]:.3f} " if paired else "")
              + " ".join(f"{n}={wall[n][-1] * 1e3:.0f}ms" for n in names), file=sys.stderr, flush=True)
    return wall, cpu, blocks, warm


def analyse(wall, cpu, blocks, k) -> dict:
    med = {n: statistics.median(v) for n, v in wall.items()}
    out = {"median_seconds": med, "min_seconds": {n: min(v) for n, v in wall.items()},
           "cpu_median_seconds": {n: statistics.median(v) for n, v in cpu.items()}}
    if "grad" in med:
        out["k_grad_seconds"] = k * med["grad"]
    if blocks:
        budget = k * med["grad"] + med["train_std"]
        paired = [a / b for a, b in zip(wall["train_adv"], blocks)]
        cmed = out["cpu_median_seconds"]
        out.update(
            budget_seconds=budget, block_median_seconds=statistics.median(blocks), block_seconds=blocks,
            ratio=med["train_adv"] / budget,
            ratio_paired_median=statistics.median(paired), ratio_paired=paired,
            ratio_cpu=cmed["train_adv"] / (k * cmed["grad"] + cmed["train_std"]),
        )
        out["goal_met"] = out["ratio"] <= 1.1 and out["ratio_paired_median"] <= 1.1
        for name in ("train_adv_fix", "adv_unrolled", "train_adv_xla"):
            if name in med:
                out[f"ratio_{name}"] = med[name] / budget
    if "grad" in med:
        for name in ("attack", "attack_fix", "attack_unrolled"):
            if name in med:
                out[f"{name}_over_k_grad"] = med[name] / (k * med["grad"])
    return out


def report(args, meta, res, load) -> str:
    k = args.steps_k
    med, cmed = res["median_seconds"], res["cpu_median_seconds"]
    lines = [f"{args.model} width {args.width} ({meta['params']:,} params), batch {args.batch}, {args.image}, "
             f"{args.norm} eps {args.eps}, PGD-{k}; medians of {args.repeats} rounds; threads "
             f"{args.threads or 'default'}; load avg {load[0]:.2f} -> {load[1]:.2f}",
             f"{'quantity':38s} {'wall ms':>9s} {'cpu ms':>9s}  note"]

    def row(label, key, note=""):
        if key in med:
            lines.append(f"{label:38s} {med[key] * 1e3:9.1f} {cmed[key] * 1e3:9.1f}  {note}")

    def x(name, base):
        return f"{med[name] / med[base]:.2f} × {base}" if name in med and base in med else ""

    row("t_train  standard step", "train_std")
    row("t_grad   input-gradient pass", "grad")
    if "budget_seconds" in res:
        lines.append(f"{'k·t_grad + t_train':38s} {res['budget_seconds'] * 1e3:9.1f} {'':9s}  "
                     f"budget (paired block median {res['block_median_seconds'] * 1e3:.1f})")
        row("t_adv    PGD adversarial step", "train_adv",
            f"ratio {res['ratio']:.3f}; paired {res['ratio_paired_median']:.3f}")
    for name, label in (("attack", "t_attack pgd() alone"), ("attack_fix", "t_attack_fix (no restart pick)"),
                        ("attack_unrolled", "t_attack_unrolled (no while_loop)")):
        if f"{name}_over_k_grad" in res:
            row(label, name, f"{res[f'{name}_over_k_grad']:.3f} × k·t_grad")
    row("t_attack_xla pgd(jit=True)", "attack_xla", x("attack_xla", "attack"))
    row("t_adv_xla step with jit=True", "train_adv_xla", x("train_adv_xla", "train_adv"))
    row("t_fwd    inference forward", "fwd", x("fwd", "grad"))
    if "budget_seconds" in res and "extras" in med:
        row("t_extras rand start + k projections", "extras", f"{med['extras'] / res['budget_seconds']:.4f} × budget")
    elif "extras" in med:
        row("t_extras rand start + k projections", "extras")
    for name, label in (("train_adv_fix", "t_adv_fix (step, no restart pick)"),
                        ("adv_unrolled", "t_adv_unrolled (reference step)")):
        if f"ratio_{name}" in res:
            row(label, name, f"{res[f'ratio_{name}']:.3f} × budget")
    if "ratio" in res:
        lines.append(f"goal t_adv <= 1.1 × (k·t_grad + t_train): {'MET' if res['goal_met'] else 'NOT MET'} "
                     f"(ratio of medians {res['ratio']:.3f}; paired median {res['ratio_paired_median']:.3f}; "
                     f"CPU-time ratio {res['ratio_cpu']:.3f})")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()[0]
    wall0 = time.perf_counter()
    variants, meta, (model, train_std, x, y) = build(args)
    wall, cpu, blocks, warm = measure(variants, args.repeats, args.warmup, args.steps_k)
    load = (load_before, os.getloadavg()[0])
    res = analyse(wall, cpu, blocks, args.steps_k)
    # the weights moved during the run (lr 0.1 on random labels): check they stayed finite
    final_loss = float(train_std(x, y, tf.constant(0, tf.int64))["loss"])
    text = report(args, meta, res, load)
    print(text)
    print(f"final training loss finite: {np.isfinite(final_loss)}")
    result = {
        "command": " ".join(["python"] + sys.argv),
        "date_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - wall0, 1),
        "load_average_1min": {"before": load[0], "after": load[1]},
        "machine": machine(),
        "args": vars(args),
        "model": meta,
        **res,
        "all_seconds": wall,
        "all_cpu_seconds": cpu,
        "warmup_seconds": warm,
        "final_loss_finite": bool(np.isfinite(final_loss)),
        "table": text,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
