"""Feature-vector distributions of natural and adversarial images (Siddiqui & Breuel 2021,
Sec. 6, Figure 8).

A *feature vector* is one spatial position of a module's output: ``z = f_m(x)[i, j, :] ∈ R^C``.
For every test image, ``positions`` positions of each module are drawn uniformly without
replacement (all of them when the map has fewer; seeded per batch and module, and the same
positions for an image and its adversarial version, so the two samples differ only by the
perturbation). Each model is attacked white-box on its own (untargeted on the true label by
default); all images are used, whether or not the attack succeeds (the run records clean and
adversarial accuracy of these images).

Per model and module the natural and adversarial vectors are

* compared in the original space R^C (:mod:`advtf.analysis.two_sample`): MMD² with an RBF
  kernel (median-heuristic bandwidth) and a permutation p-value on at most ``mmd_samples``
  vectors per side (drawn at random, independently per side, because the kernel matrix grows
  quadratically), and a logistic-regression two-sample test (held-out accuracy, split by image)
  on all vectors;
* embedded *jointly* in 2-D (one embedding per model × module, at most ``embed_samples``
  vectors per side): t-SNE (scikit-learn, after a PCA to 50 dimensions when C > 50, the usual
  pre-reduction), or UMAP / TriMap from the optional ``advtf[embed]`` extra (TriMap < 1.2:
  1.2 requires PyTorch).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from advtf.analysis.two_sample import c2st_accuracy, mmd_test
from advtf.errors import UserError
from advtf.models import endpoints, feature_extractor

METHODS = ("tsne", "umap", "trimap")
PAPER_MODULES = ("m1", "m2", "m3", "m4")
_EXTRA = {"umap": ("umap", "umap-learn"), "trimap": ("trimap", "trimap")}
_LOGITS = "__logits__"
PCA_DIMENSIONS = 50


def spatial_endpoints(model: keras.Model) -> list[str]:
    """Endpoint names whose output is a feature map ``[B, H, W, C]`` (modules and aliases)."""
    return [name for name, tensor in endpoints(model).items() if len(tensor.shape) == 4]


def default_modules(model: keras.Model) -> list[str]:
    """Figure 8's ``m1..m4`` when all four are feature maps, else every spatial module ``m0..mK``."""
    spatial = spatial_endpoints(model)
    if all(m in spatial for m in PAPER_MODULES):
        return list(PAPER_MODULES)
    return [n for n in spatial if n.startswith("m") and n[1:].isdigit()]


def check_modules(model: keras.Model, names, label: str = "") -> None:
    """UserError for a name that is no endpoint (listing the spatial ones) or not a feature map."""
    available = endpoints(model)
    spatial = spatial_endpoints(model)
    where = f" of {label}" if label else ""
    for name in names:
        if name not in available:
            raise UserError(f"--modules: unknown module {name!r}{where}; available spatial modules: "
                            f"{', '.join(spatial)}")
        if name not in spatial:
            raise UserError(f"--modules: {name!r}{where} is not spatial (output shape "
                            f"{tuple(available[name].shape)}); choose feature maps: {', '.join(spatial)}")
    if not names:
        raise UserError(f"--modules: no module given; available spatial modules: {', '.join(spatial)}")


def sample_positions(rng: np.random.Generator, images: int, size: int, per_image: int) -> np.ndarray:
    """``[images, min(per_image, size)]`` flat positions in ``range(size)``, uniform without replacement per row."""
    count = min(per_image, size)
    return np.argsort(rng.random((images, size)), axis=1)[:, :count].astype(np.int32)


def gather_positions(maps, positions):
    """``maps[b, positions[b, k] // W, positions[b, k] % W, :]`` as ``[B, K, C]`` (works on tensors)."""
    shape = tf.shape(maps)
    flat = tf.reshape(maps, [shape[0], shape[1] * shape[2], shape[3]])
    return tf.gather(flat, positions, batch_dims=1)


@tf.function(reduce_retracing=True)
def _sampled_features(extractor, x, x_adv, positions):
    out = extractor(tf.concat([x, x_adv], 0), training=False)
    return {name: gather_positions(out[name], tf.concat([idx, idx], 0)) for name, idx in positions.items()}


