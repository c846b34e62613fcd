"""``advtf frequency``, ``advtf perturbations``, ``advtf response``, ``advtf kernels``: local properties
of adversarial examples (the local-properties paper, anonymous ICLR 2022 submission)."""

from __future__ import annotations

import dataclasses

import click

from advtf.cli.options import (attack_setup, cluster_timeout_option, dataset_options, print_summary, run_job,
                               run_options, threat_options, xu_confidence)
from advtf.inputs import model_name

_MODELS = click.argument("model_paths", nargs=-1, metavar="MODEL...", type=click.Path())
_OPTIONAL_MODELS = click.argument("model_paths", nargs=-1, metavar="[MODEL]...", type=click.Path())
_BATCH = click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
_CHECKPOINTS = click.option("--checkpoints", multiple=True, type=click.Path(), metavar="DIR",
                            help="A run of `advtf train --save-every-epoch` (its --out, or its epochs/ folder); "
                                 "repeat for several runs, e.g. a weight-decay sweep.")


def _radii(ctx, param, value):
    if value is None:
        return None
    try:
        radii = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers, e.g. 0,2,4,8,16") from None
    return tuple(radii)  # each >= 0 and finite: checked by the request


def _layers(ctx, param, value):
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _also_request(request, spec: str):
    """``--also-attack NAME[:NORM:EPS[:STEPS]]``: a further request; the main threat fills what is not given."""
    from advtf.attacks import attack_spec
    from advtf.attacks.threat import parse_number
    from advtf.errors import UserError

    parts = [p.strip() for p in spec.split(":")]
    if len(parts) not in (1, 3, 4) or not parts[0]:
        raise UserError(f"--also-attack {spec!r}: write NAME or NAME:NORM:EPS[:STEPS], e.g. fgsm or cw:l2:1")
    name = parts[0]
    try:
        threat = dataclasses.replace(request.threat, steps=attack_spec(name).default_steps, step_size=None)
        if len(parts) >= 3:
            threat = dataclasses.replace(threat, norm=parts[1], eps=parse_number(parts[2], what="eps"))
        if len(parts) == 4:
            if not parts[3].lstrip("-").isdigit():
                raise UserError(f"STEPS must be an integer (got {parts[3]!r})")
            threat = dataclasses.replace(threat, steps=int(parts[3]))
    except UserError as e:
        raise UserError(f"--also-attack {spec}: {e}") from None
    return dataclasses.replace(request, name=name, options={}, threat=threat)


def _attack_title(command: str, request, models) -> str:
    t = request.threat
    return f"advtf {command}: {request.name} ({t.norm}, eps={t.eps:g}, {t.steps} steps) on {len(models)} model(s)"


@click.command(context_settings={"max_content_width": 100})
@_MODELS
@dataset_options()
@threat_options(norm="linf", eps="8/255")
@click.option("--radii", callback=_radii, default=None, metavar="R,R,...",
              help="Filter radii / swap thresholds [default: every integer from 0 to past the spectrum's corner].")
@_BATCH
@cluster_timeout_option()
@run_options(resumable=True)
def frequency(**kw):
    """Low-/high-pass filtered and frequency-swapped accuracy, and mean spectra (Figures 1, 2, 6).

    Each MODEL is attacked on the test split; its natural and adversarial images are filtered in
    the 2-D Fourier domain (per channel, centred spectrum, a disc of radius r kept by the low-pass,
    the rest by the high-pass) and classified, for every radius; "natural + adversarial high" keeps
    the natural image's frequencies below r and the adversarial one's above. Give a standard and a
    robust model to compare them in one figure.

    \b
    Example:
      advtf frequency runs/std runs/adv --dataset fashion_mnist --test-subset 500 \\
          --attack pgd --norm linf --eps 0.1 --steps 10 --out runs/frequency

    Writes results.json, frequency.csv/.md (accuracy per model, radius and curve), spectra.json,
    frequency.png, spectrum.png and manifest.json. Every model's attack runs first, by resumable
    chunk: an interrupted run continues with --resume; with TF_CONFIG set, the workers of a
    cluster share the attacks and the chief measures (README, "Cluster runs").
    """
    from advtf.jobs.frequency import FrequencyRequest

    _, data, request = attack_setup(kw)
    results = run_job("frequency", FrequencyRequest(models=kw["model_paths"], attack=request, data=data,
                                                    batch_size=kw["batch_size"], radii=kw["radii"]), kw)
    rows = [("images", results["models"][0]["n"]), ("radii", f"{results['radii'][0]:g}..{results['radii'][-1]:g}")]
    for m in results["models"]:
        name, best = model_name(m["model"]), m["best_low_adversarial"]
        rows += [(f"{name}: accuracy clean / adversarial",
                  f"{m['clean_accuracy']:.4f} / {m['adversarial_accuracy']:.4f}"),
                 (f"{name}: best low-pass adversarial", f"{best['accuracy']:.4f} at r={best['radius']:g}"),
                 (f"{name}: log|adv|/|nat| high / low freq", f"{m['log_ratio_high']:+.3f} / {m['log_ratio_low']:+.3f}")]
    print_summary(_attack_title("frequency", request, kw["model_paths"]), rows, out=kw["out"])


