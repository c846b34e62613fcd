"""PGD-10 attack benchmark: advtf vs hand-written loops vs ART, CleverHans and Foolbox.

One Keras model, one batch size, one threat model per norm (Linf and L2 PGD-10, step size
2.5·eps/10, random start, attack on the true label). Every implementation attacks the same N
test images in the same process; the implementations are interleaved over several rounds
(rotating order, warm-up untimed) so that drift of the machine hits all of them alike.

Implementations (``--impls``):

- ``advtf``: ``advtf.attacks.pgd(model, x, y, Threat(...), seed=...)`` (the library as installed).
- ``advtf_unrolled``: the same operations as advtf's single-run PGD (``_pgd_single``: stateless
  seed fold-in, ``threat.random_start``, ``losses.cross_entropy``, ``threat.ascent_direction``,
  ``threat.project``, clip), but the loop is a Python ``for`` over a static step count inside one
  ``tf.function`` (unrolled graph). Same seed, so its output must equal advtf's (checked, as for the two below).
- ``advtf_range``: the same operations with advtf's own loop form, ``for i in tf.range(steps)``
  (``steps`` a tensor; AutoGraph's while loop, ``parallel_iterations`` 10).
- ``advtf_pi1``: the same operations with ``tf.while_loop(..., parallel_iterations=1)`` and the
  step count a tensor.
- ``min_unrolled`` / ``min_range``: a minimal hand-written PGD in one ``tf.function``; the loop
  Python-unrolled, or ``for i in tf.range(steps)`` with ``steps`` a tensor (AutoGraph while loop,
  the form advtf uses).
- ``min_clip_first`` (not in the default list): ``min_unrolled`` with, for L2, the box clip before the
  ball projection (``P_ball(P_box(x + step))``, CleverHans' and ART's order) instead of after it
  (advtf's and Foolbox's); the same random start as ``min_unrolled``. Linf: identical to it.
- ``grad``: the arithmetic limit: ``steps`` calls per batch of a ``tf.function`` computing the input
  gradient of the summed cross-entropy (the gradient work of PGD-k and nothing else), so its
  images/s is (input-gradient images/s) / k, which PGD-k cannot beat. Timed in the rotation like
  the attacks; "× limit (paired)" is the median over rounds of t_grad_block / t_attack.
- ``cleverhans``: ``cleverhans.tf2.attacks.projected_gradient_descent`` (eager, ``rand_init=True``).
- ``foolbox``: ``foolbox.TensorFlowModel`` + ``LinfPGD`` / ``L2PGD`` (``abs_stepsize``); labels are
  passed as int64 (int32 labels fail in eagerpy 0.30 under NumPy 2: ``np.find_common_type``).
- ``art``: ART ``TensorFlowV2Classifier`` + ``ProjectedGradientDescent`` (``num_random_init=1``).

A peer that does not import or fails on its first call is reported with its error and left out.

Models (``--model``):

- ``cnn``: Fashion-MNIST (``advtf.data.load_dataset`` / ``make_batches``), a ~96k-parameter CNN
  trained with Keras for ``--epochs`` (cached at ``--model-cache``). Robust accuracy is meaningful.
- ``resnet``: ``advtf.models.create_model("resnet20v2", input_shape=(32, 32, 3), width=...)``
  with random weights on random images and labels: for throughput only (robust accuracy of an
  untrained model is meaningless and is printed only as a sanity value).

The rounds are interleaved per batch: for each batch every implementation runs once, in an
order rotating with (round, batch). Per implementation: images/s (N / summed wall time of its N
images in a round, result pulled to the host), median and all samples; paired ratios
(median over rounds and batches of the time ratio on the same batch); robust accuracy (clean-correct and adversarial-correct)
per round; the largest ``||delta|| - eps`` and the [0, 1] box over every output, checked
against ``eps + 1e-6``. Writes ``<out>.json`` (all samples) and ``<out>.txt`` (the table).

Example::

    python benchmarks/bench_attacks.py --model cnn --n 1000 --batch 250 --rounds 5 \\
        --out benchmarks/results/attacks_cnn
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback

ALL_IMPLS = ("advtf", "advtf_unrolled", "advtf_range", "advtf_pi1", "min_unrolled", "min_range", "min_clip_first", "grad",
             "cleverhans", "foolbox", "art")
PEERS = ("cleverhans", "foolbox", "art")
TOL = 1e-6


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Implementations: " + ", ".join(ALL_IMPLS))
    p.add_argument("--model", choices=("cnn", "resnet"), default="cnn",
                   help="cnn: trained Fashion-MNIST CNN; resnet: random resnet20v2 on random 32x32x3 (throughput only)")
    p.add_argument("--width", type=float, default=1.0, help="resnet20v2 width multiplier (--model resnet)")
    p.add_argument("--n", type=int, default=1000, help="number of test images attacked per pass")
    p.add_argument("--batch", type=int, default=250, help="attack batch size")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (each implementation once per round)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per implementation first")
    p.add_argument("--steps", type=int, default=10, help="PGD steps")
    p.add_argument("--norms", default="linf,l2", help="comma list of linf,l2")
    p.add_argument("--eps-linf", type=float, default=0.1)
    p.add_argument("--eps-l2", type=float, default=1.0)
    p.add_argument("--impls", default=",".join(k for k in ALL_IMPLS if k != "min_clip_first"),
                   help="comma list of implementations (default: all but min_clip_first)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (--model cnn)")
    p.add_argument("--train-subset", type=int, default=30000, help="training examples (--model cnn)")
    p.add_argument("--model-cache", default="/tmp/advtf_bench_attacks_cnn.keras",
                   help="trained CNN is loaded from here if present, else trained and saved here")
    p.add_argument("--traces", type=int, default=1,
                   help="independent tf.function instances of each loop-form variant (name, name.2, ...)")
    p.add_argument("--intra-op", type=int, default=0, help="TF intra-op threads (0: TensorFlow's default)")
    p.add_argument("--inter-op", type=int, default=0, help="TF inter-op threads (0: TensorFlow's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="output prefix; writes <out>.json and <out>.txt (default benchmarks/results/attacks_<model>)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- models and data

def build_cnn(keras):
    """~96k parameters: conv32-pool-conv64-pool-dense48-dense10, logits, input [0, 1]."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(48, activation="relu"),
        keras.layers.Dense(10),
    ])


