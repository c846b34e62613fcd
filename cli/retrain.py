"""``advtf retrain``: block-wise retraining (Siddiqui & Breuel 2021)."""

from __future__ import annotations

import click

from advtf.cli.options import (IntList, NUMBER, cluster_timeout_option, data_request, dataset_options, print_summary,
                               run_job, run_options, strategy_option, threat_options)


@click.command(context_settings={"max_content_width": 100})
@click.argument("pretrained", type=click.Path(exists=True))
@dataset_options(validation=0.0)
@click.option("--mode", type=click.Choice(["adversarial", "conventional"]), default=None,
              help="Retrain adversarially (for a conventionally pretrained model) or on clean images "
                   "(for an adversarially pretrained one). Required unless --reinit-only.")
@click.option("--part", type=click.Choice(["before", "after"]), default=None,
              help="Single cut-off: retrain units 0..K (before) or K..last (after); the cut-off unit is "
                   "retrained in both. With --sweep cutoff|layers: only this part.")
@click.option("--cutoff", type=int, default=None, metavar="K", help="The cut-off unit (a module index 0..K).")
@click.option("--modules", default=None, metavar="LIST",
              help="Retrain exactly these modules, e.g. 0,2,3 or m0,m2 (with --reinit-only: the ones to reinitialise).")
@click.option("--layers", is_flag=True,
              help="Count --cutoff (and --reinit-only) in weighted layers (conv/dense with its BatchNorm) instead "
                   "of modules.")
@click.option("--sweep", type=click.Choice(["cutoff", "layers", "combinations"]), default=None,
              help="cutoff: every module cut-off, both parts (Figs. 2-4); layers: every layer cut-off (Fig. 5); "
                   "combinations: every subset of modules, median with/without each (Fig. 6).")
@click.option("--reinit-only", is_flag=True,
              help="No retraining: reinitialise one module (layer with --layers) at a time to its initial weights "
                   "and evaluate (Fig. 7, after Zhang et al.).")
@threat_options(steps_flag="--attack-steps", norm="linf", eps="8/255", steps=7, attack=False,
                step_size_help="PGD step size of adversarial retraining [default: eps/4, i.e. 2/255 at "
                               "eps 8/255, as Siddiqui & Breuel 2021].")
@click.option("--attack-target", type=click.Choice(["label", "prediction"]), default="prediction", show_default=True,
              help="Adversarial retraining attacks the model's prediction (the paper: avoids label leaking).")
@click.option("--clean-fraction", type=NUMBER, default=0.5, show_default=True,
              help="Fraction of each adversarial batch left clean (the paper mixes clean samples in; no fraction "
                   "given).")
@click.option("--fast", is_flag=True, help="Fast adversarial training: FGSM with random start (large sets).")
@click.option("--eval-steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="PGD steps of the robust accuracy (true label attacked; the paper used PGD-200).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Epochs per cell.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="adam", show_default=True)
@click.option("--lr", type=NUMBER, default=1e-3, show_default=True, help="Initial learning rate.")
@click.option("--momentum", type=NUMBER, default=0.9, show_default=True)
@click.option("--nesterov", is_flag=True)
@click.option("--weight-decay", type=NUMBER, default=1e-4, show_default=True, help="L2 weight decay.")
@click.option("--schedule", type=click.Choice(["piecewise", "cosine", "constant"]), default="cosine",
              show_default=True)
@click.option("--lr-milestones", type=IntList(), default="", help="Epochs where piecewise lr drops 10x, e.g. 50,75.")
@click.option("--augment/--no-augment", default=None,
              help="Random crop (4-px pad) + flip [default: on for natural images, off for Fashion-MNIST].")
