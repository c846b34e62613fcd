"""Long attacks (C&W, EAD, Str, APGD, autoattack-lite) against their arithmetic limit and ART / Foolbox.

In one process, on one model at a time, every implementation of an attack runs on the same batch in
each round, in an order rotating with the round (interleaved, so drift of the shared 2-core machine
hits all alike). Per round a different batch of images, so the spread over rounds is the noise of
the strength figures over images (and, for APGD, over seeds).

Implementations per attack (``--impls``):

- ``advtf``: the library function as a user calls it (C&W with ``abort_early=False`` so the number
  of passes is fixed and equal to the peers' budget).
- ``advtf_full`` (APGD family only): the library's compiled function with the batch compaction off
  (every run covers the whole batch), so its pass count is exact; ``× limit`` of APGD is taken here.
- ``advtf_xla``: the library with ``jit=True``.
- ``advtf_old``: the library's compiled function with the loop form before issue 17
  (``unroll=1``: one step per while-loop iteration), where the module has the ``unroll`` option.
- ``limit``: the arithmetic limit: the forward+backward passes the attack must do (and its forward-only
  passes), on the same batch, as one compiled function: a ``blocked_loop`` of input-gradient passes,
  then one of forward passes, each adding 1e-30 × its result to a carried copy of x so none is pruned
  (``make_limit``). Graph to graph: neither side pays a Python call per pass. ``× limit`` is the
  paired median over rounds of t_limit / t_attack.
- ``limit_calls``: the limit as measured before (a Python loop of compiled calls, one per pass, as in
  ``bench_derived.py``); loose on a small model, where a call costs as much as a pass.
- ``art`` / ``foolbox``: ART ``CarliniL2Method``, ``ElasticNet``, ``AutoProjectedGradientDescent``
  (APGD-T: one targeted-DLR run per each of the top-3 non-true classes on the still-robust examples,
  as advtf does), ``AutoAttack`` (members APGD-CE and APGD-DLR); Foolbox ``L2CarliniWagnerAttack``,
  ``EADAttack``. A peer that fails is reported with its error and left out.

Slow-mode traces (``--traces K``): for each attack K fresh ``tf.function`` instances of the library's
compiled function are built (a fresh trace each), each called once untimed, then timed next to a
limit block of the same passes (median of 3 alternating pairs); a trace is "slow" when its t/t_limit
is more than 1.3 × the median of the K traces, and a slow trace is timed again (a mode of the trace
stays slow, a burst of load does not).

Models (``--models``): ``cnn`` (the Fashion-MNIST CNN of ``bench_attacks.py``, trained there or
loaded from its cache; images it classifies correctly) and ``resnet`` (ResNet20v2, width 1, 32×32×3,
random weights, random images labelled with the model's own prediction: throughput only).

Example (about 20 minutes on 2 cores)::

    python benchmarks/bench_long_attacks.py --out benchmarks/results/long_attacks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

ATTACKS = ("cw9x100", "cw5x1000", "ead_l1", "ead_en", "str", "apgd_ce", "apgd_dlr_t", "aa_lite")
IMPLS = ("advtf", "advtf_full", "advtf_old", "advtf_xla", "limit", "limit_calls", "art", "foolbox")
SLOW_FACTOR = 1.3
TRACE_REPEATS = 3  # paired timings per trace (median): one burst of load cannot flag a trace


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="cnn,resnet")
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--impls", default="advtf,advtf_full,advtf_old,limit,art,foolbox")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (a different batch each)")
    p.add_argument("--batch-cnn", type=int, default=32, help="images per batch on the CNN (5x1000 C&W: a quarter)")
    p.add_argument("--batch-resnet", type=int, default=8, help="images per batch on ResNet20v2 (5x1000 C&W: a quarter)")
    p.add_argument("--peer-models", default="cnn", help="models the peers run on (ART is slow)")
    p.add_argument("--peer-attacks", default="cw9x100,ead_l1,ead_en,apgd_ce,apgd_dlr_t,aa_lite",
                   help="attacks the peers run on")
    p.add_argument("--art-attacks", default="apgd_ce,apgd_dlr_t,aa_lite",
                   help="attacks ART runs on (its C&W and EAD take minutes for 8 CNN images on this CPU)")
    p.add_argument("--peer-images", type=int, default=8,
                   help="peers attack only the first N images of round 0's batch (ART's C&W and EAD are slow)")
    p.add_argument("--traces", type=int, default=20, help="fresh traces per attack for the slow-mode count (CNN)")
    p.add_argument("--traces-resnet", type=int, default=3, help="fresh traces per attack on ResNet20v2")
    p.add_argument("--trace-attacks", default="cw9x100,ead_en,str,apgd_ce,apgd_dlr_t")
    p.add_argument("--trace-forms", default="1,10",
                   help="loop forms counted (unroll values; 10 = the library's default)")
    p.add_argument("--scale-resnet", type=float, default=1.0,
                   help="multiply the iteration counts on ResNet20v2 by this (throughput is per pass)")
    p.add_argument("--model-cache", default="/tmp/advtf_bench_attacks_cnn.keras")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(HERE, "results", "long_attacks"))
    return p.parse_args(argv)


# ---------------------------------------------------------------- attacks, their pass counts and strength

def attack_specs(np):
    """name -> spec: library call, internal call, pass counts, strength metric, peer builders."""
    from advtf.attacks import Threat
    L2_BIG, L1_BIG = 1e3, 1e5  # min-norm attacks: the budget never binds (advtf's eps is a hard cap)
    return {
        "cw9x100": dict(family="cw", threat=Threat("l2", eps=L2_BIG, steps=100),
                        opts=dict(search_steps=9, abort_early=False, lr=0.1, initial_const=0.01),
                        passes=lambda s, S: (S * s, S), metric="l2"),
        "cw5x1000": dict(family="cw", threat=Threat("l2", eps=L2_BIG, steps=1000),
                         opts=dict(search_steps=5, abort_early=False, lr=0.1, initial_const=0.01),
                         passes=lambda s, S: (S * s, S), metric="l2", batch_div=4),
        "ead_l1": dict(family="ead", threat=Threat("l1", eps=L1_BIG, steps=100),
                       opts=dict(search_steps=9, decision_rule="l1", beta=0.01, lr=0.01, initial_const=0.01),
                       passes=lambda s, S: (S * s, S * s + S), metric="l1"),
        "ead_en": dict(family="ead", threat=Threat("l1", eps=L1_BIG, steps=100),
                       opts=dict(search_steps=9, decision_rule="en", beta=0.01, lr=0.01, initial_const=0.01),
                       passes=lambda s, S: (S * s, S * s + S), metric="l1"),
        "str": dict(family="str", threat=Threat("linf", eps=0.1, steps=100), opts=dict(search_steps=5),
                    passes=lambda s, S: (S * s, S * s), metric="group"),
        "apgd_ce": dict(family="apgd", mode="apgd-ce", threat=Threat("linf", eps=0.1, steps=100),
                        opts=dict(), passes=lambda s, S: (s + 1, 1), metric="robust"),
        "apgd_dlr_t": dict(family="apgd", mode="apgd-dlr", threat=Threat("linf", eps=0.1, steps=100),
                           opts=dict(n_targets=3), passes=lambda s, S: (3 * (s + 1), 1), metric="robust"),
        "aa_lite": dict(family="apgd", mode="autoattack-lite", threat=Threat("linf", eps=0.1, steps=100),
                        opts=dict(n_targets=3), passes=lambda s, S: (4 * (s + 1), 1), metric="robust"),
    }


def scaled(spec, factor):
    """The spec with ``factor`` × the iterations (ResNet throughput runs)."""
    import dataclasses
    if factor == 1.0:
        return spec
    spec = dict(spec)
    spec["threat"] = dataclasses.replace(spec["threat"], steps=max(1, int(round(spec["threat"].steps * factor))))
    return spec


def pass_counts(spec):
    return spec["passes"](int(spec["threat"].steps), int(spec["opts"].get("search_steps", 1)))


def library_fn(spec):
    from advtf.attacks import apgd, cw, ead, structured
    fam = spec["family"]
    if fam == "cw":
        return cw.cw
    if fam == "ead":
        return ead.ead
    if fam == "str":
        return structured.str_attack
    return {"apgd-ce": apgd.apgd_ce, "apgd-dlr": apgd.apgd_dlr, "autoattack-lite": apgd.autoattack_lite}[spec["mode"]]


def internal_call(spec, compiled, model, x, y, seed, tf, **extra):
    """Calls a module's compiled function (or a fresh tf.function of it) with the library's arguments."""
    from advtf.attacks import apgd, cw, ead, structured
    th, o = spec["threat"], spec["opts"]
    f32 = lambda v: tf.constant(float(v), tf.float32)  # noqa: E731
    i32 = lambda v: tf.constant(int(v))  # noqa: E731
    fam = spec["family"]
    label = tf.cast(y, tf.int32)
    if fam == "cw":
        fn = compiled or cw._compiled
        return fn(model, x, label, f32(th.eps), i32(th.steps), i32(o["search_steps"]), f32(o["initial_const"]),
                  f32(0.0), f32(o["lr"]), False, bool(o["abort_early"]), **extra)
    if fam == "ead":
        fn = compiled or ead._compiled
        return fn(model, x, label, f32(th.eps), i32(th.steps), i32(o["search_steps"]), f32(o["initial_const"]),
                  f32(0.0), f32(o["lr"]), f32(o["beta"]), th.norm, False, o["decision_rule"], True, **extra)
    if fam == "str":
        fn = compiled or structured._compiled
        return fn(model, x, label, f32(th.eps), f32(1.0), f32(1.0), f32(1.0), f32(5.0), f32(0.0), f32(1.0),
                  i32(th.steps), i32(o["search_steps"]), 2, False, **extra)
    fn = compiled or apgd._compiled
    return fn(model, x, label, label, f32(th.eps), i32(th.steps), i32(th.restarts), tf.constant([seed, 0], tf.int64),
              f32(0.75), f32(0.75), th.norm, spec["mode"], False, i32(o.get("n_targets", 1)), True,
              extra.pop("compact", True), **extra)


def raw_function(spec):
    from advtf.attacks import apgd, cw, ead, structured
    return {"cw": cw._cw_l2, "ead": ead._ead, "str": structured._str_attack, "apgd": apgd._attack}[spec["family"]]


def has_unroll(spec):
    import inspect
    return "unroll" in inspect.signature(raw_function(spec)).parameters


def strength(spec, model, x, y, x_adv, np, tf):
    """Per-example success (bool) and the norm of the perturbation in the attack's metric."""
    from advtf.attacks.structured import group_lasso
    x_adv = np.asarray(x_adv, np.float32)
    pred = np.argmax(np.asarray(model(tf.constant(x_adv), training=False)), axis=1)
    success = pred != np.asarray(y)
    d = (x_adv.astype(np.float64) - np.asarray(x, np.float64)).reshape(len(x_adv), -1)
    metric = spec["metric"]
    if metric == "l2":
        norm = np.sqrt((d * d).sum(1))
    elif metric == "l1":
        norm = np.abs(d).sum(1)
    elif metric == "group":
        norm = np.asarray(group_lasso(tf.constant(x_adv - np.asarray(x)), 2), np.float64)
    else:
        norm = np.abs(d).max(1)
    box_ok = bool(x_adv.min() >= 0.0 and x_adv.max() <= 1.0)
    return success, norm, box_ok


