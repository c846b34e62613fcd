"""Per-position feature sampling against a direct feature_extractor call, module choice, embeddings."""

import sys

import numpy as np
import pytest

from advtf.analysis import features as F
from advtf.errors import UserError
from advtf.jobs.features import load_embeddings, save_embeddings
from advtf.models import create_model, feature_extractor


@pytest.fixture(scope="module")
def model():
    return create_model("test_cnn", input_shape=(8, 8, 1), num_classes=3, seed=0)


def test_sample_positions_exact_count_no_duplicates_seeded():
    positions = F.sample_positions(np.random.default_rng(0), 50, 64, 10)
    assert positions.shape == (50, 10)
    assert all(len(set(row)) == 10 for row in positions.tolist())
    assert positions.min() >= 0 and positions.max() < 64
    np.testing.assert_array_equal(positions, F.sample_positions(np.random.default_rng(0), 50, 64, 10))
    # Uniform: every position is drawn about equally often (500 draws over 64 positions: ~7.8 each).
    counts = np.bincount(F.sample_positions(np.random.default_rng(1), 2000, 64, 10).ravel(), minlength=64)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    # Fewer positions than asked: all of them, each once.
    everything = F.sample_positions(np.random.default_rng(0), 3, 16, 100)
    assert everything.shape == (3, 16) and all(sorted(r) == list(range(16)) for r in everything.tolist())


def test_collected_vectors_are_the_module_outputs_at_the_positions(model):
    rng = np.random.default_rng(0)
    batches = []
    for size in (4, 3):  # two batches, the second smaller
        x = rng.random((size, 8, 8, 1)).astype(np.float32)
        batches.append({"natural": x, "image": np.clip(x + rng.uniform(-0.2, 0.2, x.shape), 0, 1).astype(np.float32),
                        "clean_correct": np.arange(size) % 2 == 0, "adversarial_correct": np.zeros(size, bool)})
    modules = ["m0", "m1", "m2"]  # 8x8x16, 4x4x32, 2x2x64
    samples, accuracy = F.collect_features(model, modules, iter(batches), positions=5, seed=3)
    assert accuracy == {"n_images": 7, "clean_accuracy": pytest.approx(4 / 7), "adversarial_accuracy": 0.0}
    extractor = feature_extractor(model, modules)
    maps = {side: {k: np.concatenate([np.asarray(extractor(b[key])[k]) for b in batches]) for k in modules}
            for side, key in (("natural", "natural"), ("adversarial", "image"))}
    for module, per_image in (("m0", 5), ("m1", 5), ("m2", 4)):  # m2 has only 2x2 positions
        sample = samples[module]
        width = sample.width
        assert (sample.height, width, sample.channels) == maps["natural"][module].shape[1:]
        assert len(sample.natural) == len(sample.adversarial) == 7 * per_image
        np.testing.assert_array_equal(np.bincount(sample.image), [per_image] * 7)
        for image in range(7):
            chosen = sample.position[sample.image == image]
            assert len(set(chosen.tolist())) == per_image
        for side in ("natural", "adversarial"):
            expected = maps[side][module][sample.image, sample.position // width, sample.position % width]
            np.testing.assert_allclose(getattr(sample, side), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(samples["m1"].natural, samples["m1"].adversarial)


def test_default_and_checked_modules(model):
    assert F.default_modules(model) == ["m0", "m1", "m2"]  # no m4: every spatial module
    resnet = create_model("resnet18", width=0.125, input_shape=(28, 28, 1), num_classes=10)
    assert F.default_modules(resnet) == ["m1", "m2", "m3", "m4"]
    F.check_modules(resnet, ["layer1", "m4"])  # aliases are endpoints too
    with pytest.raises(UserError, match=r"unknown module 'm9'.*available spatial modules: m0, m1, m2$"):
        F.check_modules(model, ["m1", "m9"])
    with pytest.raises(UserError, match="'m3' of std is not spatial"):
        F.check_modules(model, ["m3"], "std")
    with pytest.raises(UserError, match="'representation' is not spatial"):
        F.check_modules(model, ["representation"])


def test_tsne_shape_and_seed():
    x = np.random.default_rng(0).normal(size=(80, 60)).astype(np.float32)  # > 50 dims: PCA first
    a = F.embed(x, "tsne", seed=1, perplexity=10)
    assert a.shape == (80, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, F.embed(x, "tsne", seed=1, perplexity=10))
    assert F.embed(x[:9], "tsne", perplexity=30).shape == (9, 2)  # perplexity capped below N


@pytest.mark.parametrize("method, package", [("umap", "umap"), ("trimap", "trimap")])
def test_missing_extra_is_a_one_line_user_error(monkeypatch, method, package):
    monkeypatch.setitem(sys.modules, package, None)  # `import umap` now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'advtf\[embed\]'") as error:
        F.embed(np.zeros((10, 3)), method)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="choose one of tsne, umap, trimap"):
        F.require_method("pca")


def test_density_grid_integrates_to_one_and_embeddings_round_trip(tmp_path):
    points = np.random.default_rng(0).normal(size=(300, 2))
    grid = F.density_grid(points, (-8, 8, -8, 8), size=81)
    assert grid.shape == (81, 81) and grid.sum() * (16 / 80) ** 2 == pytest.approx(1.0, abs=0.01)
    assert F.density_grid(np.zeros((5, 2)), (-1, 1, -1, 1)) is None  # singular: no contour, no crash
    panels = [{"embedding": points.astype(np.float32), "adversarial": np.arange(300) % 2 == 1,
               "image": np.arange(300) // 10, "position": np.arange(300) % 10}]
    save_embeddings(tmp_path / "e.npz", panels)
    (loaded,) = load_embeddings(tmp_path / "e.npz", 1)
    for key, value in panels[0].items():
        np.testing.assert_array_equal(loaded[key], value)
