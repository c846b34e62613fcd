"""``advtf features``: feature-vector distributions of natural vs adversarial images
(Siddiqui & Breuel 2021, Figure 8)."""

from __future__ import annotations

import dataclasses

import click

from advtf.cli.options import (attack_setup, cluster_timeout_option, dataset_options, print_summary, run_job,
                               run_options, targeting_options, threat_options)
from advtf.inputs import model_name


def _names(ctx, param, value):
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@click.command(context_settings={"max_content_width": 100})
@click.argument("model_paths", nargs=-1, metavar="MODEL...", type=click.Path())
@dataset_options(only=("dataset", "data_dir", "image_size", "seed"))
@click.option("--images", type=click.IntRange(min=1), default=200, show_default=True, metavar="N",
              help="Test images used (a subset drawn by --seed); each is attacked on every MODEL.")
@threat_options(norm="linf", eps="8/255")
@targeting_options()
@click.option("--modules", callback=_names, default=None, metavar="NAME,NAME,...",
              help="Spatial endpoints (m1, layer2, ...; see the error for a model's list) [default: m1,m2,m3,m4 "
                   "when all are feature maps, else every spatial module].")
@click.option("--method", type=click.Choice(["tsne", "umap", "trimap"]), default="tsne", show_default=True,
              help="2-D embedding: t-SNE (scikit-learn, PCA to 50 dims first); umap / trimap need "
                   "pip install 'advtf[embed]'.")
@click.option("--perplexity", type=click.FloatRange(min=1.0), default=30.0, show_default=True,
              help="t-SNE perplexity (capped at (points - 1) / 3).")
@click.option("--positions", type=click.IntRange(min=1), default=100, show_default=True,
              help="Positions drawn per image and module, uniformly without replacement (all if fewer).")
@click.option("--embed-samples", type=click.IntRange(min=10), default=1000, show_default=True, metavar="N",
              help="Vectors per side (natural, adversarial) in each embedding, drawn at random; a panel "
                   "(MMD + t-SNE of 2N = 2000 points) took ~27 s on a busy 2-core CPU.")
@click.option("--mmd-samples", type=click.IntRange(min=10), default=2000, show_default=True, metavar="N",
              help="Vectors per side for MMD (random subset; the kernel matrix is (2N)^2).")
@click.option("--permutations", type=click.IntRange(min=1), default=200, show_default=True,
              help="Permutations of the MMD test; the smallest p-value is 1/(1+permutations).")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@cluster_timeout_option()
@run_options(resumable=True)
def features(**kw):
    """Natural vs adversarial feature-vector distributions per module, embedded and measured (Figure 8).

    Each MODEL is attacked white-box on its own (untargeted on the true label unless --targeted).
    From every image and module, --positions spatial positions give feature vectors z in R^C (the
    same positions for the natural and the adversarial image). Per model and module: MMD^2 (RBF
    kernel, median-heuristic bandwidth, unbiased) with a permutation p-value, a logistic-regression
    two-sample test (held-out accuracy, 0.5 = indistinguishable), and a joint 2-D embedding drawn
    with density contours: natural green, adversarial red; rows = models, columns = modules.

    \b
    Example:
      advtf features runs/std runs/adv --dataset fashion_mnist --images 300 \\
          --attack pgd --norm linf --eps 0.1 --steps 10 --modules m1,m2,m3,m4 \\
          --method tsne --out runs/features

    Writes results.json, features.csv/.md (per model and module: channels, n, mmd2, p_value,
    bandwidth, c2st_accuracy, clean and adversarial accuracy), embeddings.npz (np.load with
    allow_pickle=False; advtf.jobs.features.load_panels redraws the figure), features.png
    and manifest.json. Every model's attack runs first, by resumable chunk: an interrupted run
    continues with --resume; with TF_CONFIG set, the workers of a cluster share the attacks and
    the chief measures (README, "Cluster runs").
    """
    from advtf.jobs.features import FeaturesRequest

    _, data, request = attack_setup(kw)
    results = run_job("features", FeaturesRequest(
        models=kw["model_paths"], attack=request, data=dataclasses.replace(data, test_subset=kw["images"]),
        batch_size=kw["batch_size"], modules=kw["modules"], method=kw["method"], positions=kw["positions"],
        embed_samples=kw["embed_samples"], mmd_samples=kw["mmd_samples"], permutations=kw["permutations"],
        perplexity=kw["perplexity"]), kw)
    first = {}
    for r in results["rows"]:
        first.setdefault(r["model"], r)
    summary = [("modules", ",".join(results["modules"])), ("method", results["method"])]
    for path, r in first.items():
        summary.append((f"{model_name(path)}: {r['n_images']} images, accuracy clean / adversarial",
                        f"{r['clean_accuracy']:.4f} / {r['adversarial_accuracy']:.4f}"))
    for r in results["rows"]:
        c2st = "n/a" if r["c2st_accuracy"] is None else f"{r['c2st_accuracy']:.3f}"
        summary.append((f"{model_name(r['model'])} {r['module']} (C={r['channels']}): MMD2 | p | C2ST",
                        f"{r['mmd2']:.4g} | {r['p_value']:.3g} | {c2st}"))
    t = request.threat
    print_summary(f"advtf features: {request.name} ({t.norm}, eps={t.eps:g}, {t.steps} steps), "
                  f"{len(first)} model(s)", summary, out=kw["out"])
