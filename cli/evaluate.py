"""``advtf evaluate``."""

from __future__ import annotations

import click

from advtf.cli.options import (cluster_timeout_option, data_request, dataset_options, make_threat,
                               parse_attack_options, print_summary, run_job, run_options, strategy_option,
                               threat_options)


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_path", metavar="MODEL", type=click.Path())
@dataset_options()
@threat_options()
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--xla", is_flag=True, help="Compile the attack loop with XLA.")
@click.option("--no-checks", is_flag=True,
              help="Skip the reliability checks (after AutoAttack's, Croce & Hein 2020): outputs that are "
                   "probabilities, randomness, masked gradients, FGSM or a shorter PGD fooling more images "
                   "than the attack, too few classes for APGD-T. They cost three forward passes, one gradient, "
                   "and the attack plus an FGSM and a PGD of at most 10 steps, on --check-images images.")
@click.option("--check-images", type=click.IntRange(min=1), default=64, show_default=True,
              help="First test images the reliability checks run on.")
@strategy_option()
@cluster_timeout_option()
@run_options(resumable=True)
def evaluate(**kw):
    """Clean and robust accuracy of a trained model on the test split (true label attacked).

    MODEL is a .keras file or a run directory of `advtf train`.

    \b
    Examples:
      advtf evaluate runs/robust --attack pgd --norm l2 --eps 0.5 --steps 20 --restarts 2 --out runs/robust-eval
      advtf evaluate runs/robust --attack autoattack-lite --norm linf --eps 8/255 --out runs/robust-aa
      advtf evaluate runs/robust --attack cw --norm l2 --eps 0.5 -O search_steps=9 --out runs/robust-cw

    Without --norm, pgd runs in l2 and any other attack in its own norm (`--attack str`: linf),
    with that norm's usual --eps. Writes results.json (clean_accuracy, robust_accuracy, n,
    threat, checks, warnings), results.csv/.md, accuracy.png (accuracy at eps 0 and at eps) and
    manifest.json to --out. `warnings` lists what the reliability checks found (empty: checked,
    nothing found); each is also printed below the summary.
    """
    from advtf.jobs.evaluate import EvaluateRequest

    data = data_request(kw)
    threat = make_threat(kw)
    request = EvaluateRequest(model=kw["model_path"], threat=threat, data=data, attack=kw["attack"],
                              options=parse_attack_options(kw), batch_size=kw["batch_size"], jit=kw["xla"],
                              strategy=kw["strategy"], checks=not kw["no_checks"], check_images=kw["check_images"])
    results = run_job("evaluate", request, kw)
    print_summary(
        f"advtf evaluate: {kw['model_path']} on {results['dataset']}",
        [("clean accuracy", results["clean_accuracy"]),
         (f"robust accuracy ({kw['attack']}-{threat.steps} {threat.norm} eps={threat.eps:g}, "
          f"{threat.restarts} restart{'s' if threat.restarts > 1 else ''})", results["robust_accuracy"]),
         ("test images", results["n"]),
         ("reliability checks", _checks_line(results))],
        out=kw["out"],
    )
    for warning in results["warnings"] or []:
        click.echo(f"  warning ({warning['check']}): {warning['message']}")


def _checks_line(results: dict) -> str:
    """``4 run, 1 warning`` (or ``skipped (--no-checks)``) for the summary."""
    if results["warnings"] is None:
        return "skipped (--no-checks)"
    n = len(results["warnings"])
    return f"{len(results['checks'])} run, {n} warning{'' if n == 1 else 's'}"