# ---------------------------------------------------------------- peers

def make_peers(names, spec, model, batch_shape, np, tf, keras):
    """{name: fn(x, y, seed) -> array}, {name: error} for the peers of one attack."""
    impls, errors = {}, {}
    th, o = spec["threat"], spec["opts"]
    b = int(batch_shape[0])
    if "art" in names:
        try:
            from art.estimators.classification import TensorFlowV2Classifier
            clf = TensorFlowV2Classifier(
                model=model, nb_classes=10, input_shape=tuple(batch_shape[1:]),
                loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True), clip_values=(0.0, 1.0))
            fam = spec["family"]
            if fam == "cw":
                from art.attacks.evasion import CarliniL2Method
                a = CarliniL2Method(clf, confidence=0.0, targeted=False, learning_rate=o["lr"],
                                    binary_search_steps=o["search_steps"], max_iter=int(th.steps),
                                    initial_const=o["initial_const"], batch_size=b, verbose=False)
                impls["art"] = lambda x, y, s, a=a: a.generate(x=x, y=y)
            elif fam == "ead":
                from art.attacks.evasion import ElasticNet
                a = ElasticNet(clf, confidence=0.0, targeted=False, learning_rate=o["lr"],
                               binary_search_steps=o["search_steps"], max_iter=int(th.steps), beta=o["beta"],
                               initial_const=o["initial_const"], batch_size=b,
                               decision_rule=o["decision_rule"].upper(), verbose=False)
                impls["art"] = lambda x, y, s, a=a: a.generate(x=x, y=y)
            elif fam == "apgd":
                from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent
                common = dict(norm=np.inf, eps=th.eps, eps_step=2 * th.eps, max_iter=int(th.steps),
                              nb_random_init=1, batch_size=b, verbose=False)
                ce = AutoProjectedGradientDescent(clf, targeted=False, loss_type="cross_entropy", **common)
                dlr_t = AutoProjectedGradientDescent(clf, targeted=True, loss_type="difference_logits_ratio", **common)

                def apgd_t(x, y, x_start, robust):
                    # advtf's APGD-T: the top-3 non-true classes of the clean logits, one after the other,
                    # each on the examples still robust.
                    logits = np.array(model(tf.constant(x), training=False))  # a writable copy
                    logits[np.arange(len(y)), y] = -np.inf
                    order = np.argsort(-logits, axis=1, kind="stable")[:, :o.get("n_targets", 3)]
                    x_adv = x_start.copy()
                    for t in range(order.shape[1]):
                        idx = np.flatnonzero(robust)
                        if idx.size == 0:
                            break
                        out = dlr_t.generate(x=x[idx], y=order[idx, t])
                        hit = np.argmax(np.asarray(model(tf.constant(out), training=False)), 1) != y[idx]
                        x_adv[idx[hit]] = out[hit]
                        robust[idx[hit]] = False
                    return x_adv

                def clean_robust(x, y):
                    return np.argmax(np.asarray(model(tf.constant(x), training=False)), 1) == y

                mode = spec["mode"]
                if mode == "apgd-ce":
                    impls["art"] = lambda x, y, s: ce.generate(x=x, y=y)
                elif mode == "apgd-dlr":
                    impls["art"] = lambda x, y, s: apgd_t(x, y, x.copy(), clean_robust(x, y))
                else:
                    def art_composed(x, y, s):
                        x_ce = ce.generate(x=x, y=y)
                        robust = np.argmax(np.asarray(model(tf.constant(x_ce), training=False)), 1) == y
                        return apgd_t(x, y, x_ce, robust)
                    impls["art"] = art_composed
                    aa = AutoAttack(clf, norm=np.inf, eps=th.eps, eps_step=2 * th.eps,
                                    attacks=[AutoProjectedGradientDescent(clf, targeted=False, loss_type="cross_entropy",
                                                                          **common),
                                             AutoProjectedGradientDescent(clf, targeted=False,
                                                                          loss_type="difference_logits_ratio",
                                                                          **common)],
                                    batch_size=b, targeted=False)
                    impls["art_autoattack"] = lambda x, y, s, aa=aa: aa.generate(x=x, y=y)
        except Exception as e:  # noqa: BLE001
            errors["art"] = f"{type(e).__name__}: {e}"
    if "foolbox" in names and spec["family"] in ("cw", "ead"):
        try:
            import foolbox as fb
            fmodel = fb.TensorFlowModel(model, bounds=(0.0, 1.0))
            if spec["family"] == "cw":
                a = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=o["search_steps"], steps=int(th.steps),
                                                     stepsize=o["lr"], confidence=0.0,
                                                     initial_const=o["initial_const"], abort_early=False)
            else:
                a = fb.attacks.EADAttack(binary_search_steps=o["search_steps"], steps=int(th.steps),
                                         initial_stepsize=o["lr"], confidence=0.0, initial_const=o["initial_const"],
                                         regularization=o["beta"], decision_rule=o["decision_rule"].upper(),
                                         abort_early=False)

            def fb_fn(x, y, s, a=a):
                # int64 labels: eagerpy 0.30's int32 path calls np.find_common_type (gone in NumPy 2).
                raw, _, _ = a(fmodel, tf.constant(x), tf.constant(y, tf.int64), epsilons=None)
                return np.asarray(raw)

            impls["foolbox"] = fb_fn
        except Exception as e:  # noqa: BLE001
            errors["foolbox"] = f"{type(e).__name__}: {e}"
    return impls, errors


