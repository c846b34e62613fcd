"""``advtf cam`` and ``advtf psr``: interpreting adversarial examples by activation promotion and
suppression (Xu et al. 2019)."""

from __future__ import annotations

import click

from advtf.cli.options import (attack_setup, cluster_timeout_option, compose, dataset_options, print_summary,
                               run_job, run_options, targeting_options, threat_options)

_MODELS = click.argument("model_paths", nargs=-1, metavar="MODEL...", type=click.Path())


def _map_options(default_examples: int):
    from advtf.analysis.cam import METHODS

    return compose(
        click.option("--method", type=click.Choice(METHODS), default="cam", show_default=True,
                     help="cam (Zhou et al.; needs GAP -> Dense), or tf-keras-vis's gradcam, gradcam++, scorecam."),
        click.option("--layer", default=None, metavar="NAME",
                     help="Spatial layer or endpoint (e.g. m3) of the maps [default: the map the global average "
                          "pooling reads]."),
        click.option("--quantile", type=float, default=0.7, show_default=True,
                     help="nu of Eq. 5: B(x, c) keeps pixels at or above this quantile of the map, only positive "
                          "ones (nu = 0 keeps F > 0); a map with none has no B (IS undefined, S2 pair skipped)."),
        click.option("--examples", type=int, default=default_examples, show_default=True,
                     help="Pairs drawn in the figures (at least 1)."),
    )


def _title(command: str, request, models) -> str:
    t = request.threat
    kind = "targeted" if request.targeted else "untargeted"
    return (f"advtf {command}: {kind} {request.name} ({t.norm}, eps={t.eps:g}, {t.steps} steps) "
            f"on {len(models)} model(s)")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@click.command(context_settings={"max_content_width": 100})
@_MODELS
@dataset_options()
@threat_options(norm="l2", eps="1")
@targeting_options()
@_map_options(default_examples=4)
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@cluster_timeout_option()
@run_options(resumable=True)
def cam(**kw):
    """Class activation maps of natural and adversarial images and the interpretability score (Table 2).

    For every successful adversarial example x' of a correctly classified test image x0 (true
    label t0; t = the target, or the adversarial prediction when untargeted): the maps F(x0,t0),
    F(x',t0), F(x0,t), F(x',t) at input resolution, divided by their joint maximum (Figure 3),
    and IS(delta) = ||B(x,c) o delta||_2 / ||delta||_2, averaged per model (Table 2 reports
    (x0,t0) and (x',t)). B = {F >= nu} with nu the map's --quantile when nu > 0, else the
    positive pixels; a map with no positive pixel (or a constant one) has no B, its IS is
    undefined and left out of the mean (counted as undefined_<key>). With a GAP head, CAM and
    Grad-CAM agree up to scale. C&W, EAD and Str use confidence κ = 1 as in Xu et al. 2019 unless
    -O confidence=... is given.

    \b
    Example:
      advtf cam runs/std runs/adv --dataset fashion_mnist --test-subset 500 \\
          --attack cw --norm l2 --eps 2 --targeted --method cam --out runs/cam-cw

    Writes results.json, cam.csv/.md (per model), examples.csv/.md (per pair), cam.png
    (cam_<model>.png for several models) and manifest.json. Every model's attack runs first, by
    resumable chunk: an interrupted run continues with --resume; with TF_CONFIG set, the workers
    of a cluster share the attacks and the chief computes the maps (README, "Cluster runs").
    """
    from advtf.inputs import model_name
    from advtf.jobs.cam import CamRequest

    _, data, attack = attack_setup(kw, xu_defaults=True)
    request = CamRequest(models=tuple(kw["model_paths"]), attack=attack, data=data, method=kw["method"],
                         layer=kw["layer"], quantile=kw["quantile"], examples=kw["examples"],
                         batch_size=kw["batch_size"])
    results = run_job("cam", request, kw)
    rows = []
    for r in results["rows"]:
        rows.append((f"{model_name(r['model'])}: pairs / success rate",
                     f"{r['pairs']} / {_fmt(r['success_rate'])}"))
        rows.append((f"{model_name(r['model'])}: IS (x0,t0) | (x',t)", f"{_fmt(r['is_x0_t0'])} | {_fmt(r['is_xadv_t'])}"))
        rows.append((f"{model_name(r['model'])}: mean map x0,t0 -> x',t0 | x0,t -> x',t",
                     f"{_fmt(r['map_x0_t0'])} -> {_fmt(r['map_xadv_t0'])} | {_fmt(r['map_x0_t'])} -> "
                     f"{_fmt(r['map_xadv_t'])}"))
    rows += [("note", n) for n in results["notes"]]
    print_summary(_title("cam", attack, request.models) + f", {kw['method']}", rows, out=kw["out"])


