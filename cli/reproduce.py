"""``advtf reproduce PAPER``: a paper's experiments as one resumable plan of advtf jobs, with a report."""

from __future__ import annotations

import dataclasses
import importlib
import shlex

import click

from advtf.cli.options import cluster_timeout_option, progress_factory

PAPER_CHOICES = ("springer2021", "xu2019", "local-properties", "siddiqui2021", "all")
# Request fields whose option has another name (all jobs, then per job).
ALIASES = {"jit": "xla", "options": "attack_option", "also": "also_attack", "models": "model_paths"}
JOB_ALIASES = {"train": {"model": "model_name", "attack_steps": "steps"}, "retrain": {"attack_steps": "steps"},
               "robustify": {"model": "model_path"}, "relabel": {"model": "model_path"},
               "features": {"test_subset": "images"}}


def _click_command(job: str):
    from advtf.jobs import JOBS

    module, _, attr = JOBS.get(job).cli.partition(":")
    return getattr(importlib.import_module(module), attr)


def _flatten(job: str, request) -> list[tuple[str, object, object]]:
    """``(option name, value, dataclass default)`` of a request, its data and attack options spread out."""
    from advtf.adversarial import AttackRequest
    from advtf.inputs import DataRequest

    out = []
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if isinstance(value, DataRequest):
            out += [(g.name, getattr(value, g.name), g.default) for g in dataclasses.fields(DataRequest)]
        elif isinstance(value, AttackRequest):
            threat = value.threat
            out += [("attack", value.name, None), ("norm", threat.norm, None), ("eps", threat.eps, None),
                    ("steps", threat.steps, None), ("step_size", threat.step_size, None),
                    ("restarts", threat.restarts, 1), ("attack_option", value.options, {}),
                    ("targeted", value.targeted, False),
                    ("target_mode", value.target_mode, "random"), ("target_class", value.target_class, None),
                    ("attack_target", value.attack_target, "label")]
        else:
            out.append((ALIASES.get(f.name, f.name), value, default))
    own = JOB_ALIASES.get(job, {})
    return [(own.get(name, name), value, default) for name, value, default in out]


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def command_line(job: str, request, out) -> tuple[str, list[str]]:
    """The ``advtf`` command line that runs ``request`` into ``out``, and the options it cannot express."""
    command = _click_command(job)
    params = {p.name: p for p in command.params}
    positional, options, missing = [], [], []
    flat = _flatten(job, request)
    if job == "response":  # MODEL then --compare for the others
        models = next(v for n, v, _ in flat if n == "model_paths")
        flat = [(n, (models[:1] if n == "model_paths" else v), d) for n, v, d in flat]
        flat.append(("compare", tuple(models[1:]), ()))
    for name, value, default in flat:
        param = params.get(name)
        if param is None:
            if value != default and value not in (None, (), {}, []):
                missing.append(f"{name}={value!r}")
            continue
        if isinstance(param, click.Argument):
            positional += [str(v) for v in value] if isinstance(value, (tuple, list)) else [str(value)]
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False) and not param.secondary_opts:
            if value:
                options.append(flag)
            continue
        if getattr(param, "is_flag", False):  # --augment/--no-augment
            if value is not None and value != param.default:
                options.append(flag if value else param.secondary_opts[0])
            continue
        if value is None or value in ((), [], {}) or value == param.default or (
                param.default is None and value == default):
            continue  # the command's own default (or one its callback resolves to the request's default)
        if isinstance(value, dict):
            items = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, tuple) and name == "also_attack":
            items = [f"{a.name}:{a.threat.norm}:{a.threat.eps!r}:{a.threat.steps}" for a in value]
        elif isinstance(value, (tuple, list)):
            items = [v for v in value] if param.multiple else [
                ",".join(str(int(v)) if isinstance(v, float) and v.is_integer() else _text(v) for v in value)]
        else:
            items = [value]
        for item in items:
            options += [flag, _text(item)]
    args = ["advtf", job, *positional, *options, "--out", str(out)]
    return " ".join(shlex.quote(a) for a in args), missing


@click.command(context_settings={"max_content_width": 100})
@click.argument("paper", metavar="PAPER", type=click.Choice(PAPER_CHOICES))
@click.option("--budget", type=click.Choice(["smoke", "quick", "paper"]), default="smoke", show_default=True,
              help="smoke: tiny models and few images (CI, minutes); quick: Fashion-MNIST on a CPU (measured on 2 "
                   "busy cores: 7 to 55 minutes per paper, Springer et al. 2021 the longest; --dry-run estimates "
                   "the work); paper: the paper's own settings and datasets.")
@click.option("--out", type=click.Path(), required=True, help="The reproduction directory (steps/, report.html).")
@click.option("--resume", is_flag=True,
              help="Continue a reproduction in --out: finished steps with unchanged settings are kept.")