def load_cnn_and_data(args, tf, keras, log):
    from advtf.data import load_dataset, make_batches

    splits = load_dataset("fashion_mnist", train_subset=args.train_subset, test_subset=args.n, seed=args.seed)
    if os.path.exists(args.model_cache):
        model = keras.models.load_model(args.model_cache)
        log(f"loaded model from {args.model_cache}")
        trained = {"cache": args.model_cache, "loaded": True}
    else:
        keras.utils.set_random_seed(args.seed)
        model = build_cnn(keras)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        t0 = time.perf_counter()
        hist = model.fit(make_batches(splits.train, 128, training=True, seed=args.seed), epochs=args.epochs, verbose=2)
        model.save(args.model_cache)
        trained = {"cache": args.model_cache, "loaded": False, "epochs": args.epochs,
                   "train_subset": args.train_subset, "seconds": time.perf_counter() - t0,
                   "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()}}
        log(f"trained {args.epochs} epochs in {trained['seconds']:.0f} s, saved to {args.model_cache}")
    xs, ys = [], []
    for x, y in make_batches(splits.test, args.batch, training=False):
        xs.append(tf.constant(x))
        ys.append(tf.cast(y, tf.int32))
    return model, xs, ys, {"dataset": "fashion_mnist", "test_subset": args.n, "train": trained}


def load_resnet_and_data(args, tf, keras, log):
    from advtf.models import create_model

    model = create_model("resnet20v2", input_shape=(32, 32, 3), num_classes=10, width=args.width, seed=args.seed)
    gen = tf.random.Generator.from_seed(args.seed)
    xs, ys = [], []
    for start in range(0, args.n, args.batch):
        b = min(args.batch, args.n - start)
        xs.append(gen.uniform([b, 32, 32, 3]))
        ys.append(gen.uniform([b], maxval=10, dtype=tf.int32))
    log("resnet20v2 random weights, random images: robust accuracy is meaningless here")
    return model, xs, ys, {"dataset": "random 32x32x3 uniform [0,1]", "model": "resnet20v2",
                           "width": args.width, "random_weights": True}


# ---------------------------------------------------------------- implementations

def make_impls(names, model, norm, eps, alpha, steps, batch_shape, tf, log, traces=1):
    """Returns ({name: fn(x, y, seed_int) -> tensor/array}, {name: error})."""
    from advtf.attacks import pgd, threat as threats
    from advtf.attacks.losses import cross_entropy
    from advtf.attacks.threat import Threat

    impls, errors = {}, {}
    threat = Threat(norm=norm, eps=eps, steps=steps, step_size=alpha, restarts=1, random_start=True)
    eps_t, alpha_t, steps_t = tf.constant(eps, tf.float32), tf.constant(alpha, tf.float32), tf.constant(steps)

    def seed_of(i):
        return tf.constant([i, 0], tf.int64)

    # advtf, the library.
    impls["advtf"] = lambda x, y, i: pgd(model, x, y, threat, seed=seed_of(i))

    # advtf's operations, loop forms varied.
    def advtf_step(x, x_adv, y):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            total = tf.reduce_sum(cross_entropy(model(x_adv, training=False), y))
        grad = tape.gradient(total, x_adv)
        step = alpha_t * tf.constant(1.0)
        delta = threats.project(x_adv - x + step * threats.ascent_direction(grad, norm), eps_t, norm)
        return tf.clip_by_value(x + delta, 0.0, 1.0)

    def advtf_start(x, seed):
        run_seed = tf.random.experimental.stateless_fold_in(seed, 0)
        return tf.clip_by_value(x + threats.random_start(tf.shape(x), eps_t, norm, run_seed), 0.0, 1.0)

    def advtf_unrolled(x, y, seed):
        x_adv = advtf_start(x, seed)
        for _ in range(steps):  # Python loop: unrolled at trace time
            x_adv = advtf_step(x, x_adv, y)
        return x_adv

    def advtf_pi1(x, y, seed, n):
        x_adv = advtf_start(x, seed)
        _, x_adv = tf.while_loop(lambda i, xa: i < n, lambda i, xa: (i + 1, advtf_step(x, xa, y)),
                                 (tf.constant(0), x_adv), parallel_iterations=1)
        return x_adv

    def advtf_range(x, y, seed, n):
        x_adv = advtf_start(x, seed)
        for _ in tf.range(n):  # AutoGraph while loop, parallel_iterations 10: advtf's own form
            x_adv = advtf_step(x, x_adv, y)
        return x_adv


    # Minimal hand-written PGD (no advtf code).
    def min_start(x, seed):
        shape = tf.shape(x)
        if norm == "linf":
            d = tf.random.stateless_uniform(shape, seed, -1.0, 1.0) * eps_t
        else:
            g = tf.random.stateless_normal(shape, seed)
            g = g / (tf.sqrt(tf.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)) + 1e-12)
            dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
            u = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1)
            d = g * eps_t * tf.pow(u, 1.0 / dim)
        return tf.clip_by_value(x + d, 0.0, 1.0)

    def min_step(x, x_adv, y):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv, training=False)))
        g = tape.gradient(loss, x_adv)
        if norm == "linf":
            d = tf.clip_by_value(x_adv + alpha_t * tf.sign(g) - x, -eps_t, eps_t)
        else:
            g = g / (tf.sqrt(tf.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)) + 1e-12)
            d = x_adv + alpha_t * g - x
            d = d * tf.minimum(1.0, eps_t / (tf.sqrt(tf.reduce_sum(d * d, axis=[1, 2, 3], keepdims=True)) + 1e-12))
        return tf.clip_by_value(x + d, 0.0, 1.0)

    def min_unrolled(x, y, seed):
        x_adv = min_start(x, seed)
        for _ in range(steps):
            x_adv = min_step(x, x_adv, y)
        return x_adv

    def min_range(x, y, seed, n):
        x_adv = min_start(x, seed)
        for _ in tf.range(n):
            x_adv = min_step(x, x_adv, y)
        return x_adv

    def min_step_clip_first(x, x_adv, y):
        # Box first, then the ball (CleverHans' and ART's order): P_ball(P_box(x_adv + step)).
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv, training=False)))
        g = tape.gradient(loss, x_adv)
        g = g / (tf.sqrt(tf.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)) + 1e-12)
        d = tf.clip_by_value(x_adv + alpha_t * g, 0.0, 1.0) - x
        d = d * tf.minimum(1.0, eps_t / (tf.sqrt(tf.reduce_sum(d * d, axis=[1, 2, 3], keepdims=True)) + 1e-12))
        return tf.clip_by_value(x + d, 0.0, 1.0)  # a no-op up to rounding: the box is convex

    def min_clip_first(x, y, seed):
        x_adv = min_start(x, seed)
        for _ in range(steps):
            x_adv = min_step_clip_first(x, x_adv, y) if norm == "l2" else min_step(x, x_adv, y)
        return x_adv

    # Each loop form as `traces` independent tf.function instances (name, name.2, name.3, ...):
    # separate traces of the same code, to tell a slow trace from a slow form.
    forms = {"advtf_unrolled": (advtf_unrolled, False), "advtf_range": (advtf_range, True),
             "advtf_pi1": (advtf_pi1, True), "min_unrolled": (min_unrolled, False),
             "min_range": (min_range, True), "min_clip_first": (min_clip_first, False)}
    for base, (py_fn, takes_steps) in forms.items():
        for t in range(1, traces + 1):
            f = tf.function(py_fn, reduce_retracing=True)
            if takes_steps:
                impls[base + ("" if t == 1 else f".{t}")] = (lambda f: lambda x, y, i: f(x, y, seed_of(i), steps_t))(f)
            else:
                impls[base + ("" if t == 1 else f".{t}")] = (lambda f: lambda x, y, i: f(x, y, seed_of(i)))(f)

    @tf.function(reduce_retracing=True)
    def grad(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=False)))
        return tape.gradient(loss, x)

    def grad_block(x, y, i):
        # ``steps`` input-gradient passes per batch: the gradient work of one PGD-k pass and
        # nothing else, timed like one (so it sees the same machine state as a PGD pass).
        for _ in range(steps):
            g = grad(x, y)
        return g

    impls["grad"] = grad_block

    # Peers.
    if "cleverhans" in names:
        try:
            import numpy as np
            from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

            ord_ = np.inf if norm == "linf" else 2
            impls["cleverhans"] = lambda x, y, i: projected_gradient_descent(
                model, x, eps, alpha, steps, ord_, clip_min=0.0, clip_max=1.0, y=y, rand_init=True,
                sanity_checks=False)
        except Exception as e:  # noqa: BLE001 - report whatever the peer raises
            errors["cleverhans"] = f"{type(e).__name__}: {e}"
    if "foolbox" in names:
        try:
            import foolbox as fb

            fmodel = fb.TensorFlowModel(model, bounds=(0.0, 1.0))
            cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
            attack = cls(abs_stepsize=alpha, steps=steps, random_start=True)

            def foolbox_fn(x, y, i):
                # int64 labels: with int32 ones, eagerpy 0.30 compares them to argmax's int64 via
                # np.find_common_type, which NumPy 2 removed (AttributeError).
                _, clipped, _ = attack(fmodel, x, tf.cast(y, tf.int64), epsilons=eps)
                return clipped

            impls["foolbox"] = foolbox_fn
        except Exception as e:  # noqa: BLE001
            errors["foolbox"] = f"{type(e).__name__}: {e}"
    if "art" in names:
        try:
            import keras
            import numpy as np
            from art.attacks.evasion import ProjectedGradientDescent
            from art.estimators.classification import TensorFlowV2Classifier

            clf = TensorFlowV2Classifier(
                model=model, nb_classes=10, input_shape=tuple(batch_shape[1:]),
                loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True), clip_values=(0.0, 1.0))
            art_attack = ProjectedGradientDescent(
                clf, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=alpha, max_iter=steps,
                targeted=False, num_random_init=1, batch_size=int(batch_shape[0]), verbose=False)
            impls["art"] = lambda x, y, i: art_attack.generate(x=x.numpy(), y=y.numpy())
        except Exception as e:  # noqa: BLE001
            errors["art"] = f"{type(e).__name__}: {e}"
    return {k: v for k, v in impls.items() if k.split(".")[0] in names}, errors


