"""``advtf quickstart``: the main job on the embedded default."""

from __future__ import annotations

import click

from advtf.cli.options import print_summary, progress_factory, run_options


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory holding the Fashion-MNIST idx files [default: the Debian package's].")
@click.option("--seed", type=int, default=0, show_default=True)
@run_options(resumable=True)
def quickstart(data_dir, seed, out, overwrite, quiet, resume):
    """Train a standard and an L2-robust model on Fashion-MNIST and compare them under PGD.

    About 10 minutes on a 2-core CPU. Writes report.md, accuracy_vs_eps.png/.csv,
    results.json and the two training runs (standard/, robust/) to --out.

    \b
    Example:
      advtf quickstart --out runs/quickstart
    """
    from advtf.quickstart import run_quickstart
    from advtf.runs import RunDir

    options = {"data_dir": data_dir, "seed": seed}
    with RunDir(out, overwrite=overwrite, resume=resume, resumable=True, options=options) as run:
        results = run_quickstart(run.path, data_dir=data_dir, seed=seed, progress=progress_factory(quiet))
    eps = results["eps"]
    print_summary("advtf quickstart: Fashion-MNIST, standard vs L2-robust", [
        ("standard clean accuracy", results["standard"]["clean_accuracy"]),
        (f"standard PGD accuracy (L2 eps {eps:g})", results["standard"]["robust_accuracy"]),
        ("robust clean accuracy", results["robust"]["clean_accuracy"]),
        (f"robust PGD accuracy (L2 eps {eps:g})", results["robust"]["robust_accuracy"]),
        ("robust gain", results["robust_gain"]),
        ("report", f"{out}/report.md"),
    ])
