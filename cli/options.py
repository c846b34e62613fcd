"""Options shared by every command, defined once (docs/design.md)."""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import click


class Number(click.ParamType):
    """A float written as ``0.5``, ``8/255`` or ``1e-3`` (parsed with Fraction, never eval)."""

    name = "NUMBER"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        try:
            number = float(Fraction(str(value).strip()))
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a number; write e.g. 0.5, 8/255 or 3e-2", param, ctx)
        except OverflowError:
            number = float("inf")
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; write e.g. 0.5, 8/255 or 3e-2", param, ctx)
        return number


NUMBER = Number()


class IntList(click.ParamType):
    """Comma-separated integers, e.g. ``50,75``."""

    name = "N,N,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers, e.g. 50,75", param, ctx)


def compose(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


def dataset_options(default: str = "fashion_mnist", validation: float = 0.0, *, only: tuple[str, ...] | None = None):
    """``--dataset``, ``--data-dir``, ``--image-size``, subsets, ``--validation``, ``--seed``.

    ``only`` keeps the options of these parameter names (e.g. ``("data_dir", "test_subset", "seed")``)
    for commands that take their datasets another way; :func:`data_request` fills in the rest.
    """
    opts = {
        "dataset": click.option("--dataset", default=default, show_default=True, metavar="NAME|DIR",
                                help="A registered dataset (see `advtf datasets`) or a directory written by an "
                                     "advtf command."),
        "data_dir": click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                                 help="Where the dataset's files are (idx files, a tensorflow-datasets data_dir)."),
        "image_size": click.option("--image-size", type=click.IntRange(min=8), default=None,
                                   help="Resize images to this side (imagenette; victims of another size)."),
        "train_subset": click.option("--train-subset", type=click.IntRange(min=1), default=None, metavar="N",
                                     help="Use N training images, drawn deterministically by --seed."),
        "test_subset": click.option("--test-subset", type=click.IntRange(min=1), default=None, metavar="N",
                                    help="Use N test images, drawn deterministically by --seed."),
        "validation": click.option("--validation", type=NUMBER, default=validation, show_default=True,
                                   help="Held-out part of the training split: a fraction (0.1) or a count (500)."),
        "seed": click.option("--seed", type=int, default=0, show_default=True,
                             help="Seed for subsets, order and noise."),
    }
    return compose(*(o for name, o in opts.items() if only is None or name in only))


def data_request(kwargs: dict):
    """Pops the dataset options out of ``kwargs`` into an :class:`advtf.inputs.DataRequest`.

    Options a command does not take (``dataset_options(only=...)``) keep the request's defaults.
    """
    from advtf.inputs import DataRequest

    validation = kwargs.pop("validation", 0.0)
    return DataRequest(
        dataset=kwargs.pop("dataset", DataRequest.dataset), data_dir=kwargs.pop("data_dir", None),
        image_size=kwargs.pop("image_size", None), train_subset=kwargs.pop("train_subset", None),
        test_subset=kwargs.pop("test_subset", None),
        validation=int(validation) if validation >= 1 and validation == int(validation) else float(validation), seed=kwargs.get("seed", 0),
    )


# Conventional radii per norm in [0, 1] pixel units (CIFAR-10: Madry et al. 2018 for linf and l2,
# Croce & Hein 2021 for l1): --eps when the threat's norm is not the command's own.
NORM_EPS = {"linf": "8/255", "l2": "0.5", "l1": "12"}


def default_norm(attack: str | None, norm: str, *, command_attack: str = "pgd") -> str:
    """The norm an attack runs in when --norm is not given.

    The command's own ``norm`` for its own attack (or when it has no --attack), else the attack's
    first registered norm (``advtf attacks``): ``--attack str`` alone runs in linf, ``--attack ead`` in l1.
    """
    from advtf.attacks import ATTACKS

    spec = ATTACKS.get(attack) if attack in ATTACKS else None
    if spec is None or (attack == command_attack and norm in spec.norms):
        return norm  # an unknown name is reported by the request's validation
    return spec.norms[0]


def default_eps(norm: str, command_norm: str, eps: str) -> float:
    """The radius when --eps is not given: the command's own for its norm, else the norm's conventional one."""
    from advtf.attacks import parse_number

    return parse_number(eps if norm == command_norm else NORM_EPS.get(norm, eps))


def _norm_help(norm: str, attack: bool) -> str:
    """--norm help naming the effective default of every attack."""
    from advtf.attacks import ATTACKS

    if not attack:
        return f"Threat-model norm  [default: {norm}]"
    own: dict[str, list[str]] = {}
    for name in ATTACKS:
        if name != "pgd":
            own.setdefault(default_norm(name, norm), []).append(name)
    listing = "; ".join(f"{n} for {', '.join(names)}" for n, names in own.items())
    return f"Threat-model norm  [default: {norm} for pgd, else the attack's own: {listing}]"