@click.option("--overwrite", is_flag=True, help="Start the reproduction in --out again.")
@click.option("--dry-run", is_flag=True,
              help="Print every step as its advtf command line with an estimate of gradient passes; run nothing.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where the datasets' files are (passed to every step).")
@click.option("--strategy", type=click.Choice(["auto", "multiworker"]), default="auto", show_default=True,
              help="multiworker (auto when TF_CONFIG is set): this process is one worker of a tf.distribute "
                   "cluster; start the same command on every worker (see below).")
@cluster_timeout_option()
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def reproduce(paper, budget, out, resume, overwrite, dry_run, data_dir, strategy, cluster_timeout, quiet):
    """Reproduce a paper's experiments and judge its claims, in one resumable command.

    PAPER is springer2021 (Springer et al. 2021), xu2019 (Xu et al. 2019), local-properties (the
    local-properties paper, ICLR 2022 submission), siddiqui2021 (Siddiqui & Breuel 2021) or all.
    Each step is an advtf job run into OUT/steps/<id>/ (OUT/<paper>/steps/<id>/ for all); a step
    whose run is finished with the same settings is kept, so --resume continues a killed run and a
    changed preset reruns only the steps it changes. OUT/report.html (self-contained) and
    OUT/report.md set each claim's number in the paper beside ours, with a verdict (holds / weaker /
    does not hold / not measured) from a rule written in the preset before the run. The presets
    are data/presets/<paper>.toml.

    On a cluster (TF_CONFIG set on every worker, README "Cluster runs"), every worker runs the
    same command with an OUT on a filesystem they share. The workers walk the plan together: a
    step whose command is a cluster job (robustify, relabel, evaluate, robust-table,
    transfer-eval, retrain sweeps and the analyses the README lists) shares its chunks or cells;
    training and the other steps run on the chief while the others wait. The chief alone writes
    OUT and the report. If a worker dies the others stop (exit 2); run every worker again with
    --resume: finished steps are kept and the interrupted step continues from its finished chunks.

    \b
    Examples:
      advtf reproduce springer2021 --budget smoke --out runs/repro-springer
      advtf reproduce all --budget quick --out runs/repro --resume      # after an interruption
      advtf reproduce xu2019 --budget paper --out runs/xu-paper --dry-run
      TF_CONFIG='{"cluster": {"worker": ["h1:12345", "h2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
          advtf reproduce springer2021 --budget quick --out /shared/repro   # index 1 on h2
    """
    from advtf.jobs.reproduce import ReproduceRequest, dry_run_rows, plan_for, reproduce as run_reproduction
    from advtf.jobs.reproduce.estimate import human

    request = ReproduceRequest(paper=paper, budget=budget, data_dir=data_dir)
    if dry_run:
        plans = plan_for(request, out)
        rows = dry_run_rows(plans)
        known = [r["gradient_passes"] for r in rows if r["gradient_passes"] is not None]
        for plan in plans:
            click.echo(f"# {plan.preset.title}, budget {budget}: {len(plan.steps)} steps")
            for k, step in enumerate(plan.steps, 1):
                row = next(r for r in rows if r["paper"] == plan.paper and r["step"] == step.id)
                line, missing = command_line(step.job, step.request, step.out)
                click.echo(f"# step {k} of {len(plan.steps)}: {step.id} ({step.what}); "
                           f"~{human(row['gradient_passes'])} gradient passes")
                click.echo(line + (f"   # also: {', '.join(missing)}" if missing else ""))
        click.echo(f"# total: ~{human(sum(known))} gradient passes"
                   + ("" if len(known) == len(rows) else " (steps of unknown size left out)"))
        return
    claims = run_reproduction(request, out, resume=resume, overwrite=overwrite, progress=progress_factory(quiet),
                              report=click.echo, strategy=strategy, cluster_timeout=cluster_timeout)
    if set(claims) == {"worker", "workers"}:  # a non-chief worker of a cluster: the chief wrote the report
        click.echo(f"advtf reproduce {paper}: worker {claims['worker']} of {claims['workers']} finished its share; "
                   f"the chief wrote {out}/report.html")
        return
    click.echo(f"advtf reproduce {paper} (budget {budget})")
    for name, outcomes in claims.items():
        width = max((len(o["id"]) for o in outcomes), default=0)
        click.echo(f"  {name}")
        for o in outcomes:
            ours = "n/a" if o["value"] is None else f"{o['value']:.4g}"
            click.echo(f"    {o['id'].ljust(width)}  {o['verdict']:<14}  ours {ours:<9}  paper: {o['paper_value']}")
    click.echo(f"  report: {out}/report.html")