@dataclasses.dataclass
class FeatureSample:
    """The sampled vectors of one module: ``natural`` and ``adversarial`` ``[N, C]`` with matching rows."""

    module: str
    height: int
    width: int
    natural: np.ndarray
    adversarial: np.ndarray
    image: np.ndarray  # the test image each row comes from
    position: np.ndarray  # its flat position i * width + j

    @property
    def channels(self) -> int:
        return int(self.natural.shape[1])


def collect_features(model, modules, pairs, *, positions: int, seed: int) -> tuple[dict[str, FeatureSample], dict]:
    """Samples each module's vectors of the natural and adversarial images of every batch of ``pairs``.

    ``pairs`` yields dicts with ``natural``, ``image`` (adversarial), ``clean_correct`` and
    ``adversarial_correct`` (:func:`advtf.analysis.pairs.adversarial_pairs`). Returns
    ``({module: FeatureSample}, {"n_images", "clean_accuracy", "adversarial_accuracy"})``.
    """
    extractor = feature_extractor(model, list(modules))
    shapes = {name: tuple(endpoints(model)[name].shape[1:3]) for name in modules}
    parts: dict[str, dict[str, list]] = {name: {"natural": [], "adversarial": [], "image": [], "position": []}
                                         for name in modules}
    clean, adversarial, offset = [], [], 0
    for b, batch in enumerate(pairs):
        count = len(batch["natural"])
        chosen = {name: sample_positions(np.random.default_rng([seed, b, k]), count, h * w, positions)
                  for k, (name, (h, w)) in enumerate(shapes.items())}
        out = _sampled_features(extractor, tf.convert_to_tensor(batch["natural"], tf.float32),
                                tf.convert_to_tensor(batch["image"], tf.float32),
                                {n: tf.constant(p) for n, p in chosen.items()})
        for name, vectors in out.items():
            vectors = vectors.numpy()
            per_image = chosen[name].shape[1]
            part = parts[name]
            part["natural"].append(vectors[:count].reshape(count * per_image, -1))
            part["adversarial"].append(vectors[count:].reshape(count * per_image, -1))
            part["image"].append(np.repeat(np.arange(offset, offset + count), per_image))
            part["position"].append(chosen[name].reshape(-1))
        clean.append(batch["clean_correct"])
        adversarial.append(batch["adversarial_correct"])
        offset += count
    if not offset:
        raise UserError("the test split holds no images; check --dataset / --images")
    samples = {name: FeatureSample(name, *shapes[name], **{k: np.concatenate(v) for k, v in part.items()})
               for name, part in parts.items()}
    accuracy = {"n_images": offset, "clean_accuracy": float(np.concatenate(clean).mean()),
                "adversarial_accuracy": float(np.concatenate(adversarial).mean())}
    return samples, accuracy


def require_method(method: str) -> None:
    """UserError, before any work, for an unknown method or a missing optional package."""
    import importlib

    if method not in METHODS:
        raise UserError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if method in _EXTRA:
        module, package = _EXTRA[method]
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(f"--method {method} needs the optional package {package}: "
                            "pip install 'advtf[embed]'") from None