@click.command(context_settings={"max_content_width": 100})
@_MODELS
@dataset_options()
@threat_options(norm="linf", eps="8/255")
@click.option("--only", type=click.Choice(["successful", "failed", "all"]), default="successful", show_default=True,
              help="Show images whose attack succeeded on every model, failed on the first model, or any.")
@click.option("--count", type=click.IntRange(min=1), default=6, show_default=True, help="Images in the figure.")
@_BATCH
@cluster_timeout_option()
@run_options(resumable=True)
def perturbations(**kw):
    """The perturbation grid of Figures 3, 7 and 8, models side by side, with locality statistics.

    For naturally correct test images: the natural image, and per MODEL the adversarial image,
    the perturbation scaled to [0,1], its channel mean and each channel (diverging map, ±eps).
    Put the robust model first for Figure 8 (--only failed judges the first model).

    \b
    Example:
      advtf perturbations runs/adv runs/std --dataset fashion_mnist --test-subset 200 \\
          --attack pgd --norm linf --eps 0.1 --only successful --out runs/perturbations

    Writes results.json, perturbations.csv/.md (per model: share of entries at ±eps, neighbour
    sign agreement, neighbour difference / eps, high-frequency energy share, clean and adversarial
    accuracy), examples.csv/.md, perturbations.png (when an image matched --only), accuracy.png
    (each model's accuracy before and after the attack) and manifest.json. Every model's attack
    runs first, by resumable chunk: an interrupted run continues with --resume; with TF_CONFIG
    set, the workers of a cluster share the attacks and the chief measures (README, "Cluster runs").
    """
    from advtf.analysis.perturbations import STATS
    from advtf.jobs.perturbations import PerturbationsRequest

    _, data, request = attack_setup(kw)
    results = run_job("perturbations", PerturbationsRequest(models=kw["model_paths"], attack=request, data=data,
                                                            batch_size=kw["batch_size"], only=kw["only"],
                                                            count=kw["count"]), kw)
    rows = [("images shown", len(results["shown"]))]
    for m in results["models"]:
        rows.append((f"{model_name(m['model'])}: success rate", m["success_rate"]))
        rows += [(f"{model_name(m['model'])}: {s}", m[s]) for s in STATS]
    if results["note"]:
        rows.append(("note", results["note"]))
    print_summary(_attack_title("perturbations", request, kw["model_paths"]), rows, out=kw["out"])


@click.command(context_settings={"max_content_width": 100})
@_OPTIONAL_MODELS
@click.option("--compare", multiple=True, type=click.Path(), metavar="MODEL",
              help="Another model analysed next to the first (repeatable), e.g. the robust one (Table 1).")
@dataset_options()
@threat_options(norm="linf", eps="8/255")
@click.option("--layers", callback=_layers, default=None, metavar="NAME,NAME,...",
              help="Endpoints to compare [default: conv1,layer0,...,layer4 on ResNet-18, else m0..mK].")
@click.option("--adv-from", multiple=True, type=click.Path(), metavar="MODEL",
              help="Also measure adversarial examples made on MODEL on every other model (transfer, "
                   "Tables 3, 5; repeatable).")
@click.option("--also-attack", multiple=True, metavar="NAME[:NORM:EPS[:STEPS]]",
              help="A further attack (repeatable), by default with the same norm and eps and its own default "
                   "steps, e.g. fgsm (Table 4), or with its own threat, e.g. cw:l2:1 or ead:l1:10:50 (Figure A8).")
@click.option("--activation-maps", default=None, metavar="LAYER",
              help="Also draw LAYER's most active channel maps for one natural/adversarial pair in every model "
                   "(Figure 9/A9 of Xu et al. 2019; the pair is attacked on the first MODEL).")
@click.option("--channels", type=click.IntRange(min=1), default=8, show_default=True,
              help="Channels per model in --activation-maps.")
