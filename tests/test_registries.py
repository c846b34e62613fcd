"""The one Registry shape: register, get with a "did you mean", list; used by datasets, models, attacks, jobs."""

import pytest

from advtf.errors import UserError
from advtf.registry import Registry


def test_register_get_and_list_in_order():
    reg = Registry("widget", "see `advtf widgets`")
    reg.register("beta", 2)

    @reg.register("alpha")
    def alpha():
        return 1

    assert reg.get("beta") == 2 and reg["alpha"] is alpha
    assert reg.names() == ["beta", "alpha"] and reg.names("a*") == ["alpha"]
    assert "beta" in reg and "gamma" not in reg and len(reg) == 2
    with pytest.raises(ValueError, match="twice"):
        reg.register("beta", 3)


def test_unknown_names_suggest_the_closest():
    reg = Registry("attack", "see `advtf attacks`")
    for name in ("pgd", "apgd-ce", "fgsm"):
        reg.register(name, name)
    with pytest.raises(UserError, match=r"unknown attack 'pdg'; did you mean pgd\?.*see `advtf attacks`"):
        reg.get("pdg")
    with pytest.raises(UserError, match="unknown attack 'zzz'; choose one of: pgd, apgd-ce, fgsm"):
        reg.get("zzz")


def test_every_kind_uses_it():
    from advtf.attacks import ATTACKS
    from advtf.data.registry import DATASETS
    from advtf.jobs import JOBS
    from advtf.models.registry import MODELS

    for registry, name in ((ATTACKS, "pgd"), (DATASETS, "fashion_mnist"), (JOBS, "train"), (MODELS, "resnet20v2")):
        assert isinstance(registry, Registry) and name in registry
    with pytest.raises(UserError, match="did you mean resnet20v2"):
        MODELS.get("resnet20")


def test_none_is_an_entry_not_a_decorator_request():
    reg = Registry("method")
    reg.register("own", None)
    assert "own" in reg and reg.get("own") is None