# ---------------------------------------------------------------- models and data

def load_model_and_batches(name, args, n_batches, batch, np, tf, keras, log):
    """(model, [x batches as numpy], [y batches], meta). CNN: correctly classified test images."""
    if name == "cnn":
        import bench_attacks
        ns = types.SimpleNamespace(train_subset=30000, n=2000, seed=args.seed, model_cache=args.model_cache,
                                   epochs=2, batch=250)
        model, xs, ys, meta = bench_attacks.load_cnn_and_data(ns, tf, keras, log)
        x = np.concatenate([np.asarray(v) for v in xs])
        y = np.concatenate([np.asarray(v) for v in ys]).astype(np.int32)
        pred = np.argmax(np.asarray(model(tf.constant(x), training=False)), 1)
        keep = pred == y
        meta["clean_accuracy"] = float(keep.mean())
        x, y = x[keep], y[keep]
    else:
        from advtf.models import create_model
        model = create_model("resnet20v2", input_shape=(32, 32, 3), num_classes=10, width=1.0, seed=args.seed)
        rng = np.random.default_rng(args.seed)
        x = rng.uniform(size=(n_batches * batch, 32, 32, 3)).astype(np.float32)
        y = np.argmax(np.asarray(model(tf.constant(x), training=False)), 1).astype(np.int32)
        meta = {"model": "resnet20v2 width 1, random weights", "data": "uniform [0,1] 32x32x3, labels = model's prediction"}
    need = n_batches * batch
    if len(x) < need:
        raise SystemExit(f"{name}: only {len(x)} images, need {need}")
    xb = [x[i * batch:(i + 1) * batch] for i in range(n_batches)]
    yb = [y[i * batch:(i + 1) * batch] for i in range(n_batches)]
    meta["params"] = int(model.count_params())
    return model, xb, yb, meta


