"""Cluster runs on one machine: `advtf robustify` (and `advtf attack`, when it streams through chunks)
as one plain process and as 1 and 2 local workers of a MultiWorkerMirroredStrategy cluster.

Every process gets one TensorFlow thread (``TF_NUM_INTRAOP_THREADS=1``, ``TF_NUM_INTEROP_THREADS=1``),
so 1 worker uses one core and 2 workers two: a fair scaling figure on a 2-core machine. Each
process runs under ``/usr/bin/time -v`` (peak RSS, wall). Reported per configuration:

- ``images_per_second`` from the chief's ``results.json`` (every worker's chunks until the
  barrier, over the time from the first chunk to the barrier);
- ``image_steps_per_second`` (times ``--steps``: gradient evaluations per second);
- ``post_chunk_seconds``: the chief's ``manifest.json`` wall time minus the chunk phase (loading
  the data and model before it, then merging the chunks in order, writing the saved dataset,
  tables and figure after it, and committing): the merge overhead is its growth over one process;
- peak RSS of every process (kB) and its wall time.

Example::

    python benchmarks/bench_cluster.py --images 256 --steps 40 --out benchmarks/results/cluster
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def rss_and_wall(text: str) -> tuple[int | None, float | None]:
    """Peak RSS (kB) and wall seconds from ``/usr/bin/time -v`` output."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    seconds = None
    if wall:
        parts = [float(p) for p in wall.group(1).split(":")]
        seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return (int(rss.group(1)) if rss else None), seconds


def run(command: list[str], out: Path, workers: int | None, chunk: int) -> dict:
    """``advtf COMMAND --out OUT`` as one process (workers None) or as every worker of a local cluster."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": "",
           "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env.pop("TF_CONFIG", None)
    # attack cuts chunks of about job.CHUNK_EXAMPLES (2048) examples: set to --chunk here so small runs have several
    program = ["-c", f"import advtf.jobs.attack as job; job.CHUNK_EXAMPLES = {chunk}; "
               "from advtf.cli.main import main; main()"] if command[0] == "attack" else ["-m", "advtf.cli.main"]
    base = ["/usr/bin/time", "-v", sys.executable, "-P", *program, *command, "--quiet", "--out", str(out)]
    if workers is None:
        strategy = ["--strategy", "default"] if command[0] != "attack" else []  # attack: no --strategy (auto)
        procs = [subprocess.Popen([*base, *strategy], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)]
    else:
        addresses = [f"127.0.0.1:{p}" for p in free_ports(workers)]
        strategy = ["--strategy", "multiworker"] if command[0] != "attack" else []  # TF_CONFIG: auto is multiworker
        procs = [subprocess.Popen([*base, *strategy], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**env, "TF_CONFIG": json.dumps(
                                      {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})})
                 for i in range(workers)]
    start = time.time()
    logs = [p.communicate() for p in procs]
    total = time.time() - start
    for p, (_, err) in zip(procs, logs):
        if p.returncode != 0:
            raise SystemExit(f"{command[0]} failed (exit {p.returncode}):\n{err[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    ips = results.get("images_per_second")
    n = results.get("n") or results.get("n_images")
    return {"processes": len(procs), "images_per_second": ips, "n": n,
            "chief_wall_seconds": manifest["wall_seconds"],
            "post_chunk_seconds": round(manifest["wall_seconds"] - n / ips, 2) if ips and n else None,
            "peak_rss_kb": [rss_and_wall(err)[0] for _, err in logs],
            "process_wall_seconds": [rss_and_wall(err)[1] for _, err in logs],
            "launch_to_exit_seconds": round(total, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="test_cnn", help="advtf model name (random weights: throughput only)")
    parser.add_argument("--width", type=float, default=None)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--attack", action="store_true", help="also time `advtf attack` (PGD, --steps steps)")
    parser.add_argument("--out", default="benchmarks/results/cluster")
    args = parser.parse_args()

    from advtf.data import load_dataset
    from advtf.models import create_model, save_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = load_dataset(args.dataset, train_subset=16, test_subset=16).info
    kw = {"width": args.width} if args.width is not None else {}
    model = save_model(create_model(args.model, input_shape=info.image_shape, num_classes=info.num_classes, seed=0,
                                    **kw), out / "model.keras")
    jobs = {"robustify": ["robustify", str(model), "--dataset", args.dataset, "--test-subset", str(args.images),
                          "--steps", str(args.steps), "--step-size", "0.1", "--chunk-size", str(args.chunk),
                          "--batch-size", str(args.batch)]}
    if args.attack:
        jobs["attack"] = ["attack", str(model), "--dataset", args.dataset, "--test-subset", str(args.images),
                          "--attack", "pgd", "--norm", "l2", "--eps", "0.5", "--steps", str(args.steps),
                          "--batch-size", str(args.batch)]  # chunks: job.CHUNK_EXAMPLES = --chunk (run())
    report = {"model": args.model, "width": args.width, "dataset": args.dataset, "images": args.images,
              "steps": args.steps, "chunk": args.chunk, "batch": args.batch, "runs": {}}
    for name, command in jobs.items():
        for workers in [None, *args.workers]:
            label = f"{name}/" + ("one-process" if workers is None else f"{workers}-worker")
            target = out / label.replace("/", "-")
            if target.exists():
                import shutil

                shutil.rmtree(target)
            row = run(command, target, workers, args.chunk)
            if row["images_per_second"]:
                row["image_steps_per_second"] = round(row["images_per_second"] * args.steps, 1)
            report["runs"][label] = row
            print(label, json.dumps(row), flush=True)
    (out / "cluster.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