@click.option("--save-models", is_flag=True, help="Also save every cell's retrained model.keras.")
@strategy_option()
@cluster_timeout_option()
@run_options(resumable=True)
def retrain(**kw):
    """Reinitialise and retrain some modules of a pretrained model, the rest frozen (Siddiqui & Breuel 2021).

    PRETRAINED is a run directory of `advtf train` (or a .keras file). Its modules m0..mK are split
    at down-sampling (the last is the head). The cut-off convention: --part before --cutoff k
    reinitialises and retrains modules 0..k, --part after --cutoff k modules k..K; the other
    modules keep their pretrained weights, frozen (their BatchNorm layers in inference mode).
    Reinitialised weights are fresh draws of each layer's initializers, seeded by --seed.
    Adversarial retraining uses PGD (--attack-steps, default 7, Linf 8/255 and a step of eps/4 =
    2/255 unless --step-size is given, as Siddiqui & Breuel 2021, Sec. 3.2) or --fast (FGSM,
    step 1.25 eps), with --clean-fraction of every batch clean; robust accuracy is PGD-(--eval-steps) on
    the true label. --reinit-only resets one unit at a time to the training run's initial
    weights (initial.weights.h5, or the seeded initializers in the model's config; else fresh).

    \b
    Examples:
      advtf retrain runs/std --mode adversarial --part before --cutoff 2 --norm linf --eps 0.1 \\
          --eval-steps 20 --epochs 2 --out runs/retrain/before-2
      advtf retrain runs/std --mode adversarial --sweep cutoff --fast --norm linf --eps 0.1 \\
          --train-subset 5000 --test-subset 500 --epochs 1 --eval-steps 20 --out runs/retrain/cutoff
      advtf retrain runs/adv --mode conventional --modules 0,2,3 --out runs/retrain/m0-m2-m3
      advtf retrain runs/adv --reinit-only --norm linf --eps 0.1 --eval-steps 20 --out runs/retrain/reinit

    A sweep is resumable: --resume keeps the finished cells (a changed option set is refused).

    Writes results.json, results.csv/.md (clean and robust accuracy per cell, "pretrained" =
    only pretrained), cells/<cell>/ (results.json, history.csv, model.keras with --save-models),
    retrain_cutoff.png / retrain_layers.png / retrain_combinations.png (+ combinations.csv/.md) /
    retrain_reinit.png for the sweeps, retrain_cell.png (only pretrained vs retrained) for a single
    cell, and manifest.json to --out.
    """
    from advtf.jobs.retrain import RetrainRequest

    data = data_request(kw)
    request = RetrainRequest(
        pretrained=kw["pretrained"], data=data, mode=kw["mode"], sweep=kw["sweep"], part=kw["part"],
        cutoff=kw["cutoff"], modules=kw["modules"], layers=kw["layers"], reinit_only=kw["reinit_only"],
        norm=kw["norm"], eps=kw["eps"], attack_steps=kw["steps"], step_size=kw["step_size"], restarts=kw["restarts"],
        attack_target=kw["attack_target"], clean_fraction=kw["clean_fraction"], fast=kw["fast"],
        eval_steps=kw["eval_steps"], epochs=kw["epochs"], batch_size=kw["batch_size"], optimizer=kw["optimizer"],
        lr=kw["lr"], momentum=kw["momentum"], nesterov=kw["nesterov"], weight_decay=kw["weight_decay"],
        schedule=kw["schedule"], lr_milestones=kw["lr_milestones"], augment=kw["augment"],
        save_models=kw["save_models"], strategy=kw["strategy"])
    results = run_job("retrain", request, kw)
    _summary(results, request.eval_threat, kw["out"])


def _summary(results: dict, threat, out) -> None:
    ref = results["pretrained_accuracy"]
    rows = [("only pretrained (clean / robust)", f"{ref['clean_accuracy']:.4f} / {ref['robust_accuracy']:.4f}")]
    cells = results["cells"]
    if results.get("combinations"):
        rows += [(f"{m['module']} median with / without (robust)",
                  f"{m['robust_accuracy_with']:.4f} / {m['robust_accuracy_without']:.4f}")
                 for m in results["combinations"]]
    else:
        shown = cells if len(cells) <= 14 else sorted(cells, key=lambda r: -r["robust_accuracy"])[:10]
        if len(cells) > 14:
            rows.append(("cells (10 most robust shown)", len(cells)))
        rows += [(f"{r['cell']} (clean / robust)", f"{r['clean_accuracy']:.4f} / {r['robust_accuracy']:.4f}")
                 for r in shown]
    rows.append(("initialisation", results["initialisation"]))
    print_summary(f"advtf retrain: {results['mode']} of {results['pretrained']} on {results['dataset']}; robust = "
                  f"PGD-{threat.steps} {threat.norm} eps={threat.eps:g} (true label)", rows, out=out)
