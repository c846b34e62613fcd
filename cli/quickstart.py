"""``advtf quickstart``: the main job on the embedded default."""

from __future__ import annotations

import click

from advtf.cli.options import print_summary, run_job, run_options


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory holding the Fashion-MNIST idx files [default: the Debian package's].")
@click.option("--seed", type=int, default=0, show_default=True)
@run_options(resumable=True)
def quickstart(**kw):
    """Train a standard and an L2-robust model on Fashion-MNIST and compare them under PGD.

    About 10 minutes on a 2-core CPU. Writes report.md, accuracy_vs_eps.png/.csv,
    results.json and the two training runs (standard/, robust/) to --out. --resume keeps a
    finished training run and continues the other from its last finished epoch.

    \b
    Example:
      advtf quickstart --out runs/quickstart
    """
    from advtf.jobs.quickstart import QuickstartRequest

    results = run_job("quickstart", QuickstartRequest(data_dir=kw["data_dir"], seed=kw["seed"]), kw)
    eps = results["eps"]
    print_summary("advtf quickstart: Fashion-MNIST, standard vs L2-robust", [
        ("standard clean accuracy", results["standard"]["clean_accuracy"]),
        (f"standard PGD accuracy (L2 eps {eps:g})", results["standard"]["robust_accuracy"]),
        ("robust clean accuracy", results["robust"]["clean_accuracy"]),
        (f"robust PGD accuracy (L2 eps {eps:g})", results["robust"]["robust_accuracy"]),
        ("robust gain", results["robust_gain"]),
        ("report", f"{kw['out']}/report.md"),
    ])
