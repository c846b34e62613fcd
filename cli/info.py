"""``advtf datasets``, ``advtf models``, ``advtf attacks``, ``advtf env``: what is registered and where."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Also look here for data.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def datasets(data_dir, as_json):
    """List registered datasets, whether each is available offline here, and where.

    \b
    Example:
      advtf datasets --data-dir ~/tensorflow_datasets
    """
    from advtf.data import list_datasets

    rows = list_datasets(data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "yes" if row["available"] else "no "
        click.echo(f"{row['name']:<14} {mark}  {row['description']}")
        click.echo(f"{'':<14}      {row['where']}")


@click.command()
@click.argument("pattern", default="*")
@click.option("--params/--no-params", default=True, show_default=True,
              help="Count parameters at width 1 (builds each model once; victims take a few seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(pattern, params, as_json):
    """List registered models matching PATTERN (e.g. 'resnet*'), with input sizes and parameter counts.

    \b
    Example:
      advtf models 'resnet*'
    """
    from advtf.models import count_params, create_model, list_models

    rows = []
    for spec in list_models(pattern):
        row = {"name": spec.name, "family": spec.family, "input": "x".join(map(str, spec.default_input_shape)),
               "min_input": spec.min_input_size, "description": spec.description}
        if params:
            model = create_model(spec.name, input_shape=spec.default_input_shape, num_classes=10)
            row["params_10_classes"] = count_params(model)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        count = f"{row['params_10_classes']:>11,}" if params else ""
        click.echo(f"{row['name']:<14} {row['input']:<10} {count}  {row['description']}")


@click.command()
def env():
    """Versions, devices and the strategy `--strategy auto` would pick, for bug reports.

    \b
    Example:
      advtf env
    """
    import tensorflow as tf

    from advtf.runs import package_versions
    from advtf.distribute.strategy import auto_choice

    for name, version in package_versions().items():
        click.echo(f"{name:<20} {version}")
    devices = [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()]
    click.echo(f"{'devices':<20} {', '.join(devices)}")
    click.echo(f"{'built with CUDA':<20} {tf.test.is_built_with_cuda()}")
    click.echo(f"{'strategy auto':<20} {auto_choice()}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def attacks(as_json):
    """List registered attacks: norms, default steps and their own -O options with defaults.

    \b
    Example:
      advtf attacks
      advtf attack runs/std --attack cw --norm l2 --eps 3 -O confidence=5 --out runs/cw
    """
    from advtf.attacks import ATTACKS

    rows = [{"name": s.name, "norms": list(s.norms), "default_steps": s.default_steps, "options": s.options,
             "summary": s.summary} for s in ATTACKS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<16} {'/'.join(row['norms']):<10} steps {row['default_steps']:<4} {row['summary']}")
        if row["options"]:
            click.echo(f"{'':<16} -O " + "  ".join(f"{k}={v}" for k, v in row["options"].items()))