def make_limit(model, tf):
    """The arithmetic limit as one compiled function: ``block(x, y, n_grad, n_fwd)`` runs ``n_grad``
    input-gradient passes (forward + backward of the summed cross-entropy) and then ``n_fwd`` forward
    passes on the batch inside one graph, in ``advtf.attacks.loops.blocked_loop`` (the attacks' loop
    form), so an attack and its limit compare graph to graph. Each pass adds 1e-30 × its result to a
    carried copy of ``x`` (the value does not change in float32; no pass can be pruned). The counts
    are tensors: one trace serves every attack."""
    from advtf.attacks.loops import blocked_loop

    @tf.function(reduce_retracing=True)
    def limit(x, y, n_grad, n_fwd):
        def grad_step(i, xc):
            with tf.GradientTape() as tape:
                tape.watch(xc)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(xc, training=False)))
            return xc + 1e-30 * tape.gradient(loss, xc)

        def fwd_step(i, xc):
            return xc + 1e-30 * tf.reduce_sum(model(xc, training=False))

        xc = blocked_loop(n_grad, grad_step, x)
        return blocked_loop(n_fwd, fwd_step, xc)

    def block(x, y, n_grad, n_fwd):
        return limit(tf.convert_to_tensor(x), tf.cast(y, tf.int32), tf.constant(int(n_grad), tf.int32),
                     tf.constant(int(n_fwd), tf.int32)).numpy()

    return block


