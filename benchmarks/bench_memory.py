"""Peak resident memory of ``advtf attack`` and ``advtf robustify`` as the split grows (issue 16).

Goal: peak RSS grows by less than 10% from 10k to 200k images, i.e. no job holds the split in RAM.
Each run is a fresh child process of the CLI; its peak RSS is the ``ru_maxrss`` that ``os.wait4``
returns for that child alone (resident pages, file-backed ones included). Cases:

- ``fmnist-10k``, ``fmnist-60k``: the Fashion-MNIST train split (``--train-subset 10000`` / all);
- ``gen-10k``, ``gen-200k``: a generated saved dataset of 200k 28x28x1 images (random pixels
  k/255, random labels), written once with ``advtf.data.write_saved_dataset`` into ``--work``
  (``gen-10k`` takes ``--train-subset 10000`` of it).

The model is a tiny untrained CNN (``test_cnn``), the attack PGD-1 (L2, eps 0.5), robustify 1 step:
the figures measure memory, not time. ``--source DIR`` runs the CLI of another checkout (e.g. a
``git worktree`` of an older commit) with this script's Python, for before/after figures.

Besides the peak, the child's ``VmRSS`` is sampled every 0.25 s and split by phase: before the
output's ``<split>/`` directory (the saved dataset) appears (``work``), and from then on (``save``). That
split is how the growth of ``attack`` was traced to ``tf.data.Dataset.save``'s writer queue.

Example::

    python benchmarks/bench_memory.py --work /tmp/advtf-mem --json benchmarks/results/memory_after.json
    git worktree add /tmp/advtf-before HEAD~3
    python benchmarks/bench_memory.py --source /tmp/advtf-before --work /tmp/advtf-mem \\
        --json benchmarks/results/memory_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = {"fmnist-10k": ("fashion_mnist", 10_000), "fmnist-60k": ("fashion_mnist", None),
         "gen-10k": ("GEN", 10_000), "gen-200k": ("GEN", None)}
JOBS = {"attack": ["attack", "--split", "train", "--attack", "pgd", "--norm", "l2", "--eps", "0.5", "--steps", "1"],
        "robustify": ["robustify", "--split", "train", "--steps", "1"]}

# Runs `advtf.cli.main` of checkout SOURCE (argv[1]): its advtf first on sys.path, its cli/ as advtf.cli
# (an editable install of another checkout would otherwise supply advtf.cli).
DRIVER = """
import importlib.util, sys
src = sys.argv[1]
sys.path.insert(0, src)
import advtf
assert advtf.__file__.startswith(src), advtf.__file__
spec = importlib.util.spec_from_file_location("advtf.cli", src + "/cli/__init__.py",
                                              submodule_search_locations=[src + "/cli"])
