"""A complete ``advtf evaluate`` run."""

from __future__ import annotations

from advtf.attacks import Threat, check_attack
from advtf.inputs import DataRequest, load_trained_model, model_fingerprint
from advtf.runs import RunDir, write_json, write_table


def run_evaluation(model_path, data: DataRequest, threat: Threat, run: RunDir, *, attack: str = "pgd",
                   options: dict | None = None, batch_size: int = 256, strategy: str = "auto", jit: bool = False,
                   progress=None) -> dict:
    """Evaluates a saved model on ``data``'s test split and writes ``results.json``.

    ``results.json`` keys: ``clean_accuracy``, ``robust_accuracy``, ``n``, ``attack``,
    ``options`` (the attack's own), ``threat``, ``dataset``, ``model``.
    """
    from advtf.data import make_batches
    from advtf.evaluation import evaluate
    from advtf.distribute.strategy import make_strategy

    check_attack(attack, threat.norm, options)
    splits = data.load()
    strategy = make_strategy(strategy)
    with strategy.scope():
        model = load_trained_model(model_path, splits.info.image_shape)
    run.inputs.update(dataset=splits.fingerprint, model=model_fingerprint(model_path))
    bar = progress(total=None, desc=f"{attack} on test") if progress else None
    result = evaluate(model, make_batches(splits.test, batch_size, training=False), threat=threat, attack=attack,
                      strategy=strategy, seed=data.seed, progress=bar, jit=jit, options=options)
    if bar is not None:
        bar.close()
    results = {**result, "attack": attack, "options": dict(options or {}), "threat": threat.to_json(), "dataset": splits.info.name,
               "model": str(model_path)}
    write_json(run.path / "results.json", results)
    write_table(run.path, "results", [{"model": str(model_path), "dataset": splits.info.name, "attack": attack,
                                        "norm": threat.norm, "eps": threat.eps, "steps": threat.steps,
                                        "restarts": threat.restarts, "n": result["n"],
                                        "clean_accuracy": result["clean_accuracy"],
                                        "robust_accuracy": result["robust_accuracy"]}])
    return results