@_CHECKPOINTS
@_BATCH
@cluster_timeout_option()
@run_options(resumable=True)
def response(**kw):
    """Local response differences per layer between natural and adversarial images (Tables 1-5, Figures 5, 9).

    Per image and layer: max = the largest |f(x_adv) - f(x)| over the layer's responses, total =
    their sum, l2 = ||f(x_adv) - f(x)||_2 (the activation bias of Xu et al. 2019, Figure A8); all
    averaged over images, for all images and split into successful / failed attacks among
    naturally correct ones. One forward pass per batch yields every layer. C&W, EAD and Str use
    confidence κ = 1 as in Xu et al. 2019 unless -O confidence=... is given (it applies to --attack;
    an --also-attack cw, ead or str always uses κ = 1).

    \b
    Examples:
      advtf response runs/std --compare runs/adv --adv-from runs/std --adv-from runs/adv \\
          --also-attack fgsm --attack pgd --norm linf --eps 0.1 --test-subset 500 --out runs/response
      advtf response --checkpoints runs/adv-wd1e-4 --checkpoints runs/adv-wd1e-3 \\
          --norm linf --eps 0.1 --test-subset 200 --out runs/response-epochs
      advtf response runs/std --compare runs/adv --attack ifgsm --norm linf --eps 0.05 \
          --also-attack cw:l2:1 --also-attack ead:l1:10 --also-attack str:linf:0.1 \
          --activation-maps m2 --test-subset 300 --out runs/activation-bias

    Writes results.json, response.csv/.md, response.png, activation_maps.png (with
    --activation-maps), and with --checkpoints checkpoints.csv/.md and checkpoints_<stat>.png;
    manifest.json. Every attack (of every model, --adv-from model and checkpoint) runs first, by
    resumable chunk: an interrupted run continues with --resume; with TF_CONFIG set, the workers
    of a cluster share the attacks and the chief measures (README, "Cluster runs").
    """
    from advtf.jobs.response import ResponseRequest

    models = (*kw.pop("model_paths"), *kw.pop("compare"))
    also = kw.pop("also_attack")
    _, data, request = attack_setup(kw, xu_defaults=True)
    extra = tuple(xu_confidence(_also_request(request, spec)) for spec in also)
    results = run_job("response", ResponseRequest(
        models=models, attack=request, data=data, batch_size=kw["batch_size"], also=extra, layers=kw["layers"],
        adv_from=kw["adv_from"], checkpoints=kw["checkpoints"], activation_maps=kw["activation_maps"],
        channels=kw["channels"]), kw)
    layers = results["layers"]
    rows = [("layers", ",".join(layers or []))]
    for r in results["rows"]:
        if r["split"] == "all":  # the successful / failed splits are in response.md
            rows.append((f"{model_name(r['model'])} {r['source']} {r['attack']} max | total",
                         " ".join(f"{r[f'{layer}_max']:.3g}" for layer in layers) + " | "
                         + " ".join(f"{r[f'{layer}_total']:.4g}" for layer in layers)))
            rows.append((f"{model_name(r['model'])} {r['source']} {r['attack']} activation bias l2",
                         " ".join(f"{r[f'{layer}_l2']:.3g}" for layer in layers)))
    if results["activation_maps"]:
        rows.append(("activation maps", f"{results['activation_maps']['layer']}, test image "
                                        f"{results['activation_maps']['index']} -> activation_maps.png"))
    if results["checkpoints"]:
        rows.append(("checkpoints evaluated", len(results["checkpoints"])))
    rows += [("note", n) for n in results["notes"]]
    title = _attack_title("response", request, models)
    if not models:
        title = title.replace("on 0 model(s)", f"over {len(kw['checkpoints'])} checkpoint run(s)")
    print_summary(title, rows, out=kw["out"])


@click.command(context_settings={"max_content_width": 100})
@_OPTIONAL_MODELS
@_CHECKPOINTS
@run_options()
def kernels(**kw):
    """Kernel smoothness per convolutional layer: magnitude, within-kernel variance, total variation.

    Each 2-D kernel slice (one per input/output channel pair of a Conv2D layer) gets its variance
    and anisotropic total variation; magnitudes are mean |w| and the l2 norm. With --checkpoints,
    the model-wide values over epochs, one line per run (Figure 5a of a weight-decay sweep).

    \b
    Examples:
      advtf kernels runs/std runs/adv --out runs/kernels
      advtf kernels --checkpoints runs/adv-wd1e-4 --checkpoints runs/adv --checkpoints runs/adv-wd1e-3 \\
          --out runs/kernels-wd

    Writes results.json, kernels.csv/.md (per layer), summary.csv/.md (per model), kernels.png,
    and with --checkpoints checkpoints.csv/.md and checkpoints.png; manifest.json.
    """
    from advtf.analysis.kernels import STATS
    from advtf.jobs.kernels import KernelsRequest

    results = run_job("kernels", KernelsRequest(models=kw["model_paths"], checkpoints=kw["checkpoints"]), kw)
    rows = []
    for m in results["models"]:
        s = m["summary"]
        rows.append((f"{model_name(m['model'])} ({s['layers']} conv layers)",
                     "  ".join(f"{k}={s[k]:.4g}" if s[k] is not None else f"{k}=n/a" for k in STATS)))
    runs = {}
    for row in results["checkpoints"]:
        runs[row["run"]] = row
    rows += [(f"{name}, epoch {row['epoch']}", f"mean_abs={row['mean_abs']:.4g}  tv={row['tv']:.4g}")
             for name, row in runs.items()]
    print_summary("advtf kernels: kernel smoothness", rows, out=kw["out"])