cli = importlib.util.module_from_spec(spec)
sys.modules["advtf.cli"] = cli
spec.loader.exec_module(cli)
advtf.cli = cli
from advtf.cli.main import main
main(sys.argv[2:])
"""


def generated_dataset(path: Path, n: int, seed: int = 0) -> Path:
    """A saved dataset of ``n`` random 28x28x1 images (pixels k/255) with random labels, streamed."""
    if (path / "manifest.json").exists():
        return path
    import numpy as np
    import tensorflow as tf

    from advtf.data import DatasetInfo, write_saved_dataset

    def batches():
        rng = np.random.default_rng(seed)
        for start in range(0, n, 1000):
            m = min(1000, n - start)
            yield {"image": rng.integers(0, 256, (m, 28, 28, 1), dtype=np.uint8).astype(np.float32) / np.float32(255),
                   "label": rng.integers(0, 10, m).astype(np.int32)}

    spec = {"image": tf.TensorSpec((None, 28, 28, 1), tf.float32), "label": tf.TensorSpec((None,), tf.int32)}
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec).unbatch()
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    info = DatasetInfo(name="generated", num_classes=10, class_names=tuple(f"c{k}" for k in range(10)),
                       image_shape=(28, 28, 1), mean=(0.5,), std=(0.29,), natural_images=False, source="generated")
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_saved_dataset(tmp, {"train": ds}, kind="generated", info=info, source={"dataset": None},
                        parameters={"n": n, "seed": seed, "pixels": "uniform k/255", "labels": "uniform"})
    tmp.rename(path)
    return path


def tiny_model(path: Path) -> Path:
    if not path.exists():
        from advtf.models import create_model, save_model

        save_model(create_model("test_cnn", input_shape=(28, 28, 1), num_classes=10, seed=0), path)
    return path


def _vm_rss(pid: int) -> int:
    """The resident memory of ``pid`` now, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def peak_rss(args: list[str], source: Path, log: Path, save_dir: Path | None = None) -> tuple[int, float, int, dict]:
    """Runs the CLI of ``source`` with ``args``; returns (peak RSS in bytes, seconds, exit code, phases).

    ``phases`` holds the largest sampled RSS before ``save_dir`` first exists (``work``) and from then on
    (``save``: the saved dataset, then the tables and figures).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
    start, phases, saving = time.time(), {"work": 0, "save": 0}, False
    with open(log, "w") as err:
        child = subprocess.Popen([sys.executable, "-P", "-c", DRIVER, str(source), *args], env=env,
                                 stdout=err, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            saving = saving or (save_dir is not None and save_dir.exists())  # and after: tables, figures
            phase = "save" if saving else "work"
            phases[phase] = max(phases[phase], _vm_rss(child.pid))
            time.sleep(0.25)
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, time.time() - start, child.returncode, phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/advtf-bench-memory"),
                        help="where the model, the generated set and the runs go")
    parser.add_argument("--source", type=Path, default=REPO, help="checkout whose CLI runs (default: this one)")
    parser.add_argument("--jobs", default="attack,robustify")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--generated", type=int, default=200_000, help="images of the generated saved dataset")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = tiny_model(args.work / "tiny.keras")
    cases = args.cases.split(",")
    generated = generated_dataset(args.work / f"generated-{args.generated}", args.generated) \
        if any(CASES[c][0] == "GEN" for c in cases) else None
    rows = []
    print(f"source {args.source}  (python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f})")
    print(f"{'job':10s} {'case':12s} {'images':>8s} {'peak RSS MiB':>13s} {'work MiB':>8s} {'save MiB':>8s} "
          f"{'seconds':>8s}")
    for job in args.jobs.split(","):
        for case in cases:
            dataset, subset = CASES[case]
            dataset = str(generated) if dataset == "GEN" else dataset
            out = args.work / "runs" / f"{job}-{case}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
            cli = [*JOBS[job][:1], str(model), *JOBS[job][1:], "--dataset", dataset, "--quiet", "--out", str(out)]
            if subset:
                cli += ["--train-subset", str(subset)]
            rss, seconds, code, phases = peak_rss(cli, args.source, args.work / f"{job}-{case}.log",
                                                  out.with_name(out.name + ".partial") / "train")
            images = subset or (60_000 if dataset == "fashion_mnist" else args.generated)
            rows.append({"job": job, "case": case, "images": images, "peak_rss_bytes": rss,
                         "sampled_rss_bytes": phases, "seconds": round(seconds, 1), "exit_code": code, "args": cli})
            note = "" if code == 0 else f"  FAILED (exit {code}, see {args.work / f'{job}-{case}.log'})"
            print(f"{job:10s} {case:12s} {images:8d} {rss / 2**20:13.0f} {phases['work'] / 2**20:8.0f} "
                  f"{phases['save'] / 2**20:8.0f} {seconds:8.1f}{note}", flush=True)
            shutil.rmtree(out, ignore_errors=True)  # the 200k outputs take GBs
    for job in args.jobs.split(","):
        done = {r["case"]: r["peak_rss_bytes"] for r in rows if r["job"] == job and r["exit_code"] == 0}
        small = done.get("fmnist-10k") or done.get("gen-10k")
        if small and "gen-200k" in done:
            growth = done["gen-200k"] / small - 1
            print(f"{job}: peak RSS 10k -> 200k {100 * growth:+.1f}% (goal < +10%)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"source": str(args.source), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