def make_limit_calls(model, tf):
    """The limit as measured before: a Python loop of compiled gradient / forward calls (one call per
    pass; on a small model the per-call overhead makes it a loose bound). Kept as the ``limit_calls`` impl."""
    @tf.function(reduce_retracing=True)
    def grad(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=False)))
        return tape.gradient(loss, x)

    @tf.function(reduce_retracing=True)
    def fwd(x):
        return model(x, training=False)

    def block(x, y, n_grad, n_fwd):
        g = f = None
        for _ in range(n_grad):
            g = grad(x, y)
        for _ in range(n_fwd):
            f = fwd(x)
        return (g if g is not None else f).numpy()

    return block


# ---------------------------------------------------------------- measurement

def run_attack(name, spec, model, xb, yb, impl_names, peers_on, args, limit_block, np, tf, keras, log):
    from advtf.attacks import apgd
    lib = library_fn(spec)
    n_grad, n_fwd = pass_counts(spec)
    impls, errors = {}, {}
    tf_x = [tf.constant(x) for x in xb]
    tf_y = [tf.constant(y) for y in yb]

    def lib_call(jit):
        return lambda i, s: lib(model, tf_x[i], tf_y[i], spec["threat"], jit=jit, **spec["opts"],
                                **({"seed": tf.constant([s, 0], tf.int64)} if spec["family"] == "apgd" else {}))

    if "advtf" in impl_names:
        impls["advtf"] = lib_call(False)
    if "advtf_xla" in impl_names:
        impls["advtf_xla"] = lib_call(True)
    if "advtf_full" in impl_names and spec["family"] == "apgd":
        impls["advtf_full"] = lambda i, s: internal_call(spec, None, model, tf_x[i], tf_y[i], s, tf, compact=False)
    if "advtf_old" in impl_names and has_unroll(spec):
        extra = {"compact": False} if spec["family"] == "apgd" else {}
        impls["advtf_old"] = lambda i, s: internal_call(spec, None, model, tf_x[i], tf_y[i], s, tf, unroll=1, **extra)
    if "limit" in impl_names:
        impls["limit"] = lambda i, s: limit_block(tf_x[i], tf_y[i], n_grad, n_fwd)
    if "limit_calls" in impl_names:
        calls = make_limit_calls(model, tf)
        impls["limit_calls"] = lambda i, s: calls(tf_x[i], tf_y[i], n_grad, n_fwd)
    if peers_on:
        names = [k for k in impl_names if k != "art" or name in args.art_attacks.split(",")]
        peer_impls, errors = make_peers(names, spec, model, xb[0].shape, np, tf, keras)
        p = args.peer_images
        for k, fn in peer_impls.items():
            impls[k] = (lambda fn: lambda i, s: fn(xb[i][:p], yb[i][:p], s))(fn)
    del apgd

    # warm-up: trace / compile on batch 0 (untimed); drop what fails
    for k in list(impls):
        t0 = time.perf_counter()
        try:
            np.asarray(impls[k](0, 999))
            log(f"    warm-up {k}: {time.perf_counter() - t0:.1f} s")
        except Exception as e:  # noqa: BLE001
            errors[k] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"    {k} FAILED: {errors[k]}\n{traceback.format_exc()}")
            del impls[k]

    order = list(impls)
    rec = {k: {"seconds": [], "rounds": [], "success": [], "norm": [], "box_ok": True} for k in order}
    peers = [k for k in order if k.startswith(("art", "foolbox"))]
    for r in range(args.rounds):
        i = r % len(xb)
        k0 = r % len(order)
        for k in order[k0:] + order[:k0]:
            if k in peers and r > 0:
                continue  # peers: round 0 only
            t0 = time.perf_counter()
            out = np.asarray(impls[k](i, 1000 + r))
            rec[k]["seconds"].append(time.perf_counter() - t0)
            rec[k]["rounds"].append(r)
            if not k.startswith("limit"):
                n_img = len(out)
                succ, norm, box = strength(spec, model, xb[i][:n_img], yb[i][:n_img], out, np, tf)
                rec[k]["success"].append(succ.tolist())
                rec[k]["norm"].append(norm.tolist())
                rec[k]["box_ok"] &= box
        log(f"    round {r} load {os.getloadavg()[0]:.1f}: " + ", ".join(
            f"{k} {len(rec[k]['success'][-1]) if not k.startswith('limit') else len(xb[i])} img "
            f"{rec[k]['seconds'][-1]:.2f} s" for k in order if rec[k]["rounds"] and rec[k]["rounds"][-1] == r))
    return summarise(name, spec, rec, len(xb[0]), errors, np)


