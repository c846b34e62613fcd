"""``advtf attack``."""

from __future__ import annotations

import click

from advtf.cli.options import (cluster_timeout_option, data_request, dataset_options, make_attack_request,
                               make_threat, print_summary, run_job, run_options, targeting_options, threat_options)


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_path", metavar="MODEL", type=click.Path())
@dataset_options()
@threat_options()
@targeting_options()
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split to attack.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--figure-examples", type=click.IntRange(min=0), default=8, show_default=True,
              help="Examples drawn in examples.png.")
@click.option("--xla", is_flag=True, help="Compile the attack loop with XLA (faster on GPU, slower on CPU).")
@cluster_timeout_option()  # with TF_CONFIG set, the workers share the chunks (README, "Cluster runs")
@run_options(resumable=True)
def attack(**kw):
    """Attack a trained model and save the adversarial dataset.

    MODEL is a .keras file or a run directory of `advtf train`. --out becomes a saved dataset
    that every command accepts as --dataset OUT (adversarial images with their true labels).

    \b
    Examples:
      advtf attack runs/std --attack pgd --norm linf --eps 8/255 --steps 20 --out runs/std-pgd
      advtf attack runs/std --attack cw --norm l2 --eps 3 --steps 200 -O confidence=5 --out runs/std-cw
      advtf attack runs/std --attack ead --norm l1 --eps 20 -O beta=1e-2 -O decision_rule=l1 --out runs/std-ead
      advtf attack runs/std --attack pgd --targeted --target-mode next --out runs/std-pgd-next

    Without --norm, pgd runs in l2 and any other attack in its own norm (`--attack str`: linf,
    `--attack ead`: l1), with that norm's usual --eps. Writes the test (or train) split of
    adversarial examples, results.json (success rate, accuracy before/after, mean and median
    l0/l1/l2/linf norms), results.csv/.md, examples.csv/.md (per example), examples.png,
    accuracy.png (accuracy before and after) and manifest.json.
    """
    from advtf.jobs.attack import AttackJobRequest

    data = data_request(kw)
    threat = make_threat(kw)
    request = AttackJobRequest(model=kw["model_path"], attack=make_attack_request(kw, threat), data=data,
                               split=kw["split"], batch_size=kw["batch_size"], figure_examples=kw["figure_examples"],
                               jit=kw["xla"])
    results = run_job("attack", request, kw)
    norms = results["norms"]
    rate = results["success_rate"]
    print_summary(
        f"advtf attack: {request.attack.name} ({threat.norm}, eps={threat.eps:g}, {threat.steps} steps"
        f"{', targeted ' + request.attack.target_mode if request.attack.targeted else ''}) on {kw['model_path']}",
        [("images", results["n"]),
         ("accuracy before", results["clean_accuracy"]),
         ("accuracy after", results["adversarial_accuracy"]),
         ("success rate", "n/a" if rate is None else rate)]
        + [(f"median {k} of delta", norms[k]["median"]) for k in ("l0", "l1", "l2", "linf")],
        out=kw["out"],
    )