def threat_options(*, steps_flag: str = "--steps", norm: str = "l2", eps: str = "0.5", steps: int | None = None,
                   step_size: str | None = None, attack: bool = True, step_size_help: str | None = None):
    """``--attack``, ``--norm``, ``--eps``, steps, ``--step-size``, ``--restarts`` (and ``-O`` options).

    ``norm`` and ``eps`` are the command's defaults for its own attack (pgd); an option not given
    follows those given (:func:`default_norm`, :func:`default_eps`), so ``--attack str`` alone
    runs in linf with an linf radius instead of failing on l2. ``step_size_help`` replaces the
    ``--step-size`` help of a command with its own default.
    """
    from advtf.attacks import NORMS

    def resolve_norm(ctx, param, value):
        # --attack is declared first, so click has it in ctx.params whenever --norm is not given.
        return value if value is not None else default_norm(ctx.params.get("attack"), norm)

    def resolve_eps(ctx, param, value):
        return value if value is not None else default_eps(ctx.params.get("norm") or norm, norm, eps)

    others = ", ".join(f"{NORM_EPS[n]} for {n}" for n in NORM_EPS if n != norm)
    steps_help = "Attack iterations." if steps is not None else \
        "Attack iterations [default: the attack's own, see `advtf attacks`]."
    opts = [
        click.option("--norm", type=click.Choice(NORMS), default=None, callback=resolve_norm,
                     help=_norm_help(norm, attack)),
        click.option("--eps", type=NUMBER, default=None, callback=resolve_eps,
                     help=f"Radius of the threat ball in [0,1] pixel units (8/255 is fine)  "
                          f"[default: {eps} for {norm}; {others}]"),
        click.option(steps_flag, "steps", type=int, default=steps, show_default=steps is not None, help=steps_help),
        click.option("--step-size", type=NUMBER, default=step_size, show_default=step_size is not None,
                     help=step_size_help or ("Attack step size." if step_size is not None else
                                             "Attack step size [default: 2.5*eps/steps, Madry et al.'s convention].")),
        click.option("--restarts", type=int, default=1, show_default=True,
                     help="Random restarts; the worst case per example is kept."),
    ]
    if attack:
        from advtf.attacks import ATTACKS

        # A plain string checked against the registry: an unknown name is a one-line error.
        opts.insert(0, click.option("--attack", default="pgd", show_default=True, metavar="NAME",
                                    help=f"Attack: {', '.join(ATTACKS)} (see `advtf attacks`)."))
        opts.append(click.option("--attack-option", "-O", "attack_option", multiple=True, metavar="KEY=VALUE",
                                 help="An attack's own option, e.g. -O confidence=10 -O search_steps=9 "
                                      "(repeatable; `advtf attacks` lists them)."))
    return compose(*opts)


def targeting_options():
    """``--targeted``, ``--target-mode``, ``--target-class``, ``--attack-target``."""
    from advtf.attacks import TARGET_MODES

    return compose(
        click.option("--targeted", is_flag=True, help="Attack towards target classes (see --target-mode)."),
        click.option("--target-mode", type=click.Choice(TARGET_MODES), default="random", show_default=True,
                     help="random: a class other than the label; next: (label+1) mod K; given: --target-class."),
        click.option("--target-class", type=int, default=None, help="The one target class of --target-mode given."),
        click.option("--attack-target", type=click.Choice(["label", "prediction"]), default="label",
                     show_default=True,
                     help="Untargeted: move away from the true label, or from the model's clean prediction."),
    )


def make_threat(kwargs: dict, *, steps=None):
    """Pops the threat options out of ``kwargs`` into an :class:`advtf.attacks.Threat`.

    Without ``--steps``, the attack's registered default applies (``kwargs["attack"]``).
    """
    from advtf.attacks import Threat, attack_spec

    given = kwargs.pop("steps")
    if steps is None:
        steps = given if given is not None else attack_spec(kwargs.get("attack", "pgd")).default_steps
    return Threat(norm=kwargs.pop("norm"), eps=kwargs.pop("eps"), steps=steps,
                  step_size=kwargs.pop("step_size"), restarts=kwargs.pop("restarts"))


def make_attack_request(kwargs: dict, threat):
    """The :class:`advtf.adversarial.AttackRequest` of ``--attack``, ``-O`` and the targeting options."""
    from advtf.adversarial import AttackRequest

    target_class = kwargs.pop("target_class", None)
    mode = kwargs.pop("target_mode", "random")
    return AttackRequest(
        name=kwargs["attack"], threat=threat, options=parse_attack_options(kwargs),
        targeted=kwargs.pop("targeted", False), target_mode="given" if target_class is not None else mode,
        target_class=target_class, attack_target=kwargs.pop("attack_target", "label"),
    )