def summarise(name, spec, rec, batch, errors, np):
    """Images/s, paired ratios over the rounds both ran, strength pooled over rounds; peers (round 0, their
    first images) are compared with advtf on the same images."""
    out = {"batch": batch, "steps": int(spec["threat"].steps), "search_steps": spec["opts"].get("search_steps"),
           "passes": dict(zip(("grad", "forward"), pass_counts(spec))), "errors": errors, "impls": {}}

    def per_round(k):
        return {r: t for r, t in zip(rec[k]["rounds"], rec[k]["seconds"])}

    def per_image_time(k):  # seconds per image, per round
        return {r: t / (len(rec[k]["success"][j]) if not k.startswith("limit") else batch)
                for j, (r, t) in enumerate(zip(rec[k]["rounds"], rec[k]["seconds"]))}

    for k, r in rec.items():
        if not r["seconds"]:
            continue
        n_img = batch if k.startswith("limit") else len(r["success"][0])
        e = {"seconds": r["seconds"], "rounds": r["rounds"], "images": n_img,
             "images_per_s": float(n_img / np.median(r["seconds"]))}
        mine = per_image_time(k)
        for ref, key in (("limit", "x_limit_paired"), ("advtf", "advtf_speedup_paired")):
            if ref in rec and k != ref and k != "limit":
                other = per_image_time(ref)
                common = [q for q in mine if q in other]
                if common:
                    # x limit: t_limit / t_k; speed-up of advtf over k: t_k / t_advtf (per image)
                    vals = [other[q] / mine[q] if key == "x_limit_paired" else mine[q] / other[q] for q in common]
                    e[key] = float(np.median(vals))
        if not k.startswith("limit"):
            succ = [np.array(v) for v in r["success"]]
            norms = [np.array(v) for v in r["norm"]]
            rates = [float(v.mean()) for v in succ]
            all_s, all_n = np.concatenate(succ), np.concatenate(norms)
            e["success_rate"] = float(all_s.mean())
            e["success_rate_per_round"] = rates
            e["success_rate_sd_rounds"] = float(np.std(rates))
            if spec["metric"] == "robust":
                e["robust_accuracy"] = 1.0 - e["success_rate"]
            else:
                e["median_norm"] = float(np.median(all_n[all_s])) if all_s.any() else float("nan")
                e["median_norm_per_round"] = [float(np.median(n[s])) if s.any() else float("nan")
                                              for s, n in zip(succ, norms)]
            e["box_ok"] = r["box_ok"]
            e["success"], e["norm"] = r["success"], r["norm"]
            if "advtf" in rec and k != "advtf" and r["rounds"]:
                # paired per example on the images both attacked (round r's first n_img images)
                j = rec["advtf"]["rounds"].index(r["rounds"][0])
                a_s = np.array(rec["advtf"]["success"][j][:n_img])
                a_n = np.array(rec["advtf"]["norm"][j][:n_img])
                s0, n0 = succ[0], norms[0]
                both = a_s & s0
                e["paired_images"] = n_img
                e["advtf_success_rate_same_images"] = float(a_s.mean())
                e["only_advtf_succeeds"] = int((a_s & ~s0).sum())
                e["only_this_succeeds"] = int((~a_s & s0).sum())
                if both.any() and spec["metric"] != "robust":
                    e["advtf_median_norm_same_images"] = float(np.median(a_n[a_s])) if a_s.any() else float("nan")
                    e["median_norm_ratio_vs_advtf_both_succeed"] = float(np.median(n0[both] / np.maximum(a_n[both], 1e-12)))
        out["impls"][k] = e
    return out


