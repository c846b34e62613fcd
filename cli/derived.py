"""``advtf robustify`` and ``advtf relabel``: derived datasets of Springer et al. (2021)."""

from __future__ import annotations

import click

from advtf.cli.options import (NUMBER, cluster_timeout_option, data_request, dataset_options, parse_attack_options,
                               print_summary, run_job, run_options, strategy_option, threat_options)


def chunked_job_options(*, chunk_size: int, loop: str):
    """Batch and chunk sizes, figure, XLA, strategy and run options of the resumable builders."""
    def apply(f):
        for option in reversed([
            click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True),
            click.option("--chunk-size", type=click.IntRange(min=1), default=chunk_size, show_default=True,
                         help="Examples per resumable chunk (--resume continues after the last finished one)."),
            click.option("--figure-examples", type=click.IntRange(min=0), default=8, show_default=True),
            click.option("--xla", is_flag=True, help=f"Compile the {loop} with XLA (faster on GPU, slower on CPU)."),
            strategy_option(),
            cluster_timeout_option(),
            run_options(resumable=True),
        ]):
            f = option(f)
        return f
    return apply


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_path", metavar="MODEL", type=click.Path())
@dataset_options()
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split to robustify (seed images come from the same split).")
@click.option("--steps", type=click.IntRange(min=1), default=400, show_default=True,
              help="Gradient steps (paper Table 4: 400 for CIFAR-10, 200 for ImageNet-9).")
@click.option("--step-size", type=NUMBER, default=0.05, show_default=True,
              help="L2 length of each step (paper: 0.05 for CIFAR-10, 0.1 for ImageNet-9).")
@click.option("--robustness", type=NUMBER, default=None,
              help="The model's robustness parameter eps, when not recorded by `advtf train` beside it.")
@chunked_job_options(chunk_size=1000, loop="descent loop")
def robustify(**kw):
    """Robustify a split with a model's representation (the test set R_eps).

    For every (x, y): a seed image x0 drawn uniformly from the other images of the split, then
    gradient descent from x0 on ||rep(x_r) - rep(x)|| / ||rep(x)|| (L2-normalised steps, no eps
    bound, clipped to [0, 1]); x_r is labelled y. With an eps-robust MODEL, only its robust
    features carry the label (Springer et al. 2021, Sec. 3.3; Ilyas et al. 2019).

    \b
    Examples:
      advtf robustify runs/robust-0.5 --dataset cifar10 --steps 400 --step-size 0.05 --out runs/R0.5
      advtf robustify runs/std --test-subset 2000 --steps 200 --step-size 0.1 --out runs/R0
      advtf robustify runs/robust-0.5 --dataset cifar10 --out runs/R0.5 --resume   # after an interruption

    --out is a saved dataset (--dataset OUT in every command; `advtf robust-table` evaluates
    classifiers on it) with image, label, seed_index and the representation distances before
    and after; also results.json (relative_distance_before/after), examples.csv/.md and
    robustified.png (seed, robustified, original).
    """
    from advtf.jobs.robustify import RobustifyRequest

    data = data_request(kw)
    request = RobustifyRequest(model=kw["model_path"], data=data, split=kw["split"], steps=kw["steps"],
                               step_size=kw["step_size"], batch_size=kw["batch_size"], chunk_size=kw["chunk_size"],
                               robustness=kw["robustness"], jit=kw["xla"], figure_examples=kw["figure_examples"],
                               strategy=kw["strategy"])
    results = run_job("robustify", request, kw)
    robustness = results["robustness"]
    print_summary(
        f"advtf robustify: {kw['model_path']} ({results['steps']} steps of {results['step_size']:g}) "
        f"on the {request.split} split of {results['dataset']}",
        [("images", results["n"]),
         ("model robustness eps", "unknown (pass --robustness)" if robustness is None else robustness["eps"]),
         ("relative distance before", results["relative_distance_before"]),
         ("relative distance after", results["relative_distance_after"]),
         ("images per second", results["images_per_second"] or "n/a (resumed)")],
        out=kw["out"],
    )


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_path", metavar="MODEL", type=click.Path())
@dataset_options()
@click.option("--mode", type=click.Choice(["zero", "negative"]), required=True,
              help="zero: new label uniform over the classes; negative: (label + 1) mod K.")
@click.option("--per-image", type=click.Choice(["one", "all"]), default="one", show_default=True,
              help="all: one example per class per image (zero mode; the paper's CIFAR-10 set).")
@threat_options(norm="l2", eps="0.5", steps=200, step_size="0.1")
@click.option("--random-start", is_flag=True,
              help="Start PGD from a random point of the ball (default: from x, as Ilyas et al.).")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="Which split to relabel (train: a training set for zero-/negative-robust classifiers).")
@chunked_job_options(chunk_size=2000, loop="attack loop")
def relabel(**kw):
    """Build a zero-robust or negative-robust relabeled dataset.

    Each (x, y) becomes (x_hat, y_hat): x_hat a targeted attack (L2 PGD by default) that MODEL
    classifies as y_hat. zero: y_hat uniform over all classes (robust features uncorrelated with
    the label); negative: y_hat = (y + 1) mod K (anti-correlated). Springer et al. 2021, Sec. 3.2.

    \b
    Examples:
      advtf relabel runs/std --mode zero --norm l2 --eps 0.5 --steps 200 --step-size 0.1 --out runs/D-zero
      advtf relabel runs/std --mode negative --out runs/D-neg
      advtf relabel runs/std --dataset cifar10 --mode zero --per-image all --out runs/D-zero-all
      advtf train --dataset runs/D-zero --model resnet20v2 --out runs/zero-robust   # Table 3 defaults

    --out is a saved dataset (train split relabeled; the test split is the source's) holding
    image, label (the new one), original_label, index and success; results.json has
    success_rate and label_histogram, labels.csv/.md the histogram, relabeled.png examples.
    """
    from advtf.jobs.relabel import RelabelRequest

    data = data_request(kw)
    request = RelabelRequest(model=kw["model_path"], data=data, mode=kw["mode"], per_image=kw["per_image"],
                             attack=kw["attack"], norm=kw["norm"], eps=kw["eps"], steps=kw["steps"],
                             step_size=kw["step_size"], restarts=kw["restarts"], random_start=kw["random_start"],
                             options=parse_attack_options(kw), split=kw["split"], batch_size=kw["batch_size"],
                             chunk_size=kw["chunk_size"], jit=kw["xla"], figure_examples=kw["figure_examples"],
                             strategy=kw["strategy"])
    results = run_job("relabel", request, kw)
    threat = request.threat
    hist = results["label_histogram"]
    print_summary(
        f"advtf relabel: {request.mode}-robust set from {kw['model_path']} ({request.attack} {threat.norm} "
        f"eps={threat.eps:g}, {threat.steps} steps) on the {request.split} split of {results['dataset']}",
        [("examples", results["n"]),
         ("targeted success rate", results["success_rate"]),
         ("success where the label changed", results["success_rate_label_changed"] or "n/a"),
         ("new labels per class (min..max)", f"{min(hist.values())}..{max(hist.values())}"),
         ("images per second", results["images_per_second"] or "n/a (resumed)")],
        out=kw["out"],
    )
