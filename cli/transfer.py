"""``advtf robust-table`` and ``advtf transfer-eval`` (Springer et al. 2021, Sections 4-5)."""

from __future__ import annotations

import click

from advtf.cli.options import (cluster_timeout_option, data_request, dataset_options, make_attack_request,
                               make_threat, parse_pairs, print_summary, run_job, run_options, targeting_options,
                               threat_options)


@click.command("robust-table", context_settings={"max_content_width": 100})
@click.option("--classifier", "classifiers", multiple=True, required=True, metavar="NAME=MODEL",
              help="A row: its name and a .keras file or `advtf train` run directory (repeatable, in order).")
@click.option("--testset", "testsets", multiple=True, required=True, metavar="NAME=DATASET",
              help="A column: its name and a registered dataset or a saved-dataset directory such as a "
                   "robustified set R_eps (repeatable, in order).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which split of every test set to evaluate.")
@dataset_options(only=("data_dir", "train_subset", "test_subset", "seed"))
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@cluster_timeout_option()
@run_options(resumable=True)
def robust_table(**kw):
    """Accuracy of classifiers on test sets: Springer et al.'s Tables 1/2.

    \b
    Example:
      advtf robust-table --classifier standard=runs/std --classifier robust=runs/robust-0.5 \\
          --classifier zero-robust=runs/zero --classifier neg-robust=runs/neg \\
          --testset Test=cifar10 --testset R_0=runs/R0 --testset R_1/16=runs/R1-16 \\
          --test-subset 1000 --out runs/table1

    A --testset directory's own split is used (a saved set that only borrows the split from its
    source is refused). With --test-subset, the same --seed picks the same positions in every
    test set of equal size. Writes accuracy.csv/.md (rows classifiers, columns test sets),
    accuracy.png (heat map centred at chance), results.json (accuracy, n, chance) and
    manifest.json.
    An interrupted run continues with --resume; with TF_CONFIG set, the workers of a cluster
    share the batches (README, "Cluster runs").
    """
    from advtf.jobs.robust_table import RobustTableRequest

    classifiers = parse_pairs(kw.pop("classifiers"), "--classifier")
    testsets = parse_pairs(kw.pop("testsets"), "--testset", "Test=fashion_mnist")
    request = RobustTableRequest(classifiers=classifiers, testsets=testsets, data=data_request(kw),
                                 split=kw["split"], batch_size=kw["batch_size"])
    results = run_job("robust-table", request, kw)
    print_summary(
        f"advtf robust-table: {len(classifiers)} classifiers x {len(testsets)} test sets "
        f"({kw['split']} split, chance {results['chance']:.3f})",
        [(c, "  ".join(f"{t} {v:.3f}" for t, v in row.items())) for c, row in results["accuracy"].items()]
        + [("images", "  ".join(f"{t} {n}" for t, n in results["n"].items()))],
        out=kw["out"],
    )


@click.command("transfer-eval", context_settings={"max_content_width": 100})
@click.option("--source", "sources", multiple=True, required=True, metavar="EPS=MODEL",
              help="A source model and its robustness parameter (0, 1/16, 0.5 ...; repeatable).")
@click.option("--victim", "victims", multiple=True, required=True, metavar="NAME=MODEL",
              help="A victim model evaluated on every source's adversarial examples (repeatable, in order).")
@dataset_options()
@threat_options(norm="l2", eps="2.0", steps=100, step_size="0.1")
@targeting_options()
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--xla", is_flag=True, help="Compile the attack loop with XLA (faster on GPU, slower on CPU).")
@cluster_timeout_option()
@run_options(resumable=True)
def transfer_eval(**kw):
    """Transfer attacks from sources of varying robustness to victims: Springer et al.'s Figures 5/6.

    Attacks the test split with every source (defaults: the paper's CIFAR-10 L2 PGD, eps 2,
    100 steps of 0.1) and evaluates every victim on the adversarial images, batch by batch.
    Untargeted: victim error rate on the true labels. --targeted: fraction of victim predictions
    equal to the target, a random class other than the label, the same for every source.

    \b
    Examples:
      advtf transfer-eval --source 0=runs/std --source 1/16=runs/r1-16 --source 0.5=runs/r0.5 \\
          --victim mobilenet_v2=runs/mnv2 --victim densenet121=runs/dn121 \\
          --dataset cifar10 --test-subset 1000 --out runs/fig5
      advtf transfer-eval --source 0=runs/std --source 1/16=runs/r1-16 --victim mnv2=runs/mnv2 \\
          --dataset cifar10 --norm l2 --eps 2.0 --steps 100 --step-size 0.1 --targeted --out runs/fig6

    Writes transfer.csv/.md (sources by eps x victims, plus each source's white-box value),
    transfer.png (metric against source eps on a categorical axis, one line per victim),
    results.json (metric, table, white_box, clean, n, threat, attack) and manifest.json.
    An interrupted run continues with --resume; with TF_CONFIG set, the workers of a cluster
    share the batches (README, "Cluster runs").
    """
    from advtf.jobs.transfer_eval import TransferRequest

    sources = parse_pairs(kw.pop("sources"), "--source", "1/16=runs/robust")
    victims = parse_pairs(kw.pop("victims"), "--victim", "mobilenet_v2=runs/mnv2")
    data = data_request(kw)
    threat = make_threat(kw)
    request = TransferRequest(sources=sources, victims=victims, attack=make_attack_request(kw, threat), data=data,
                              batch_size=kw["batch_size"], jit=kw["xla"])
    results = run_job("transfer-eval", request, kw)
    metric = results["metric"].replace("_", " ")
    print_summary(
        f"advtf transfer-eval: {request.attack.name} ({threat.norm}, eps={threat.eps:g}, {threat.steps} steps"
        f"{', targeted' if request.attack.targeted else ''}) on {results['n']} {results['dataset']} test images; "
        f"{metric} per victim",
        [(f"source eps {s['name']}", "  ".join(f"{v} {x:.3f}" for v, x in results["table"][s["name"]].items())
          + f"  | white-box {results['white_box'][s['name']]:.3f}") for s in results["sources"]]
        + [("natural images", "  ".join(f"{v} {x:.3f}" for v, x in results["clean"].items()))],
        out=kw["out"],
    )