def run_traces(name, spec, model, x, y, count, limit_block, np, tf, log, forms=(1, None)):
    """``count`` fresh traces of the library's compiled function per loop form (``unroll`` 1, the old
    one-step loop, and the default): t / t_limit each; slow ones flagged."""
    from advtf.attacks.loops import UNROLL
    spec = dict(spec)
    spec["opts"] = dict(spec["opts"])
    if "search_steps" in spec["opts"]:
        spec["opts"]["search_steps"] = 1  # the graph is the same for any count (a tensor); keep it short
    n_grad, n_fwd = pass_counts(spec)
    raw = raw_function(spec)
    tx, ty = tf.constant(x), tf.constant(y)
    forms = tuple(UNROLL if u is None else u for u in forms) if has_unroll(spec) else (None,)
    limit_block(tx, ty, 1, 1)  # trace the limit before the first timed pair
    res = {}
    for u in forms:
        extra = {"compact": False} if spec["family"] == "apgd" else {}
        if u is not None:
            extra["unroll"] = u
        ratios, trace_s, fns = [], [], []

        def paired(f, first):
            """Median over TRACE_REPEATS of t_attack / t_limit, alternating which of the pair goes first."""
            out = []
            for r in range(TRACE_REPEATS):
                for which in ((0, 1) if (first + r) % 2 == 0 else (1, 0)):
                    t0 = time.perf_counter()
                    if which == 0:
                        np.asarray(internal_call(spec, f, model, tx, ty, 7, tf, **dict(extra)))
                        ta = time.perf_counter() - t0
                    else:
                        limit_block(tx, ty, n_grad, n_fwd)
                        tl = time.perf_counter() - t0
                out.append(ta / tl)
            return float(np.median(out))

        for t in range(count):
            f = tf.function(raw, reduce_retracing=True)
            t0 = time.perf_counter()
            internal_call(spec, f, model, tx, ty, 7, tf, **dict(extra)).numpy()
            trace_s.append(time.perf_counter() - t0)
            ratios.append(paired(f, t))
            fns.append(f)
        med = float(np.median(ratios))
        slow = [i for i, v in enumerate(ratios) if v > SLOW_FACTOR * med]
        # A slow mode is a property of the trace and outlives a burst of load: time flagged ones again.
        again = {i: paired(fns[i], 0) for i in slow}
        confirmed = [i for i, v in again.items() if v > SLOW_FACTOR * med]
        key = f"unroll{u}" if u is not None else "library"
        log(f"    traces {name} {key}: t/t_limit " + " ".join(f"{v:.2f}" for v in ratios) + f"; slow {len(slow)}/{count}"
            + (f", re-timed {' '.join(f'{again[i]:.2f}' for i in slow)}: {len(confirmed)} stay slow" if slow else ""))
        res[key] = {"t_over_limit": ratios, "median": med, "slow": slow, "n_slow": len(slow), "count": count,
                    "retimed": {str(i): v for i, v in again.items()}, "confirmed_slow": confirmed,
                    "repeats": TRACE_REPEATS,
                    "first_call_seconds": trace_s, "passes": dict(zip(("grad", "forward"), (n_grad, n_fwd)))}
    return res


def versions():
    from importlib.metadata import version
    out = {"python": platform.python_version()}
    for mod, dist in (("tensorflow", "tensorflow"), ("keras", "keras"), ("numpy", "numpy"), ("advtf", "advtf"),
                      ("art", "adversarial-robustness-toolbox"), ("foolbox", "foolbox"), ("eagerpy", "eagerpy")):
        try:
            out[mod] = version(dist)
        except Exception as e:  # noqa: BLE001
            out[mod] = f"not installed ({type(e).__name__})"
    return out