# ---------------------------------------------------------------- measurement

def run_norm(args, model, xs, ys, norm, tf, np, log):
    eps = args.eps_linf if norm == "linf" else args.eps_l2
    alpha = 2.5 * eps / args.steps
    names = [s for s in args.impls.split(",") if s]
    impls, errors = make_impls(names, model, norm, eps, alpha, args.steps, xs[0].shape, tf, log, args.traces)

    predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=1, output_type=tf.int32))
    clean = [predict(x).numpy() == y.numpy() for x, y in zip(xs, ys)]
    clean_acc = float(np.mean(np.concatenate(clean)))
    n = sum(int(x.shape[0]) for x in xs)

    robust_vec = {}
    checks = {k: {"max_norm_excess": -np.inf, "min": np.inf, "max": -np.inf} for k in impls}

    def one_pass(name, round_id):
        fn = impls[name]
        outs, batch_times = [], []
        t0 = time.perf_counter()
        for b, (x, y) in enumerate(zip(xs, ys)):
            tb = time.perf_counter()
            out = np.asarray(fn(x, y, round_id * 1000 + b))
            batch_times.append(time.perf_counter() - tb)
            outs.append(out)
        total = time.perf_counter() - t0
        return total, batch_times, outs

    def evaluate(name, outs):
        if name == "grad":
            return None
        robust = []
        for x, y, c, xa in zip(xs, ys, clean, outs):
            d = xa.astype(np.float64) - x.numpy().astype(np.float64)
            d = d.reshape(d.shape[0], -1)
            nrm = np.abs(d).max(axis=1) if norm == "linf" else np.sqrt((d * d).sum(axis=1))
            ch = checks[name]
            ch["max_norm_excess"] = max(ch["max_norm_excess"], float((nrm - eps).max()))
            ch["min"] = min(ch["min"], float(xa.min()))
            ch["max"] = max(ch["max"], float(xa.max()))
            robust.append(c & (predict(tf.constant(xa, tf.float32)).numpy() == y.numpy()))
        robust_vec[name] = np.concatenate(robust)
        return float(np.mean(robust_vec[name]))

    # Warm-up (untimed): traces, and drops peers that fail.
    for name in list(impls):
        try:
            for w in range(args.warmup):
                t, _, outs = one_pass(name, 10_000 + w)
                log(f"  warm-up {norm} {name}: {n / t:.0f} img/s")
                evaluate(name, outs)
        except Exception as e:  # noqa: BLE001
            errors[name] = f"{type(e).__name__}: {e}"
            log(f"  {name} FAILED: {errors[name]}\n{traceback.format_exc()}")
            del impls[name]
            checks.pop(name, None)

    order = list(impls)
    samples = {k: {"seconds": [], "batch_seconds": [], "robust_acc": [], "loadavg": []} for k in order}
    same_as_advtf = {}
    discordant = {}  # other: [robust only under advtf's attack, robust only under other's], summed over rounds
    nb = len(xs)
    for r in range(args.rounds):
        # Interleaved per batch: for each batch every implementation runs once, in an order that
        # rotates with (round, batch), so a change of machine state hits all of them alike.
        outs = {k: [] for k in order}
        times = {k: [] for k in order}
        load = os.getloadavg()[0]
        for b, (x, y) in enumerate(zip(xs, ys)):
            k = (r * nb + b) % len(order)
            for name in order[k:] + order[:k]:
                tb = time.perf_counter()
                out = np.asarray(impls[name](x, y, r * 1000 + b))
                times[name].append(time.perf_counter() - tb)
                outs[name].append(out)
        line = []
        for name in order:
            ra = evaluate(name, outs[name])
            s = samples[name]
            t = float(sum(times[name]))
            s["seconds"].append(t)
            s["batch_seconds"].append(times[name])
            s["robust_acc"].append(ra)
            s["loadavg"].append(load)
            line.append(f"{name} {n / t:.0f}" + (f" ({ra:.3f})" if ra is not None else ""))
        if "advtf" in robust_vec:
            for other in order:
                if other not in ("advtf", "grad") and other in robust_vec:
                    a, o = robust_vec["advtf"], robust_vec[other]
                    c = discordant.setdefault(other, [0, 0])
                    c[0] += int(np.sum(a & ~o))
                    c[1] += int(np.sum(~a & o))
        for other in [k for k in outs if k.startswith(("advtf_unrolled", "advtf_range", "advtf_pi1"))]:
            if "advtf" in outs:
                diff = max(float(np.abs(a - b).max()) for a, b in zip(outs["advtf"], outs[other]))
                same_as_advtf[other] = max(same_as_advtf.get(other, 0.0), diff)
        log(f"  round {r} {norm} load {load:.2f}: " + ", ".join(line))

    res = {"eps": eps, "step_size": alpha, "steps": args.steps, "clean_acc": clean_acc, "n": n,
           "errors": errors, "checks": checks, "max_abs_diff_vs_advtf": same_as_advtf,
           "discordant_vs_advtf": discordant, "impls": {}}
    for name in order:
        s = samples[name]
        secs = np.array(s["seconds"])
        rate = n / secs
        entry = {
            "images_per_s_median": float(np.median(rate)), "images_per_s_min": float(rate.min()),
            "images_per_s_max": float(rate.max()), "seconds_median": float(np.median(secs)),
            "seconds_cv": float(secs.std() / secs.mean()),
            "batch_p90_over_p10": float(np.percentile(s["batch_seconds"], 90) / np.percentile(s["batch_seconds"], 10)),
            "samples": s,
        }
        if name != "grad":
            entry["robust_acc_mean"] = float(np.mean(s["robust_acc"]))
            entry["robust_acc_min"] = float(np.min(s["robust_acc"]))
            entry["robust_acc_max"] = float(np.max(s["robust_acc"]))
            ch = checks[name]
            entry["checks"] = {**ch, "ok": bool(ch["max_norm_excess"] <= TOL and ch["min"] >= 0.0 and ch["max"] <= 1.0)}
        res["impls"][name] = entry
    if "grad" in res["impls"]:
        g = res["impls"]["grad"]
        # one grad pass = `steps` gradients per image: gradient images/s = steps * N / t
        g["gradient_images_per_s_median"] = g["images_per_s_median"] * args.steps
        limit = g["images_per_s_median"]
        res["limit_images_per_s"] = limit
        for name in order:
            if name == "grad":
                continue
            e = res["impls"][name]
            e["ratio_to_limit"] = e["images_per_s_median"] / limit
            # paired: per (round, batch), the gradient block next to this attack on the same batch
            e["ratio_to_limit_paired_median"] = float(np.median(
                np.array(samples["grad"]["batch_seconds"]) / np.array(samples[name]["batch_seconds"])))
    # paired ratios between implementations (per round and batch), for the goals
    for a in order:
        for b in order:
            if a != b and a in ("advtf", "advtf_unrolled", "advtf_range", "advtf_pi1", "min_unrolled", "min_range"):
                res.setdefault("paired_speed_ratio", {})[f"{a}/{b}"] = float(np.median(
                    np.array(samples[b]["batch_seconds"]) / np.array(samples[a]["batch_seconds"])))
    return res