def embed(vectors: np.ndarray, method: str = "tsne", *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D embedding ``[N, 2]`` of ``vectors`` ``[N, C]`` (module docstring).

    t-SNE and UMAP are deterministic given ``seed`` (UMAP then runs single-threaded); TriMap
    (1.1, Numba) cannot be seeded and varies from run to run.

    t-SNE's perplexity is capped at ``(N - 1) / 3`` (scikit-learn needs it below N; fewer than
    three neighbours per point is meaningless).
    """
    require_method(method)
    vectors = np.asarray(vectors, np.float32)
    n = len(vectors)
    if method == "tsne":
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        if vectors.shape[1] > PCA_DIMENSIONS and n > PCA_DIMENSIONS:
            vectors = PCA(PCA_DIMENSIONS, random_state=seed).fit_transform(vectors)
        from threadpoolctl import threadpool_limits

        tsne = TSNE(2, perplexity=min(perplexity, (n - 1) / 3), init="pca", learning_rate="auto", random_state=seed)
        # One OpenMP thread: on a busy 2-core machine the Barnes-Hut gradient's threads oversubscribe
        # (measured: 2000 points 19 s with one thread, 51 s with the default).
        with threadpool_limits(1, user_api="openmp"):
            out = tsne.fit_transform(vectors)
    elif method == "umap":
        import umap

        out = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed).fit_transform(vectors)
    else:
        import trimap

        # Not seeded: TriMap samples its triplets in parallel Numba code with per-thread generators.
        out = trimap.TRIMAP(n_dims=2, n_inliers=min(12, n - 2), verbose=False).fit_transform(vectors)
    return np.asarray(out, np.float32)


def density_grid(points: np.ndarray, extent, size: int = 60) -> np.ndarray | None:
    """A Gaussian kernel-density estimate (Scott's bandwidth) of 2-D ``points`` on a ``size``×``size`` grid
    over ``extent = (xmin, xmax, ymin, ymax)``; None when it cannot be estimated (too few or collinear points)."""
    from scipy.stats import gaussian_kde

    if len(points) < 3:
        return None
    xs = np.linspace(extent[0], extent[1], size)
    ys = np.linspace(extent[2], extent[3], size)
    gx, gy = np.meshgrid(xs, ys)
    try:
        kde = gaussian_kde(np.asarray(points, np.float64).T)
    except (np.linalg.LinAlgError, ValueError):
        return None
    return kde(np.stack([gx.ravel(), gy.ravel()])).reshape(size, size)


def _subsample(rng, count: int, limit: int) -> np.ndarray:
    return np.sort(rng.choice(count, limit, replace=False)) if count > limit else np.arange(count)


def analyse_module(sample: FeatureSample, *, method: str, embed_samples: int, mmd_samples: int, permutations: int,
                   perplexity: float, seed: int) -> tuple[dict, dict]:
    """The statistics row and the embedding panel of one model × module."""
    rng = np.random.default_rng([seed, 1])
    n = len(sample.natural)
    mmd_nat, mmd_adv = _subsample(rng, n, mmd_samples), _subsample(rng, n, mmd_samples)
    mmd = mmd_test(sample.natural[mmd_nat], sample.adversarial[mmd_adv], permutations=permutations, seed=seed)
    c2st = c2st_accuracy(sample.natural, sample.adversarial, groups_x=sample.image, groups_y=sample.image, seed=seed)
    emb_nat, emb_adv = _subsample(rng, n, embed_samples), _subsample(rng, n, embed_samples)
    vectors = np.concatenate([sample.natural[emb_nat], sample.adversarial[emb_adv]])
    is_adversarial = np.concatenate([np.zeros(len(emb_nat), bool), np.ones(len(emb_adv), bool)])
    xy = embed(vectors, method, seed=seed, perplexity=perplexity)
    row = {"module": sample.module, "channels": sample.channels, "height": sample.height, "width": sample.width,
           "positions_per_image": n // max(1, len(np.unique(sample.image))),
           "n_natural": n, "n_adversarial": len(sample.adversarial), "mmd2": mmd["mmd2"], "p_value": mmd["p_value"],
           "bandwidth": mmd["bandwidth"], "mmd_n": mmd["n_x"], "permutations": permutations,
           "c2st_accuracy": c2st["accuracy"], "c2st_n_test": c2st["n_test"], "n_embedded": len(xy)}
    panel = with_densities({"module": sample.module, "embedding": xy, "adversarial": is_adversarial,
                            "image": np.concatenate([sample.image[emb_nat], sample.image[emb_adv]]),
                            "position": np.concatenate([sample.position[emb_nat], sample.position[emb_adv]])})
    return row, panel


def with_densities(panel: dict) -> dict:
    """``panel`` plus its plot ``extent`` (the points' range, 5 % margin) and both samples' density grids."""
    xy, adversarial = np.asarray(panel["embedding"]), np.asarray(panel["adversarial"], bool)
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)
    extent = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    return {**panel, "extent": extent, "density_natural": density_grid(xy[~adversarial], extent),
            "density_adversarial": density_grid(xy[adversarial], extent)}
