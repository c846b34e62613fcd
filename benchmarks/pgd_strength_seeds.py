"""PGD strength over many independent seeds: advtf's ``pgd`` vs a hand-written loop.

A 4-round benchmark fixes its seeds, and those decide the third decimal of robust accuracy; this
compares means over ``--rounds`` independent seeds instead (strength only, no timing). Uses the
CNN that ``bench_attacks.py --model cnn`` trains and caches.

    python benchmarks/pgd_strength_seeds.py --rounds 12 [--l2-start ball|cube]
"""

from __future__ import annotations

import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--model-cache", default="/tmp/advtf_bench_attacks_cnn.keras")
    parser.add_argument("--l2-start", choices=["ball", "cube"], default="ball",
                        help="hand-written loop's l2 start: uniform in the ball (advtf's), or uniform in the "
                             "cube projected onto the ball (CleverHans's and the robustness library's)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from advtf.attacks import Threat, pgd
    from advtf.attacks import threat as threats
    from advtf.data import load_dataset, make_batches

    model = keras.models.load_model(args.model_cache)
    batches = list(make_batches(load_dataset("fashion_mnist", test_subset=args.n, seed=0).test, 250, training=False))
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        alpha = 2.5 * eps / 10
        threat = Threat(norm=norm, eps=eps, steps=10, step_size=alpha)

        @tf.function
        def hand_written(x, y):
            if norm == "linf" or args.l2_start == "cube":
                d = threats.project(tf.random.uniform(tf.shape(x), -eps, eps), eps, norm)
            else:
                d = threats.random_start(tf.shape(x), eps, norm, tf.random.uniform([2], 0, 2**30, tf.int64))
            x_adv = tf.clip_by_value(x + d, 0, 1)
            for _ in range(10):
                with tf.GradientTape() as tape:
                    tape.watch(x_adv)
                    loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x_adv)))
                step = alpha * threats.ascent_direction(tape.gradient(loss, x_adv), norm)
                x_adv = tf.clip_by_value(x_adv + step, 0, 1)
                x_adv = tf.clip_by_value(x + threats.project(x_adv - x, eps, norm), 0, 1)
            return x_adv

        results = {"advtf": [], "hand-written": []}
        for r in range(args.rounds):
            for name in results:
                robust = 0
                for b, (x, y) in enumerate(batches):
                    if name == "advtf":
                        x_adv = pgd(model, x, y, threat, seed=tf.constant([r * 7919 + 13, b], tf.int64))
                    else:
                        x_adv = hand_written(x, y)
                    ok = (tf.argmax(model(x), -1, output_type=tf.int32) == y) & \
                         (tf.argmax(model(x_adv), -1, output_type=tf.int32) == y)
                    robust += int(tf.reduce_sum(tf.cast(ok, tf.int32)))
                results[name].append(robust / args.n)
        for name, values in results.items():
            v = np.array(values)
            print(f"{norm} {name}: robust accuracy mean {v.mean():.4f}, sd {v.std(ddof=1):.4f}, "
                  f"se {v.std(ddof=1) / np.sqrt(len(v)):.4f} over {len(v)} seeds", flush=True)


if __name__ == "__main__":
    main()