@click.command(context_settings={"max_content_width": 100})
@_MODELS
@dataset_options()
@threat_options(norm="l2", eps="1")
@targeting_options()
@click.option("--grid", type=click.IntRange(min=1), default=None,
              help="Grid (window) side in pixels [default: the image side / 16, at least 2; the paper used 13 "
                   "on ImageNet].")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Window stride [default: --grid].")
@click.option("--xi", type=float, default=1e-4, show_default=True, help="The floor xi of d0 and dt (Eq. 1-2).")
@click.option("--drop", type=float, default=0.3, show_default=True,
              help="S1 drops the grids holding this least-significant share of cumulative s (footnote 3).")
@click.option("--refine", type=click.Choice(["s1", "s2"]), multiple=True,
              help="Re-run the attack with delta confined to S1 (significant grids) or S2 (the CAM region "
                   "B(x0,t0)); repeatable (Table A1).")
@_map_options(default_examples=3)
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Grid removals per forward pass.")
@cluster_timeout_option()
@run_options(resumable=True)
def psr(**kw):
    """Grid-level sensitivity and promotion-suppression ratio of adversarial perturbations (Tables 1, A1).

    For every successful adversarial example x' = x0 + delta (true label t0, t = target or the
    adversarial prediction), removing the perturbation of grid G_i changes the logits:
    d0_i = max(Z(x'-delta_Gi)_t0 - Z(x')_t0, xi) (suppression of t0), dt_i = max(Z(x')_t -
    Z(x'-delta_Gi)_t, xi) (promotion of t), s_i = d0_i + dt_i, r_i = log2(dt_i / d0_i):
    suppression-dominated r < -1, promotion-dominated r > 1, balanced otherwise. All removals run
    as batched forward passes. Table 1 correlates d0, dt, s with ||delta_Gi||_2 per image. C&W,
    EAD and Str use confidence κ = 1 as in Xu et al. 2019 unless -O confidence=... is given.

    \b
    Examples:
      advtf psr runs/std --dataset fashion_mnist --test-subset 300 --attack cw --norm l2 --eps 2 \\
          --targeted --grid 4 --refine s1 --refine s2 --out runs/psr-cw
      advtf psr runs/std --attack ifgsm --norm linf --eps 0.1 --targeted --out runs/psr-ifgsm

    Writes results.json, psr.csv/.md (per model), refine.csv/.md (with --refine), psr_examples.png
    (Figure 2), psr_cam.png (Figure 4), refine_s1.png / refine_s2.png and manifest.json. Every
    model's attack runs first, by resumable chunk: an interrupted run continues with --resume;
    with TF_CONFIG set, the workers of a cluster share the attacks and the chief measures the
    grids and runs the --refine attacks (README, "Cluster runs").
    """
    from advtf.inputs import model_name
    from advtf.jobs.psr import PsrRequest

    _, data, attack = attack_setup(kw, xu_defaults=True)
    request = PsrRequest(models=tuple(kw["model_paths"]), attack=attack, data=data, grid=kw["grid"],
                         stride=kw["stride"], xi=kw["xi"], drop=kw["drop"], refine=tuple(kw["refine"]),
                         method=kw["method"], layer=kw["layer"], quantile=kw["quantile"], examples=kw["examples"],
                         batch_size=kw["batch_size"], chunk=kw["chunk"])
    results = run_job("psr", request, kw)
    rows = [("grids", f"{results['rows'][0]['grids']} ({results['grid']}x{results['grid']}, "
                      f"stride {results['stride']})")]
    for r in results["rows"]:
        name = model_name(r["model"])
        rows.append((f"{name}: pairs / success rate", f"{r['pairs']} / {_fmt(r['success_rate'])}"))
        rows.append((f"{name}: corr with ||delta_G||2 d0 | dt | s",
                     f"{_fmt(r['corr_d0'])} | {_fmt(r['corr_dt'])} | {_fmt(r['corr_s'])}"))
        for scope, what in (("perturbed", "perturbed grids"), ("s1", "S1 grids")):
            rows.append((f"{name}: {what} suppression / balanced / promotion",
                         " / ".join(_fmt(r[f"{scope}_{c}"]) for c in ("suppression", "balanced", "promotion"))))
    for r in results["refine"]:
        rows.append((f"{model_name(r['model'])} refined {r['refine']}: l0 | l2 | success",
                     f"{r['original_l0']:.0f} -> {r['refined_l0']:.0f} | {r['original_l2']:.3f} -> "
                     f"{r['refined_l2']:.3f} | {_fmt(r['refined_success_rate'])}"))
    rows += [("note", n) for n in results["notes"]]
    print_summary(_title("psr", attack, request.models), rows, out=kw["out"])