def table(results):
    lines = ["| model | attack | impl | images/s | × limit (paired) | advtf speed-up (paired) | success | "
             "strength | box |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for model, per_attack in results.items():
        for name, res in per_attack.get("attacks", {}).items():
            for k, e in res["impls"].items():
                if k == "limit":
                    lines.append(f"| {model} | {name} | limit ({res['passes']['grad']} grad + {res['passes']['forward']} "
                                 f"fwd, batch {res['batch']}) | {e['images_per_s']:.2f} | 1 | | | | |")
                    continue
                if k == "limit_calls":
                    lines.append(f"| {model} | {name} | limit_calls (one Python call per pass) | {e['images_per_s']:.2f} "
                                 f"| {e.get('x_limit_paired', float('nan')):.3f} | | | | |")
                    continue
                sr = f"{e['success_rate']:.3f} ± {e['success_rate_sd_rounds']:.3f}"
                if "robust_accuracy" in e:
                    st = f"robust acc {e['robust_accuracy']:.3f}"
                else:
                    st = f"median norm {e['median_norm']:.3f} (rounds " + ", ".join(
                        f"{v:.3f}" for v in e["median_norm_per_round"]) + ")"
                    if "median_norm_ratio_vs_advtf_both_succeed" in e:
                        st += f"; norm ÷ advtf's (both succeed) {e['median_norm_ratio_vs_advtf_both_succeed']:.3f}"
                if "median_norm_ratio_vs_advtf_both_succeed" in e or "paired_images" in e:
                    st += (f"; advtf on the same {e['paired_images']} images: success "
                           f"{e['advtf_success_rate_same_images']:.3f}"
                           + (f", median norm {e['advtf_median_norm_same_images']:.3f}"
                              if "advtf_median_norm_same_images" in e else ""))
                lines.append(f"| {model} | {name} | {k} | {e['images_per_s']:.2f} | {e.get('x_limit_paired', float('nan')):.3f} "
                             f"| {e.get('advtf_speedup_paired', float('nan')):.2f} | {sr} | {st} | "
                             f"{'ok' if e['box_ok'] else 'NO'} |")
            for k, err in res["errors"].items():
                lines.append(f"| {model} | {name} | {k} | did not run: {err} | | | | | |")
        if per_attack.get("traces"):
            lines.append("")
            lines.append(f"{model}: fresh traces, t / t_limit per trace (slow: > {SLOW_FACTOR} × median)")
            for name, forms in per_attack["traces"].items():
                for form, tr in forms.items():
                    lines.append(f"- {name} {form}: slow {tr['n_slow']}/{tr['count']} "
                                 f"(re-timed, still slow: {len(tr.get('confirmed_slow', []))}); median {tr['median']:.3f}; "
                                 + " ".join(f"{v:.2f}" for v in tr["t_over_limit"]))
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    import numpy as np
    import tensorflow as tf
    import keras

    t_start = time.time()
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    meta = {"argv": sys.argv, "args": vars(args), "versions": versions(), "commit": commit,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg_start": os.getloadavg(),
            "time_start": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    log(f"versions {meta['versions']} commit {commit} load {os.getloadavg()}")
    specs = attack_specs(np)
    attacks = [a for a in args.attacks.split(",") if a]
    impl_names = [s for s in args.impls.split(",") if s]
    results = {}
    out = args.out

    def save():
        meta["loadavg_end"] = os.getloadavg()
        meta["wall_seconds"] = time.time() - t_start
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        text = (f"bench_long_attacks.py ({meta['time_start']}, commit {commit}, load "
                f"{meta['loadavg_start'][0]:.2f} -> {meta['loadavg_end'][0]:.2f}, wall {meta['wall_seconds']:.0f} s)\n"
                + table(results))
        with open(out + ".json", "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1, default=float)
        with open(out + ".md", "w") as f:
            f.write(text + "\n")
        with open(out + ".log", "w") as f:
            f.write("\n".join(log_lines) + "\n")
        return text

    for mname in [m for m in args.models.split(",") if m]:
        batch = args.batch_cnn if mname == "cnn" else args.batch_resnet
        model, xb, yb, mmeta = load_model_and_batches(mname, args, args.rounds, batch, np, tf, keras, log)
        log(f"model {mname}: {mmeta}")
        limit_block = make_limit(model, tf)
        results[mname] = {"meta": mmeta, "attacks": {}, "traces": {}}
        for name in attacks:
            spec = specs[name] if mname == "cnn" else scaled(specs[name], args.scale_resnet)
            div = spec.get("batch_div", 1)
            sub_x = [x[: max(1, len(x) // div)] for x in xb]
            sub_y = [y[: max(1, len(y) // div)] for y in yb]
            peers_on = mname in args.peer_models.split(",") and name in args.peer_attacks.split(",")
            log(f"  {mname} {name}: batch {len(sub_x[0])}, steps {spec['threat'].steps}, passes {pass_counts(spec)}")
            t0 = time.perf_counter()
            results[mname]["attacks"][name] = run_attack(name, spec, model, sub_x, sub_y, impl_names, peers_on, args,
                                                         limit_block, np, tf, keras, log)
            results[mname]["attacks"][name]["wall_seconds"] = time.perf_counter() - t0
            save()
        count = args.traces if mname == "cnn" else args.traces_resnet
        for name in [a for a in args.trace_attacks.split(",") if a and count > 0]:
            spec = specs[name] if mname == "cnn" else scaled(specs[name], args.scale_resnet)
            forms = tuple(int(u) for u in args.trace_forms.split(",") if u)
            results[mname]["traces"][name] = run_traces(name, spec, model, xb[0], yb[0], count, limit_block, np, tf,
                                                        log, forms)
            save()
    log(save())
    return 0


if __name__ == "__main__":
    sys.exit(main())
