"""advtf.plots draws from results alone: every public figure writes a real PNG from tiny fake results,
no module touches pyplot or the caller's matplotlib backend, and labels are drawn as given."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest

import advtf.plots
from advtf.plots import adversarial, derived, dissect, features, interpret, local, retrain, robustness, training
from advtf.plots import transfer
from advtf.plots.figure import new_figure, save

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HELPERS = {"advtf.plots.figure"}  # the shared figure helper, tested on its own below
MODULES = sorted(m.name for m in pkgutil.iter_modules(advtf.plots.__path__, "advtf.plots."))


def _images(n=2, size=8, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, channels)).astype(np.float32)


def _maps(n=2, size=8, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size)).astype(np.float32)


def _examples(path):
    natural = _images()
    image = np.clip(natural + 0.03, 0, 1)
    rows = {"label": np.array([0, 1]), "natural": natural, "image": image, "clean_prediction": np.array([0, 1]),
            "adversarial_prediction": np.array([1, 0]), "success": np.array([True, False]),
            "linf": np.array([0.03, 0.03])}
    adversarial.examples_figure(rows, path, eps=0.03, class_names=["cat", "dog"], title="t")


def _cam(path):
    figure = {"label": [0, 1], "target": [1, 0], "natural": _images(), **{k: _maps(seed=i) for i, k in enumerate(
        ("xadv_t0", "x0_t0", "x0_t", "xadv_t"))}}
    interpret.cam_figure(figure, path, class_names=["a", "b"], title="t")


def _psr_examples(path):
    rng = np.random.default_rng(2)
    figure = {"label": [0, 1], "target": [1, 0], "adversarial": _images(), "l2_map": _maps(size=4),
              **{k: rng.uniform(0.1, 1, (2, 16)) for k in ("l2", "linf", "d0", "dt")},
              "r": rng.normal(0, 1.5, (2, 16))}
    interpret.psr_examples_figure(figure, path, title="t")


def _psr_cam(path):
    figure = {"label": [0, 1], "target": [1, 0], "natural": _images(), "cam_x0_t0": _maps(),
              "cam_xadv_t": _maps(seed=3),
              "category_map": np.random.default_rng(4).integers(-1, 3, (2, 8, 8))}
    interpret.psr_cam_figure(figure, path, title="t")


def _refine(path):
    natural = _images()
    figure = {"natural": natural, "delta": 0.05 * _images(seed=5) - 0.025}
    mask = np.random.default_rng(6).integers(0, 2, (2, 8, 8)).astype(np.float32)
    interpret.refine_figure(figure, mask, np.clip(natural + 0.01 * mask[..., None], 0, 1), path, title="t")


def _features(path):
    rng = np.random.default_rng(7)
    grid = np.exp(-np.sum(np.square(np.stack(np.meshgrid(np.linspace(-2, 2, 12), np.linspace(-2, 2, 12)), -1)), -1))
    panels = [{"model": model, "module": module, "embedding": rng.normal(0, 1, (20, 2)),
               "adversarial": np.arange(20) % 2 == 1, "extent": [-3, 3, -3, 3], "density_natural": grid,
               "density_adversarial": grid[::-1]} for model in ("run-a", "run-b") for module in ("m1", "m2")]
    rows = [{"model": p["model"], "module": p["module"], "channels": 4, "mmd2": 0.1, "p_value": 0.05,
             "c2st_accuracy": None if p["module"] == "m2" else 0.6} for p in panels]
    features.features_figure(panels, rows, ["m1", "m2"], path, title="t")


def _frequency(path):
    radii = [1.0, 2.0, 4.0]
    names = ("low_natural", "low_adversarial", "high_natural", "high_adversarial", "natural_low_adversarial_high",
             "adversarial_low_natural_high")
    models = [{"model": "run-a", "curves": {n: [0.2, 0.5, 0.9] for n in names}, "clean_accuracy": 0.9,
               "adversarial_accuracy": 0.1}]
    local.frequency_figure(radii, models, path, curves=names, title="t")


def _spectrum(path):
    natural = _maps(1)[0]
    local.spectrum_figure(natural, [("run-a", natural + 0.1), ("run-b", natural - 0.2)], path)


def _perturbation_grid(path):
    natural = _images()
    columns = [{"name": name, "image": np.clip(natural + 0.03 * (k + 1), 0, 1), "prediction": np.array([1, 0]),
                "success": np.array([True, False])} for k, name in enumerate(("run-a", "run-b"))]
    local.perturbation_grid(natural, columns, path, eps=0.03, title="t")


def _response(path):
    rows = [{"model": model, "source": "own", "attack": "pgd", "split": "all", "n": 4,
             **{f"{layer}_{stat}": 0.5 + k for layer in ("c1", "c2") for stat in ("max", "total", "l2")}}
            for k, model in enumerate(("run-a", "run-b"))]
    local.response_figure(rows, ["c1", "c2"], path)


def _activation_maps(path):
    maps = {"run-a": {"natural": _maps(4).transpose(1, 2, 0), "adversarial": _maps(4, seed=8).transpose(1, 2, 0)},
            "run-b": {"natural": _maps(3).transpose(1, 2, 0), "adversarial": _maps(3, seed=9).transpose(1, 2, 0)}}
    local.activation_maps_figure(maps, path, layer="c1")


def _epoch_curves(path):
    series = {"wd=0": {"epoch": [1, 2, 3], "c1_max": [3, 2, 1], "c2_max": [1, 2, 3]},
              "wd=5e-4": {"epoch": [1, 2, 3], "c1_max": [2, 2, 1], "c2_max": [1, 1, 3]}}
    local.epoch_curves(series, ["c1_max", "c2_max"], path, ylabel="mean max", title="t")


def _kernels(path):
    rows = [{"model": model, "layer": layer, "magnitude": 1.0 + k, "variance": None if layer == "c2" else 0.1}
            for k, model in enumerate(("run-a", "run-b")) for layer in ("c1", "c2", "c3")]
    local.kernel_figure(rows, path, stats=("magnitude", "variance"))


def _detectors(path):
    rows = [{"layer": layer, "units": units, "n_units": n, "object": 3, "texture": 1}
            for layer in ("c1", "c2") for units, n in (("all", 16), ("top 4 sensitive", 4))]
    dissect.detectors_figure(rows, ["object", "texture"], path, title="t")


def _pvalues(path):
    rows = [{"layer": layer, "n": n, "p_value": None if n == 8 else 0.01 * n} for layer in ("c1", "c2")
            for n in (1, 2, 4, 8)]
    dissect.pvalues_figure(rows, ["c1", "c2"], path, title="t")


def _segmentation(path):
    masks = (np.random.default_rng(10).uniform(0, 1, (2, 8, 8, 3)) > 0.5).astype(np.float32)
    dissect.segmentation_figure(_images(), _images(seed=11), masks, masks[::-1], ["u0", "u1", "u2"], path, title="t")


PRETRAINED = {"clean_accuracy": 0.8, "robust_accuracy": 0.3}


def _cutoff(path):
    rows = [{"cutoff": c, "part": part, "clean_accuracy": 0.5 + 0.1 * c, "robust_accuracy": 0.2 + 0.05 * c}
            for c in range(3) for part in ("before", "after")]
    retrain.cutoff_figure(rows, PRETRAINED, ["m0", "m1", "m2"], path, title="t")


def _combinations(path):
    medians = [{"module": m, "clean_accuracy_with": 0.7, "clean_accuracy_without": 0.6, "robust_accuracy_with": 0.3,
                "robust_accuracy_without": 0.2} for m in ("m0", "m1")]
    retrain.combinations_figure(medians, path, title="t")


def _reinit(path):
    rows = [{"retrained": u, "clean_accuracy": 0.4, "robust_accuracy": 0.1} for u in ("m0", "m1", "m2")]
    retrain.reinit_figure(rows, PRETRAINED, path, title="t")


def _cell(path):
    retrain.cell_figure([{"retrained": "m1", "clean_accuracy": 0.7, "robust_accuracy": 0.4}], PRETRAINED, path,
                        title="t")


def _history(path):
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + 0.1 * e,
                "val_clean_accuracy": 0.4 + 0.1 * e, "val_robust_accuracy": None} for e in (1, 2, 3)]
    training.training_curves(history, path, title="t")


def _heatmap(path):
    accuracy = {"natural": {"D": 0.9, "D_R": 0.5}, "robust": {"D": 0.6, "D_R": 0.05}}
    transfer.accuracy_heatmap(accuracy, path, chance=0.1, title="t")


def _transfer(path):
    table = {"0": {"v1": 0.2, "v2": 0.1}, "1/256": {"v1": 0.4, "v2": 0.3}}
    transfer.transfer_curves(table, path, metric="error_rate", white_box={"0": 0.9, "1/256": 0.95},
                             clean={"v1": 0.05, "v2": 0.08}, title="t")


# Every public figure function, with a drawing from tiny fake results (the name is "module.function").
CASES = {
    "adversarial.examples_figure": _examples,
    "derived.image_rows_figure": lambda p: derived.image_rows_figure([("a", _images()), ("b", _images(seed=1))], p),
    "derived.robustified_figure": lambda p: derived.robustified_figure(_images(), _images(seed=1), _images(seed=2),
                                                                       [0, 1], p, class_names=["a", "b"], title="t"),
    "derived.relabeled_figure": lambda p: derived.relabeled_figure(_images(channels=1), _images(channels=1, seed=1),
                                                                   [0, 1], [1, 0], p, title="t"),
    "dissect.detectors_figure": _detectors,
    "dissect.pvalues_figure": _pvalues,
    "dissect.segmentation_figure": _segmentation,
    "features.features_figure": _features,
    "interpret.cam_figure": _cam,
    "interpret.psr_examples_figure": _psr_examples,
    "interpret.psr_cam_figure": _psr_cam,
    "interpret.refine_figure": _refine,
    "local.frequency_figure": _frequency,
    "local.spectrum_figure": _spectrum,
    "local.perturbation_grid": _perturbation_grid,
    "local.response_figure": _response,
    "local.activation_maps_figure": _activation_maps,
    "local.epoch_curves": _epoch_curves,
    "local.kernel_figure": _kernels,
    "retrain.cutoff_figure": _cutoff,
    "retrain.combinations_figure": _combinations,
    "retrain.reinit_figure": _reinit,
    "retrain.cell_figure": _cell,
    "robustness.accuracy_vs_eps": lambda p: robustness.accuracy_vs_eps({"a": [(0, 0.9), (0.1, 0.4)]}, p, chance=0.1),
    "training.training_curves": _history,
    "transfer.accuracy_heatmap": _heatmap,
    "transfer.transfer_curves": _transfer,
}


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (read by hand, not by matplotlib)."""
    assert data[:8] == PNG_SIGNATURE, data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_public_figure_function_has_a_case():
    public = set()
    for name in MODULES:
        if name in HELPERS:
            continue
        module = importlib.import_module(name)
        public |= {f"{name.rsplit('.', 1)[1]}.{f}" for f, obj in inspect.getmembers(module, inspect.isfunction)
                   if not f.startswith("_") and obj.__module__ == name}
    assert public == set(CASES), f"add a case for: {sorted(public - set(CASES))}; stale: {sorted(set(CASES) - public)}"