def table(res_by_norm, args):
    lines = []
    for norm, res in res_by_norm.items():
        lines.append(f"\n{norm} PGD-{res['steps']}: eps {res['eps']:g}, step {res['step_size']:g}, N {res['n']}, "
                     f"batch {args.batch}, rounds {args.rounds}, clean accuracy {res['clean_acc']:.3f}")
        if "limit_images_per_s" in res:
            g = res["impls"]["grad"]
            lines.append(f"arithmetic limit: input gradient {g['gradient_images_per_s_median']:.0f} img/s "
                         f"/ {res['steps']} steps = {res['limit_images_per_s']:.0f} PGD img/s")
        lines.append("| implementation | img/s median | min–max | CV of round time | batch time p90/p10 | × limit "
                     "| × limit (paired) | robust acc mean (min–max) | max ‖δ‖−eps | box | ok |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for name, e in res["impls"].items():
            if name == "grad":
                lines.append(f"| grad ({res['steps']} gradients/image = limit) | {e['images_per_s_median']:.0f} | {e['images_per_s_min']:.0f}–"
                             f"{e['images_per_s_max']:.0f} | {e['seconds_cv']:.2f} | {e['batch_p90_over_p10']:.2f} | 1 | 1 | | | | |")
                continue
            ch = e["checks"]
            lim = f"{e['ratio_to_limit']:.3f}" if "ratio_to_limit" in e else ""
            limp = f"{e['ratio_to_limit_paired_median']:.3f}" if "ratio_to_limit_paired_median" in e else ""
            lines.append(
                f"| {name} | {e['images_per_s_median']:.0f} | {e['images_per_s_min']:.0f}–{e['images_per_s_max']:.0f} "
                f"| {e['seconds_cv']:.2f} | {e['batch_p90_over_p10']:.2f} | {lim} | {limp} | {e['robust_acc_mean']:.4f} "
                f"({e['robust_acc_min']:.3f}–{e['robust_acc_max']:.3f}) | {ch['max_norm_excess']:.2e} "
                f"| [{ch['min']:.3g}, {ch['max']:.3g}] | {'yes' if ch['ok'] else 'NO'} |")
        pr = res.get("paired_speed_ratio", {})
        for a in ("advtf", "advtf_unrolled", "min_unrolled"):
            row = [f"{k.split('/')[1]} {v:.2f}" for k, v in pr.items() if k.startswith(a + "/") and not k.endswith("/grad")]
            if row:
                lines.append(f"paired speed of {a} vs: " + ", ".join(row))
        if res.get("discordant_vs_advtf"):
            lines.append("per example, summed over rounds, [robust only against advtf, robust only against X]: " + ", ".join(
                f"{k} {v}" for k, v in res["discordant_vs_advtf"].items()))
        for name, err in res["errors"].items():
            lines.append(f"- {name}: did not run: {err}")
        if res["max_abs_diff_vs_advtf"]:
            lines.append("max |output − advtf output| (same seeds): " + ", ".join(
                f"{k} {v:.2e}" for k, v in res["max_abs_diff_vs_advtf"].items()))
    return "\n".join(lines)


def versions():
    out = {"python": platform.python_version()}
    for mod in ("tensorflow", "keras", "numpy", "advtf", "art", "cleverhans", "foolbox", "eagerpy"):
        try:
            from importlib.metadata import version
            dist = {"art": "adversarial-robustness-toolbox"}.get(mod, mod)
            out[mod] = version(dist)
        except Exception as e:  # noqa: BLE001
            out[mod] = f"not installed ({type(e).__name__})"
    return out


def main(argv=None):
    args = parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"attacks_{args.model}")
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    import numpy as np
    import tensorflow as tf
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    import keras

    t_start = time.time()
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    import advtf.attacks.iterative as it
    with open(it.__file__, "rb") as f:
        iterative_sha = hashlib.sha256(f.read()).hexdigest()[:12]
    meta = {"argv": sys.argv, "args": vars(args), "versions": versions(), "commit": commit,
            "advtf_iterative_sha256_12": iterative_sha, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "platform": platform.platform(),
            "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
            "loadavg_start": os.getloadavg(), "time_start": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    log(f"versions {meta['versions']} commit {commit} iterative.py {iterative_sha} load {os.getloadavg()}")
    loader = load_cnn_and_data if args.model == "cnn" else load_resnet_and_data
    model, xs, ys, data_meta = loader(args, tf, keras, log)
    meta["data"] = data_meta
    meta["model_params"] = int(model.count_params())
    log(f"model {args.model}: {meta['model_params']} parameters; {sum(int(x.shape[0]) for x in xs)} images, "
        f"batch {args.batch}")
    results = {}
    for norm in [s for s in args.norms.split(",") if s]:
        log(f"{norm}:")
        results[norm] = run_norm(args, model, xs, ys, norm, tf, np, log)
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_seconds"] = time.time() - t_start
    text = (f"bench_attacks.py --model {args.model}  ({meta['time_start']}, commit {commit}, "
            f"{meta['model_params']} params, load {meta['loadavg_start'][0]:.2f} -> {meta['loadavg_end'][0]:.2f}, "
            f"wall {meta['wall_seconds']:.0f} s)\nversions: "
            + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "\n" + table(results, args))
    if args.model == "resnet":
        text += "\n(random weights and labels: robust accuracy is meaningless here, throughput only)"
    log(text)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1, default=float)
    with open(out + ".txt", "w") as f:
        f.write(text + "\n")
    with open(out + ".log", "w") as f:
        f.write("\n".join(log_lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
