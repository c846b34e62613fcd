"""``advtf dissect``: network dissection of units and their sensitivity to adversarial examples
(Xu et al. 2019, Sec. 5)."""

from __future__ import annotations

import click

from advtf.cli.options import (IntList, cluster_timeout_option, make_attack_request, make_threat, print_summary,
                               run_job, run_options, threat_options)


def _layers(ctx, param, value):
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--concepts", default="synthetic", show_default=True, metavar="synthetic|broden:DIR",
              help="Concept set: the built-in synthetic one (colours, textures, shapes, shape parts, made on the "
                   "fly from --seed) or a Broden directory (NetDissect's broden1_224 / broden1_227). Concept "
                   "images are resized (bilinear) to the model's input size; a greyscale model gets luminance.")
@click.option("--split", type=click.Choice(["all", "train", "val"]), default="all", show_default=True,
              help="Broden images of this split.")
@click.option("--concept-images", type=click.IntRange(min=1), default=None, metavar="N",
              help="Use N concept images [default: 1000 synthetic; every Broden image of --split].")
@click.option("--layers", callback=_layers, default=None, metavar="NAME,NAME,...",
              help="Spatial endpoints to dissect [default: layer1..layer4 on ResNet-18, else m0..mK-1].")
@click.option("--quantile", type=float, default=0.005, show_default=True,
              help="Top quantile of a unit's activations (over all images and positions) that forms its mask: "
                   "NetDissect's 0.005; the paper writes 5% (0.05).")
@click.option("--detector-iou", type=float, default=0.04, show_default=True,
              help="A unit is a concept detector when its best IoU exceeds this.")
@click.option("--union-images", type=click.Choice(["labelled", "overlap"]), default="labelled", show_default=True,
              help="Images on which a unit's mask counts in the union of IoU(k, c): those labelled in c's "
                   "category, or (NetDissect-Lite's tally) those where the mask touches such a label.")
@click.option("--unit-iou", type=click.Choice(["mean", "max"]), default="mean", show_default=True,
              help="IoU(k) of a unit for the p-values: the mean over concepts (the paper's) or the best one.")
@threat_options(norm="linf", eps="8/255")
@click.option("--attack-images", type=click.IntRange(min=1), default=100, show_default=True, metavar="N",
              help="Attack the first N concept images for the sensitivity v(k) (untargeted, away from the "
                   "model's own prediction: concept images have no class labels).")
@click.option("--top-n", "ns", type=IntList(), default="10,20,30,50,80,100", show_default=True,
              help="N of the p-values (top-N sensitive units); N above a layer's unit count is skipped.")
@click.option("--draws", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Random N-subsets of units in the p-value's background distribution.")
@click.option("--detector-top", type=click.IntRange(min=1), default=100, show_default=True, metavar="N",
              help="Also count detectors among the N most sensitive units (Figure 7b).")
@click.option("--show-units", type=click.IntRange(min=1), default=4, show_default=True,
              help="Most sensitive units per layer in the segmentation figure (Figure 8).")
@click.option("--show-images", type=click.IntRange(min=1), default=2, show_default=True,
              help="Images in the segmentation figure.")
@click.option("--quantile-budget", type=click.IntRange(min=1), default=1 << 25, show_default=True, metavar="VALUES",
              help="Activations kept per layer for the exact quantile; above it a histogram estimate (3 passes).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the synthetic concepts, the attack's random start and the p-value draws.")
@cluster_timeout_option()
@run_options(resumable=True)
def dissect(**kw):
    """Network dissection (Bau et al. 2017) and the sensitivity of units to adversarial examples (Figures 7, 8).

    Per unit of each layer: the top --quantile threshold T_k of its activations over the concept
    set, its mask M_k (the map upsampled bilinearly to the segmentation size, > T_k), IoU(k, c)
    with every concept (Eq. 7; a unit's mask counts on images labelled in the concept's category),
    its best concept and whether it is a detector; its sensitivity v(k) = E||M_k(x) - M_k(x')||_2
    over untargeted adversarial examples (Eq. 8); and per N the p-value of the summed IoU(k) of the
    N most sensitive units against random N-subsets. Streams the concept set twice (thresholds,
    IoU counts; four times when a layer's exact quantile exceeds --quantile-budget) and attacks
    --attack-images of them. An interrupted run continues with --resume (the attack's finished
    chunks, the thresholds, IoU counts and sensitivity sums so far are kept); with TF_CONFIG set,
    the workers of a cluster share the attack's chunks and the chief does the rest (README,
    "Cluster runs").

    \b
    Examples:
      advtf dissect runs/std --layers layer1,layer2,layer3,layer4 --norm linf --eps 0.1 \\
          --steps 10 --out runs/dissect/std
      advtf dissect resnet.keras --concepts broden:data/broden1_224 --split val --layers layer4 \\
          --quantile 0.005 --attack-images 200 --out runs/dissect/broden

    Writes results.json, units.csv/.md (per unit: threshold, best concept, IoU, detector,
    sensitivity), detectors.csv/.md, pvalues.csv/.md, detectors.png (Fig. 7b), pvalues.png
    (Fig. 7a), segmentation_<layer>.png (Fig. 8) and manifest.json.
    """
    from advtf.inputs import model_name
    from advtf.jobs.dissect import DissectRequest

    attack = make_attack_request(kw, make_threat(kw))
    request = DissectRequest(
        model=kw["model_path"], attack=attack, concepts=kw["concepts"], split=kw["split"],
        concept_images=kw["concept_images"], layers=kw["layers"], quantile=kw["quantile"],
        detector_iou=kw["detector_iou"], union=kw["union_images"], unit_score=kw["unit_iou"],
        attack_images=kw["attack_images"], ns=tuple(kw["ns"]), draws=kw["draws"], detector_top=kw["detector_top"],
        show_units=kw["show_units"], show_images=kw["show_images"], budget=kw["quantile_budget"],
        batch_size=kw["batch_size"], seed=kw["seed"])
    results = run_job("dissect", request, kw)
    t = attack.threat
    rate = results["attack_success_rate"]
    rows = [("concepts", results["concepts"]["description"]),
            ("model input", results["concepts"]["model_input"]),
            ("attack", f"{attack.name} {t.norm} eps={t.eps:g}, {t.steps} steps on {results['attack_images']} "
                       f"images, success {rate:.3f}" if rate is not None else "none")]
    for name, layer in results["layers"].items():
        detectors = ", ".join(f"{c} {n}" for c, n in layer["detectors"].items() if n) or "none"
        top = ", ".join(f"{c} {n}" for c, n in layer["detectors_top_sensitive"].items() if n) or "none"
        pvalues = " ".join(f"N={p['n']}:{p['p_value']:.3g}" for p in layer["p_values"] if p["p_value"] is not None)
        rows += [(f"{name} ({layer['units']} units) detectors", detectors),
                 (f"{name} top {layer['top_sensitive']} sensitive", top),
                 (f"{name} p-values", pvalues or "none (fewer units than every N)")]
    rows += [("note", n) for n in results["notes"]]
    print_summary(f"advtf dissect: {model_name(kw['model_path'])}, quantile {kw['quantile']:g}, "
                  f"detector IoU > {kw['detector_iou']:g}", rows, out=kw["out"])
