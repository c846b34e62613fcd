"""``advtf train``."""

from __future__ import annotations

import click

from advtf.cli.options import (IntList, NUMBER, data_request, dataset_options, print_summary, run_job, run_options,
                               strategy_option, threat_options)


@click.command(context_settings={"max_content_width": 100})
@click.option("--model", "model_name", default="resnet20v2", show_default=True,
              help="Architecture (see `advtf models`).")
@click.option("--width", type=NUMBER, default=1.0, show_default=True, help="Channel-width multiplier (small = fast).")
@click.option("--weights", type=click.Choice(["none", "imagenet"]), default="none", show_default=True,
              help="Initial weights of keras.applications victims (imagenet needs internet).")
@dataset_options(validation=0.0)
@click.option("--robust", is_flag=True, help="Adversarial training (PGD, or FGSM with --fast).")
@threat_options(steps_flag="--attack-steps", steps=7, attack=False)
@click.option("--attack-target", type=click.Choice(["label", "prediction"]), default="label", show_default=True,
              help="Attack the true label, or the model's prediction (avoids label leaking).")
@click.option("--clean-fraction", type=NUMBER, default=0.0, show_default=True,
              help="Fraction of each adversarial batch left clean.")
@click.option("--fast", is_flag=True, help="Fast adversarial training: FGSM with random start (Wong et al. 2020).")
@click.option("--eval-steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="PGD steps for the final robust accuracy on the test split.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", type=NUMBER, default=0.1, show_default=True, help="Initial learning rate.")
@click.option("--momentum", type=NUMBER, default=0.9, show_default=True)
@click.option("--nesterov", is_flag=True)
@click.option("--weight-decay", type=NUMBER, default=5e-4, show_default=True,
              help="L2 weight decay (coupled for sgd/adam as in PyTorch; decoupled for adamw).")
@click.option("--schedule", type=click.Choice(["piecewise", "cosine", "constant"]), default="piecewise",
              show_default=True)
@click.option("--lr-milestones", type=IntList(), default=None,
              help="Epochs where piecewise lr drops 10x, e.g. 50,75 [default: 50% and 75% of --epochs, as the "
                   "local-properties paper's 50,75 of 100; an empty '' keeps lr constant].")
@click.option("--augment/--no-augment", default=None,
              help="Random crop (4-px pad) + flip [default: on for natural images, off for Fashion-MNIST].")
@click.option("--select-by", type=click.Choice(["auto", "last", "clean", "robust"]), default="auto",
              show_default=True,
              help="Which epoch's weights to keep: by validation accuracy (clean, robust: needs --validation; "
                   "auto: robust with --robust) or the last.")
@click.option("--early-stopping", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop after N epochs without validation improvement (0: off; needs --validation).")
@click.option("--precise-bn", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="After training, recompute BatchNormalization statistics over N training batches with the "
                   "final weights (short runs of keras.applications victims need it).")
@click.option("--save-every-epoch", is_flag=True, help="Also save epochs/epoch_NNN.keras (weight-decay studies).")
@click.option("--xla", is_flag=True, help="Compile attack loops with XLA (faster on GPU, slower on CPU).")
@click.option("--precision", type=click.Choice(["float32", "mixed_float16", "mixed_bfloat16"]), default="float32",
              show_default=True,
              help="Keras mixed precision: layers compute in float16 (meant for GPUs) or bfloat16 (TPUs, recent "
                   "CPUs); weights, input normalisation, logits, loss and the attacks stay float32 (float16 "
                   "with loss scaling). Runs on any device, slowly where the hardware lacks the type.")
@strategy_option()
@run_options(resumable=True)
def train(**kw):
    """Train a standard or adversarially robust classifier.

    \b
    Examples:
      advtf train --model resnet20v2 --width 0.25 --epochs 5 --out runs/std
      advtf train --robust --norm l2 --eps 0.5 --model resnet20v2 --out runs/robust
      advtf train --dataset runs/D-zero --model resnet20v2 --out runs/zero-robust   # a relabeled set
      advtf train --robust --norm linf --eps 8/255 --attack-steps 10 --step-size 2/255 \\
          --model resnet18 --dataset cifar10 --epochs 100 --lr-milestones 50,75 --out runs/r18

    A --dataset DIR written by `advtf relabel` or `advtf robustify` (a derived set) gets the
    zero-/negative-robust settings of Springer et al.'s Table 3 for every option not given:
    --optimizer adam --lr 1e-4 --schedule cosine --no-augment --validation 0.1 --early-stopping 10
    --weight-decay 0 (Adam with its default parameters: no weight decay).

    The default --schedule piecewise divides --lr by 10 at 50% and 75% of --epochs (epochs 50
    and 75 of 100, as the local-properties paper) unless --lr-milestones is given.

    --resume continues an interrupted run from its last finished epoch and ends exactly where an
    uninterrupted run with the same options does (it refuses other options or a changed dataset).

    Writes model.keras, results.json, results.csv/.md, history.csv, training.png,
    initial.weights.h5, logs/ (TensorBoard) and manifest.json to --out.
    """
    import dataclasses

    from advtf.distribute.strategy import is_chief
    from advtf.jobs.train import DERIVED_SET_DEFAULTS, TrainRequest, derived_set_kind, worker_out

    kind = derived_set_kind(kw["dataset"])
    derived_defaults = {}
    if kind is not None:  # Springer et al. Table 3 for the options the user left at their defaults
        source = click.get_current_context().get_parameter_source
        derived_defaults = {k: v for k, v in DERIVED_SET_DEFAULTS.items()
                            if source(k) == click.core.ParameterSource.DEFAULT}
        if "early_stopping" in derived_defaults and not derived_defaults.get("validation", kw["validation"]):
            del derived_defaults["early_stopping"]  # early stopping needs the validation split the user declined
        kw.update(derived_defaults)
    validation = kw["validation"]
    data = data_request(kw)
    if validation >= 1 and validation != int(validation):  # not a count: the request says so
        data = dataclasses.replace(data, validation=validation)
    request = TrainRequest(
        data=data, model=kw["model_name"], width=kw["width"], weights=None if kw["weights"] == "none" else kw["weights"],
        robust=kw["robust"], norm=kw["norm"], eps=kw["eps"], attack_steps=kw["steps"], step_size=kw["step_size"],
        restarts=kw["restarts"], attack_target=kw["attack_target"], clean_fraction=kw["clean_fraction"],
        fast=kw["fast"], eval_steps=kw["eval_steps"], epochs=kw["epochs"], batch_size=kw["batch_size"],
        optimizer=kw["optimizer"], lr=kw["lr"], momentum=kw["momentum"], nesterov=kw["nesterov"],
        weight_decay=kw["weight_decay"], schedule=kw["schedule"], lr_milestones=kw["lr_milestones"],
        augment=kw["augment"], select_by=kw["select_by"], early_stopping=kw["early_stopping"],
        precise_bn=kw["precise_bn"], save_every_epoch=kw["save_every_epoch"], jit=kw["xla"],
        strategy=kw["strategy"], precision=kw["precision"])
    if not is_chief():  # non-chief workers of a multi-worker cluster write nothing the user sees
        kw = {**kw, "out": worker_out(kw["out"], resume=kw["resume"])}
    results = run_job("train", request, kw)
    if derived_defaults:
        click.echo(f"{kind} training set: used Springer et al.'s Table 3 defaults "
                   + " ".join("--no-augment" if k == "augment" else f"--{k.replace('_', '-')} {v:g}"
                              if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
                              for k, v in derived_defaults.items())
                   + " (pass an option to override it)")
    threat = request.eval_threat
    print_summary(
        f"advtf train: {request.model} on {results['dataset']}" + (" (adversarial)" if request.robust else ""),
        [("clean accuracy", results["clean_accuracy"]),
         (f"robust accuracy (PGD-{threat.steps} {threat.norm} eps={threat.eps:g})", results["robust_accuracy"]),
         ("optimizer", f"{request.optimizer}, lr {request.lr:g}, {request.schedule}"
          + (f" (/10 at epochs {', '.join(f'{m:g}' for m in request.lr_milestones)})"
             if request.schedule == "piecewise" and request.lr_milestones else "")
          + f", weight decay {request.weight_decay:g}"),
         ("test images", results["n_test"]), ("epochs", results["epochs"]), ("best epoch", results["best_epoch"]),
         ("wall seconds", results["wall_seconds"])]
        + ([("precision", results["precision"])] if results["precision"] != "float32" else []),
        out=kw["out"],
    )