# Xu et al. 2019 (Appendix 1) run C&W, EAD and Str with confidence kappa = 1; their analyses
# (`advtf cam`, `advtf psr`, the activation bias of `advtf response`) default to it.
XU_CONFIDENCE = 1.0


def xu_confidence(request):
    """``request`` with confidence kappa = 1 (Xu et al. 2019) when its attack has one and none was given."""
    import dataclasses

    from advtf.attacks import attack_spec

    if "confidence" not in attack_spec(request.name).options or "confidence" in request.options:
        return request
    return dataclasses.replace(request, options={**request.options, "confidence": XU_CONFIDENCE})


def attack_setup(kw: dict, *, xu_defaults: bool = False):
    """The dataset request, the attack request and the options to record, popped from ``kw``.

    ``xu_defaults``: C&W, EAD and Str get Xu et al. 2019's kappa = 1 unless ``-O confidence`` is
    given; the effective attack options are recorded either way (``attack_options``).
    """
    options = dict(kw)
    data = data_request(kw)
    request = make_attack_request(kw, make_threat(kw))
    if xu_defaults:
        request = xu_confidence(request)
    options["attack_options"] = dict(request.options)
    return options, data, request


def parse_attack_options(kwargs: dict) -> dict:
    """Pops ``-O key=value`` pairs, typed by the attack's defaults (UserError on unknown keys)."""
    from advtf.attacks import coerce_options
    from advtf.errors import UserError

    raw = {}
    for item in kwargs.pop("attack_option", ()) or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"-O {item!r}: write attack options as KEY=VALUE, e.g. -O confidence=10")
        raw[key.strip().replace("-", "_")] = value.strip()
    return coerce_options(kwargs["attack"], raw)


def parse_pairs(items, option: str, example: str = "standard=runs/std") -> dict[str, str]:
    """``{name: value}`` of a repeatable ``NAME=VALUE`` option, in the given order.

    Raises:
        UserError: an item without ``=`` or with an empty side, or a name given twice.
    """
    from advtf.errors import UserError

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name or not value:
            raise UserError(f"{option} {item!r}: write NAME=VALUE, e.g. {option} {example}")
        if name in out:
            raise UserError(f"{option} {name} is given twice; give every {option} a distinct name")
        out[name] = value
    return out


def run_options(*, resumable: bool = False):
    """``--out``, ``--overwrite`` (and ``--resume``), ``--quiet``."""
    opts = [
        click.option("--out", type=click.Path(), required=True,
                     help="Run directory to create (built aside, renamed into place when complete)."),
        click.option("--overwrite", is_flag=True, help="Replace --out if it exists."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
    ]
    if resumable:
        opts.append(click.option("--resume", is_flag=True, help="Continue an interrupted run in --out."))
    return compose(*opts)


def run_job(name: str, request, kw: dict) -> dict:
    """Runs the job ``name`` on ``request`` into ``--out``, with the run options of ``kw``."""
    from advtf.jobs import execute

    results = execute(name, request, out=kw["out"], overwrite=kw.get("overwrite", False),
                      resume=kw.get("resume", False), progress=progress_factory(kw.get("quiet", False)),
                      report=click.echo, cluster_timeout=kw.get("cluster_timeout"))
    if set(results) == {"worker", "workers"}:  # a non-chief worker of a cluster run: the chief wrote --out
        click.echo(f"advtf {name}: worker {results['worker']} of {results['workers']} finished its share; the chief "
                   f"committed {kw['out']}")
        click.get_current_context().exit(0)
    return results


def strategy_option():
    from advtf.distribute import STRATEGIES

    return click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
                        help="tf.distribute strategy: auto picks mirrored on several GPUs, "
                             "multiworker when TF_CONFIG is set.")


def cluster_timeout_option():
    return click.option("--cluster-timeout", type=click.FloatRange(min=0, min_open=True), default=300,
                        show_default=True, metavar="SECONDS",
                        help="Under --strategy multiworker: give up (exit 2, naming the address) when the other "
                             "workers of TF_CONFIG are not reached within this time.")


def progress_factory(quiet: bool):
    """A ``progress(total, desc)`` callable making tqdm bars on stderr (none when quiet)."""
    if quiet:
        return None
    from tqdm.auto import tqdm

    return functools.partial(tqdm, leave=False, dynamic_ncols=True, mininterval=0.5)


def print_summary(title: str, rows: list[tuple[str, object]], out=None) -> None:
    """A short aligned summary on stdout."""
    width = max(len(k) for k, _ in rows)
    click.echo(title)
    for key, value in rows:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        click.echo(f"  {key.ljust(width)}  {text}")
    if out is not None:
        click.echo(f"  {'output'.ljust(width)}  {out}")