@pytest.fixture
def no_pyplot(monkeypatch):
    """Any ``import matplotlib.pyplot`` or ``matplotlib.use`` during the test fails."""
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)

    def refuse(*args, **kwargs):
        raise AssertionError(f"matplotlib.use{args} called by advtf.plots")

    monkeypatch.setattr(matplotlib, "use", refuse)


@pytest.mark.parametrize("case", sorted(CASES))
def test_figure_writes_a_png(case, tmp_path, no_pyplot):
    before = matplotlib.get_backend()
    path = tmp_path / "figure.png"
    CASES[case](path)
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width > 50 and height > 50 and len(data) > 2000
    assert matplotlib.get_backend() == before
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary file left beside it
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0).shape[0] > 10  # drawn, not a blank canvas


def test_png_size_follows_figsize_and_dpi(tmp_path):
    # accuracy_vs_eps: 5 x 3.6 inches at 110 dpi, no tight bounding box.
    path = tmp_path / "acc.png"
    robustness.accuracy_vs_eps({"a": [(0, 0.9), (0.1, 0.4)]}, path)
    assert _png_size(path.read_bytes()) == (550, 396)


def test_empty_examples_write_nothing(tmp_path):
    rows = {k: np.zeros((0,)) for k in ("label", "clean_prediction", "adversarial_prediction", "success", "linf")}
    rows |= {"natural": np.zeros((0, 8, 8, 3)), "image": np.zeros((0, 8, 8, 3))}
    adversarial.examples_figure(rows, tmp_path / "x.png")
    derived.image_rows_figure([("a", np.zeros((0, 8, 8, 3)))], tmp_path / "y.png")
    assert list(tmp_path.iterdir()) == []


