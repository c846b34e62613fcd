"""Registry: listing, validation of create_model arguments, seeds, names."""

import numpy as np
import pytest

from advtf.errors import UserError
from advtf.models import ModelSpec, create_model, list_models, register_model, registry

ALL = {
    "resnet20v2",
    "resnet56v2",
    "resnet18",
    "resnet50",
    "resnet50v2",
    "vgg11_bn",
    "vgg16_bn",
    "densenet121",
    "inception_v3",
    "mobilenet_v2",
    "vgg16",
    "resnet50_v2",
    "xception",
}


def test_list_models_has_every_family_and_filters():
    names = {spec.name for spec in list_models()}
    assert ALL <= names
    assert [s.name for s in list_models("resnet*v2")] == [
        "resnet20v2",
        "resnet50_v2",
        "resnet50v2",
        "resnet56v2",
    ]
    assert list_models("nothing*") == []
    spec = list_models("inception_v3")[0]
    assert isinstance(spec, ModelSpec)
    assert (spec.family, spec.min_input_size, spec.default_input_shape) == (
        "victim",
        75,
        (224, 224, 3),
    )
    assert list_models("resnet18")[0].min_input_size == 8
    assert list_models("vgg11_bn")[0].min_input_size == 32


def test_unknown_name_lists_available():
    with pytest.raises(UserError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19", input_shape=(32, 32, 3), num_classes=10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_shape=(32, 32)), "input_shape must be"),
        (dict(input_shape=(16, 16, 3), name="vgg11_bn"), "at least 32×32"),
        (dict(num_classes=0), "num_classes"),
        (dict(width=0), "width"),
        (dict(mean=[0.5, 0.5]), "mean has 2 values but the images have 3 channels"),
        (dict(std=[0.5, 0.0, 0.5]), "std must be positive"),
        (dict(weights="imagenet"), "only available for keras.applications"),
        (dict(weights="cifar"), "weights must be None or 'imagenet'"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, message):
    args = dict(name="resnet20v2", input_shape=(16, 16, 3), num_classes=10, width=0.25)
    args.update(kwargs)
    with pytest.raises(UserError, match=message):
        create_model(args.pop("name"), **args)


def test_name_seed_and_scalar_mean_std():
    a = create_model("resnet20v2", input_shape=(16, 16, 1), num_classes=3, width=0.25, seed=7)
    b = create_model("resnet20v2", input_shape=(16, 16, 1), num_classes=3, width=0.25, seed=7)
    c = create_model("resnet20v2", input_shape=(16, 16, 1), num_classes=3, width=0.25, seed=8)
    assert a.name == "resnet20v2"
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))
    kernels = [w for w in a.get_weights() if w.ndim == 4 and w.shape == (3, 3, 4, 4)]
    assert len(kernels) >= 2 and not np.array_equal(kernels[0], kernels[1])  # per-layer seeds


def test_register_model_decorator(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", registry.MODELS.copy())

    @register_model("tiny_test", family="test", description="d", default_input_shape=(8, 8, 1))
    def tiny(args, spec):
        return create_model(
            "resnet20v2", input_shape=args.input_shape, num_classes=args.num_classes, width=0.1
        )

    assert list_models("tiny_*")[0] == ModelSpec("tiny_test", "test", "d", (8, 8, 1), 8, "")
    assert create_model("tiny_test", input_shape=(8, 8, 1), num_classes=2).output_shape == (None, 2)
    with pytest.raises(ValueError, match="registered twice"):
        register_model("tiny_test", family="t", description="", default_input_shape=(8, 8, 1))(tiny)