LABELLED = ["features.features_figure", "local.frequency_figure", "local.spectrum_figure", "local.perturbation_grid",
            "local.response_figure", "local.activation_maps_figure", "local.kernel_figure"]


@pytest.mark.parametrize("case", LABELLED)
def test_model_labels_are_drawn_as_given(case, tmp_path):
    path = tmp_path / "figure.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        CASES[case](path)
    text = path.read_text()
    assert text.startswith("<?xml") and "run-a" in text


def test_a_path_given_as_label_is_not_shortened(tmp_path):
    """plots no longer name models itself: callers pass ``model_name(path)``, and a path stays a path."""
    label = "runs/wd0/model.keras"
    rows = [{"model": label, "layer": "c1", "magnitude": 1.0}, {"model": label, "layer": "c2", "magnitude": 2.0}]
    response = [{"model": label, "source": "own", "attack": "pgd", "split": "all", "n": 1, "c1_max": 1.0,
                 "c1_total": 2.0, "c1_l2": 3.0}]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        local.kernel_figure(rows, tmp_path / "k.svg", stats=("magnitude",))
        local.response_figure(response, ["c1"], tmp_path / "r.svg")
    for name in ("k.svg", "r.svg"):
        assert label in (tmp_path / name).read_text(), name


def test_save_is_atomic(tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(b"old")
    fig, ax = new_figure(figsize=(2, 1), squeeze=True)
    ax.plot([0, 1], [0, 1])
    save(fig, path, title="t", dpi=50)
    assert _png_size(path.read_bytes()) == (100, 50)
    # A failing write (an unknown format) leaves the previous file and no temporary file.
    bad = tmp_path / "figure.notaformat"
    bad.write_bytes(b"old")
    with pytest.raises(ValueError):
        save(fig, bad)
    assert bad.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.notaformat", "figure.png"]


def test_new_figure_axes_shape():
    fig, axes = new_figure(2, 3, figsize=(3, 2))
    assert axes.shape == (2, 3) and len(fig.axes) == 6
    _, ax = new_figure(figsize=(3, 2), squeeze=True)
    assert not isinstance(ax, np.ndarray)


FORBIDDEN = ("matplotlib.pyplot", "tensorflow", "keras", "advtf.analysis", "advtf.inputs", "advtf.jobs",
             "advtf.training", "advtf.attacks", "advtf.models", "advtf.data")

SCRIPT = textwrap.dedent("""
    import importlib, json, sys
    import matplotlib
    matplotlib.use("svg")
    modules = json.loads(sys.argv[1])
    for name in modules:
        importlib.import_module(name)
    from advtf.plots.robustness import accuracy_vs_eps
    from advtf.plots.adversarial import examples_figure
    import numpy as np
    accuracy_vs_eps({"a": [(0.0, 0.9), (0.1, 0.4)]}, sys.argv[2] + "/a.png", chance=0.1)
    x = np.full((1, 4, 4, 1), 0.5)
    examples_figure({"label": [0], "natural": x, "image": x + 0.1, "clean_prediction": [0],
                     "adversarial_prediction": [1], "success": [True], "linf": [0.1]}, sys.argv[2] + "/b.png")
    print(json.dumps({"backend": matplotlib.get_backend(), "modules": sorted(sys.modules)}))
""")


def test_importing_and_drawing_keeps_the_callers_backend(tmp_path):
    """In a fresh interpreter with the svg backend chosen first, importing every advtf.plots module and
    drawing two figures loads no pyplot and nothing above advtf.runs, and the backend stays svg."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(MODULES), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "svg"
    loaded = [m for m in report["modules"] if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == []
    assert {"advtf.plots.local", "advtf.plots.retrain"} <= set(report["modules"])
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_no_plot_module_mentions_pyplot_or_use():
    """The source never reaches for pyplot or matplotlib.use, even in a branch the tests above do not run."""
    for name in MODULES:
        source = Path(importlib.import_module(name).__file__).read_text()
        code = re.sub(r'"""[\s\S]*?"""', "", source)
        assert not re.search(r"pyplot|matplotlib\.use\(", code), name
