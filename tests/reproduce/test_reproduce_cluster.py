"""``advtf reproduce`` on a cluster: the workers walk the plan in lockstep (a 2-member Cluster in threads).

The chief decides which steps are finished and alone writes DIR; a cluster job's chunks are shared;
any other step runs on the chief while the worker waits. A slow test runs two real worker processes.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import advtf.jobs
import fakejob
import fakeshared
from advtf.errors import UserError
from advtf.jobs.reproduce import ReproduceRequest, reproduce
from advtf.runs.cluster import Cluster

PRESET = """
paper = "fake"
title = "A fake paper"

[vars.smoke]
[vars.paper]

[[steps]]
id = "a"
job = "fake"
options = { value = 3 }

[[steps]]
id = "s"
job = "shared"
options = { value = 2, n = 8, sources = ["@a"] }

[[steps]]
id = "c"
job = "fake"
options = { value = 5 }

[[steps]]
id = "t"
job = "shared"
options = { value = 1, n = 6, sources = ["@s", "@c"] }

[[claims]]
id = "t-total"
statement = "t adds everything up."
paper_value = "70"
where = "Table 1"
measure = "t:total - 70"
holds = ">= 0"
"""


class Exchange:
    """A gather between threads, round by round (what MultiWorkerMirroredStrategy's all-reduce does).

    A member that never arrives breaks the round after ``timeout``; :meth:`lose` breaks the rounds
    still waiting at once (what TensorFlow's heartbeats do when a worker process dies), never a
    round every member already reached.
    """

    def __init__(self, members: int, timeout: float):
        self.members, self.timeout = members, timeout
        self.cv = threading.Condition()
        self.rows: dict[int, list[int]] = {}
        self.result: list[list[int]] = []
        self.round, self.dead = 0, False

    def gather(self, index: int, values) -> list[list[int]]:
        with self.cv:
            if self.dead:
                raise threading.BrokenBarrierError
            mine = self.round
            self.rows[index] = list(values)
            if len(self.rows) == self.members:
                self.result, self.rows = [self.rows[w] for w in range(self.members)], {}
                self.round += 1
                self.cv.notify_all()
            elif not self.cv.wait_for(lambda: self.round != mine or self.dead, self.timeout) or self.round == mine:
                self.dead = True
                self.cv.notify_all()
                raise threading.BrokenBarrierError
            return [list(r) for r in self.result]

    def lose(self) -> None:
        with self.cv:
            self.dead = True
            self.cv.notify_all()


def thread_clusters(workers: int, timeout: float = 120) -> list[Cluster]:
    """One :class:`Cluster` per member of an :class:`Exchange`; ``cluster.lost()`` is a member dying."""
    exchange = Exchange(workers, timeout)
    clusters = [Cluster(w, workers, lambda values, w=w: exchange.gather(w, values),
                        [f"127.0.0.1:{9000 + w}" for w in range(workers)]) for w in range(workers)]
    for c in clusters:
        c.lost = exchange.lose
    return clusters


@pytest.fixture
def jobs_table(monkeypatch):
    """JOBS with ``fake`` (no cluster job) and ``shared`` (a cluster job) registered; call logs cleared."""
    table = advtf.jobs.JOBS.copy()
    monkeypatch.setattr(advtf.jobs, "JOBS", table)
    advtf.jobs.register("fake", "A fake job.", cli="fakejob:run", module="fakejob", resumable=True)
    advtf.jobs.register("shared", "A fake cluster job.", cli="fakeshared:run", module="fakeshared", resumable=True,
                        cluster=True)
    for log in (fakejob.CALLS, fakejob.FAIL, fakeshared.CHUNKS, fakeshared.FAIL):
        log.clear()
    yield
    for log in (fakejob.CALLS, fakejob.FAIL, fakeshared.CHUNKS, fakeshared.FAIL):
        log.clear()


@pytest.fixture
def request_(tmp_path) -> ReproduceRequest:
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "fake.toml").write_text(textwrap.dedent(PRESET))
    return ReproduceRequest(paper="fake", budget="smoke", preset_dir=str(folder))


class Writes:
    """Every file or directory a thread creates, changes, renames or removes: ``(event, path)`` (``sys.addaudithook``)."""

    EVENTS = {"open", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree",
              "os.truncate", "os.symlink", "os.link"}
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    active: "Writes | None" = None
    installed = False

    def __init__(self):
        self.by_thread: dict[str, list[str]] = {}

    def __enter__(self):
        if not Writes.installed:
            # cannot be removed: it does nothing while no Writes is active (bound to the class, which
            # outlives the module's globals at interpreter shutdown)
            sys.addaudithook(lambda event, args, cls=Writes: cls._hook(event, args, cls))
            Writes.installed = True
        Writes.active = self
        return self

    def __exit__(self, *exc):
        Writes.active = None

    @staticmethod
    def _hook(event, args, cls):
        self = cls.active
        if self is None or event not in cls.EVENTS:
            return
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(m in mode for m in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & cls.WRITE_FLAGS)
            if not writing:
                return
            paths = [path]
        else:
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))][:2]
        for p in paths:
            if isinstance(p, int):
                continue
            self.by_thread.setdefault(threading.current_thread().name, []).append(
                (event, os.path.abspath(os.fsdecode(p))))


def run_workers(request, out, clusters, *, resume=False):
    """Runs :func:`reproduce` as every member of ``clusters`` (one thread each).

    Returns per member: the result or exception, the steps it executed, and its report lines.
    """
    results, executed, said = [None] * len(clusters), [[] for _ in clusters], [[] for _ in clusters]

    def member(w):
        def execute(job, step_request, **kw):
            executed[w].append(Path(kw["out"]).name)
            return advtf.jobs.execute(job, step_request, **kw)
        try:
            results[w] = reproduce(request, out, resume=resume, cluster=clusters[w], execute=execute,
                                   report=said[w].append)
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            results[w] = e
            clusters[w].lost()  # the thread "dies": the others' next exchange fails

    threads = [threading.Thread(target=member, args=(w,), name=f"member-{w}") for w in range(len(clusters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    return results, executed, said


def test_workers_walk_the_plan_in_lockstep_and_only_the_chief_writes_dir(jobs_table, request_, tmp_path):
    out = tmp_path / "R"
    with Writes() as writes:
        (claims, place), executed, said = run_workers(request_, out, thread_clusters(2))
    assert place == {"worker": 1, "workers": 2}, place
    assert [c["verdict"] for c in claims["fake"]] == ["holds"], claims
    # the cluster jobs ran on both members, the other steps on the chief alone
    assert executed == [["a", "s", "c", "t"], ["s", "t"]]
    assert sorted(fakejob.CALLS) == ["a", "c"]
    assert sorted(fakeshared.CHUNKS) == sorted([(c % 2, "s", c) for c in range(4)] + [(c % 2, "t", c) for c in range(3)])
    # the totals, by hand: a = 3; s = 2 * (0 + ... + 7) + a; c = 5; t = 0 + ... + 5 + s + c
    totals = {sid: json.loads((out / "steps" / sid / "results.json").read_text())["total"] for sid in "asct"}
    assert totals == {"a": 3.0, "s": 59.0, "c": 5.0, "t": 79.0}
    assert sorted(p.name for p in (out / "state").iterdir()) == ["a.json", "c.json", "s.json", "t.json"]
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert not list(out.glob("steps/*.partial")) and not (tmp_path / "R.lock").exists()
    # the worker wrote only its own resume stores, inside the shared steps' .partial directories
    stores = [str(out / "steps" / f"{sid}.partial" / "resume" / "worker-1") for sid in "st"]
    partials = [str(out / "steps" / f"{sid}.partial") for sid in "st"]

    def allowed(event, path):  # in its store, or a parent of it made as by mkdir -p
        return any(path == s or path.startswith(s + os.sep) for s in stores) or event == "os.mkdir" and any(
            path.startswith(p) and s.startswith(path + os.sep) for p, s in zip(partials, stores))

    theirs = [(e, p) for e, p in writes.by_thread.get("member-1", []) if p.startswith(str(tmp_path))]
    assert theirs and all(allowed(e, p) for e, p in theirs), theirs
    assert any(e == "os.rename" or e == "os.replace" for e, _ in theirs)  # the hook sees its atomic writes
    assert any(p == str(out / "report.md") for _, p in writes.by_thread["member-0"])
    # the same steps, in the same order, on both members
    steps = [[line.split(" (")[0] for line in lines if line.startswith("step ")] for lines in said]
    assert steps[0] == steps[1] == [f"step {k} of 4: {sid}" for k, sid in enumerate("asct", 1)]

    # a rerun keeps every step, on both members
    (claims, place), executed, said = run_workers(request_, out, thread_clusters(2), resume=True)
    assert place == {"worker": 1, "workers": 2} and claims["fake"][0]["verdict"] == "holds"
    assert executed == [[], []]
    for lines in said:
        assert [line for line in lines if line.startswith("step ")] == [
            f"step {k} of 4: {sid} (kept: finished with the same settings)" for k, sid in enumerate("asct", 1)]


def test_a_worker_lost_in_a_shared_step_stops_both_and_resume_continues_from_the_chunks(jobs_table, request_,
                                                                                        tmp_path):
    out = tmp_path / "R"
    fakeshared.FAIL.add((1, 3))  # worker 1 dies at its second chunk of s (chunk 1 stored)
    (chief, worker), executed, _ = run_workers(request_, out, thread_clusters(2))
    assert isinstance(worker, RuntimeError) and "died at chunk 3" in str(worker)
    assert isinstance(chief, threading.BrokenBarrierError), chief  # the chief's next exchange fails
    assert executed == [["a", "s"], ["s"]]
    partial = out / "steps" / "s.partial" / "resume"
    stored = {w: json.loads((partial / f"worker-{w}" / "done.json").read_text())["done"] for w in (0, 1)}
    assert stored == {0: ["chunk_00000", "chunk_00002"], 1: ["chunk_00001"]}
    fakeshared.FAIL.clear()
    fakeshared.CHUNKS.clear()
    (claims, place), executed, said = run_workers(request_, out, thread_clusters(2), resume=True)
    assert place == {"worker": 1, "workers": 2} and claims["fake"][0]["verdict"] == "holds"
    assert executed == [["s", "c", "t"], ["s", "t"]]  # a kept; s resumed
    assert [c for c in fakeshared.CHUNKS if c[1] == "s"] == [(1, "s", 3)]  # only the chunk nobody finished
    assert json.loads((out / "steps" / "s" / "results.json").read_text()) == {"total": 59.0, "resumed_chunks": 3}
    for lines in said:  # the chief's word, said by both
        assert "step 2 of 4: s (shared, resumed, every worker)" in lines, lines


def test_a_chief_step_that_fails_stops_the_waiting_worker_on_one_line(jobs_table, request_, tmp_path):
    out = tmp_path / "R"
    fakejob.FAIL.add(5)  # step c (chief only) raises
    (chief, worker), executed, _ = run_workers(request_, out, thread_clusters(2))
    assert isinstance(chief, RuntimeError) and "killed at value 5" in str(chief)
    assert isinstance(worker, UserError) and "stopped at step c" in str(worker) and "--resume" in str(worker)
    assert "\n" not in str(worker) and executed == [["a", "s", "c"], ["s"]]
    fakejob.FAIL.clear()
    (claims, _), executed, _ = run_workers(request_, out, thread_clusters(2), resume=True)
    assert executed == [["c", "t"], ["t"]] and claims["fake"][0]["verdict"] == "holds"


def test_a_worker_started_with_another_command_is_refused_on_every_worker(jobs_table, request_, tmp_path):
    out = tmp_path / "R"
    clusters = thread_clusters(2)
    results = [None, None]

    def member(w, **kw):
        try:
            results[w] = reproduce(request_, out, cluster=clusters[w], **kw)
        except BaseException as e:  # noqa: BLE001
            results[w] = e

    threads = [threading.Thread(target=member, args=(0,)), threading.Thread(target=member, args=(1,),
                                                                             kwargs={"overwrite": True})]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in results:
        assert isinstance(r, UserError) and "worker(s) 1 were started with another reproduction" in str(r), r
    assert not out.exists() and fakejob.CALLS == []


def test_reproduce_refuses_a_single_machine_strategy(request_, tmp_path):
    with pytest.raises(UserError, match="--strategy auto or multiworker"):
        reproduce(request_, tmp_path / "R", strategy="mirrored")


# -- two real worker processes -------------------------------------------------------------------------------------
# A tiny "springer2021" preset (the CLI takes only the papers' names): a training step (on the chief), a
# robustify step (a cluster job: 4 chunks shared) and kernels (on the chief); digits, seconds per step.
TINY = """
paper = "springer2021"
title = "Springer et al. 2021"

[vars.smoke]
data = { dataset = "digits", train_subset = 64, test_subset = 32 }

[[steps]]
id = "std"
job = "train"
options = { model = "test_cnn", epochs = 1, batch_size = 32, optimizer = "adam", lr = 0.01, eval_steps = 1 }
smoke = { data = "$data" }

[[steps]]
id = "r0"
job = "robustify"
options = { model = "@std", steps = 2, step_size = 0.1, batch_size = 8, chunk_size = 8 }
smoke = { data = "$data" }

[[steps]]
id = "kernels"
job = "kernels"
options = { models = ["@std"] }

[[claims]]
id = "trained"
statement = "the model learns something."
paper_value = "-"
where = "nowhere"
measure = "std:clean_accuracy"
holds = ">= 0"
"""

# one thread per process: the two workers share the machine's cores fairly; "-P": the installed advtf
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": "",
       "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
ENV.pop("TF_CONFIG", None)


def free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def advtf_with_presets(folder: Path) -> list[str]:
    """``advtf`` reading its presets from ``folder``."""
    return [sys.executable, "-P", "-c", "import pathlib, advtf.jobs.reproduce.preset as p; "
            f"p.preset_directory = lambda: pathlib.Path({str(folder)!r}); from advtf.cli.main import main; main()"]


@pytest.mark.slow
def test_two_worker_processes_reproduce_with_the_report_by_the_chief_and_a_resume_keeps_every_step(tmp_path):
    import subprocess

    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "springer2021.toml").write_text(textwrap.dedent(TINY))
    out = tmp_path / "R"
    command = [*advtf_with_presets(folder), "reproduce", "springer2021", "--budget", "smoke", "--out", str(out),
               "--quiet", "--cluster-timeout", "120"]
    addresses = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={
        **ENV, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    try:
        (chief_out, chief_err), (worker_out, worker_err) = (p.communicate(timeout=600) for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 0, chief_err[-3000:]
    assert procs[1].returncode == 0, worker_err[-3000:]
    for text in (chief_out, worker_out):  # the same steps on both, each where it ran
        assert "step 1 of 3: std (train, on the chief)" in text
        assert "step 2 of 3: r0 (robustify, every worker)" in text
        assert "step 3 of 3: kernels (kernels, on the chief)" in text
    assert "worker 1 of 2 finished its share; the chief wrote" in worker_out, worker_out
    assert "trained" in chief_out and "report:" in chief_out
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert sorted(p.name for p in (out / "state").iterdir()) == ["kernels.json", "r0.json", "std.json"]
    robustified = json.loads((out / "steps" / "r0" / "results.json").read_text())
    assert robustified["resumed_chunks"] == 0 and not list(out.glob("steps/*.partial"))
    assert not (tmp_path / "R.lock").exists()
    # one process, no cluster: every step is kept
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    kept = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert kept == [f"step {k} of 3: {sid} (kept: finished with the same settings)"
                    for k, sid in enumerate(("std", "r0", "kernels"), 1)], done.stdout
    # and a reproduction in one process has the same numbers, step by step
    alone = tmp_path / "one"
    done = subprocess.run([*command[:command.index("--out") + 1], str(alone), "--quiet"], capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    timing = {"wall_seconds", "seconds", "images_per_second", "examples_per_second"}
    for sid in ("std", "r0", "kernels"):  # (the paths of the other reproduction's steps put in)
        a, b = (json.loads((d / "steps" / sid / "results.json").read_text().replace(str(d), "DIR"))
                for d in (out, alone))
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}, sid
    assert (out / "steps" / "r0" / "examples.csv").read_bytes() == (alone / "steps" / "r0" / "examples.csv").read_bytes()


JOIN_TWICE = """
import json
from advtf.distribute.cluster import connect
from advtf.distribute.strategy import make_strategy
s1, c1 = connect(60)
s2, c2 = connect(60)
print(json.dumps({"same": s1 is s2 and c1 is c2, "train": make_strategy("multiworker") is s1,
                  "auto": make_strategy("auto") is s1, "gather": c2.gather([7])}))
"""


def test_a_process_joins_its_cluster_once_and_every_step_reuses_it():
    import subprocess

    config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_ports(1)[0]}"]}, "task": {"type": "worker",
                                                                                           "index": 0}})
    done = subprocess.run([sys.executable, "-P", "-c", JOIN_TWICE], capture_output=True, text=True,
                          env={**ENV, "TF_CONFIG": config}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"same": True, "train": True, "auto": True, "gather": [[7]]}


def run_cluster(commands: list[list[str]], timeout: int = 600):
    """Runs ``commands[i]`` as worker i of a local cluster; returns [(returncode, stdout, stderr)]."""
    import subprocess

    addresses = [f"127.0.0.1:{p}" for p in free_ports(len(commands))]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={
        **ENV, "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})})
        for i, c in enumerate(commands)]
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
        return [(p.returncode, *o) for p, o in zip(procs, outputs)]
    finally:
        for p in procs:
            p.kill()


@pytest.mark.slow
def test_a_worker_killed_in_a_shared_step_stops_the_chief_and_every_worker_resumes_from_the_chunks(tmp_path):
    import signal

    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "springer2021.toml").write_text(textwrap.dedent(TINY))
    out = tmp_path / "R"
    args = ["reproduce", "springer2021", "--budget", "smoke", "--out", str(out), "--quiet", "--cluster-timeout", "120"]
    # worker 1 owns chunks 1 and 3 of robustify's 4: it dies (SIGKILL) saving chunk 3, after chunk 1 is stored
    dying = [sys.executable, "-P", "-c", "import os, signal, pathlib, advtf.jobs.reproduce.preset as p; "
             f"p.preset_directory = lambda: pathlib.Path({str(folder)!r}); "
             "import advtf.runs.chunks as c; real = c.ChunkStore.save; calls = [0]\n"
             "def save(*a, **k):\n    calls[0] += 1\n    if calls[0] > 1: os.kill(os.getpid(), signal.SIGKILL)\n"
             "    return real(*a, **k)\n"
             "c.ChunkStore.save = save\nfrom advtf.cli.main import main; main()"]
    (chief_rc, _, chief_err), (worker_rc, _, _) = run_cluster([[*advtf_with_presets(folder), *args], [*dying, *args]])
    assert worker_rc == -signal.SIGKILL
    assert chief_rc == 2, chief_err[-3000:]
    lines = [line for line in chief_err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "lost worker 1" in lines[0] and "--resume" in lines[0], chief_err[-2000:]
    assert sorted(p.name for p in (out / "state").iterdir()) == ["std.json"]
    partial = out / "steps" / "r0.partial" / "resume"
    stored = {w: json.loads((partial / f"worker-{w}" / "done.json").read_text())["done"] for w in (0, 1)}
    assert stored == {0: ["chunk_00000", "chunk_00002"], 1: ["chunk_00001"]}
    model = (out / "steps" / "std" / "model.keras").stat().st_mtime_ns

    runs = run_cluster([[*advtf_with_presets(folder), *args, "--resume"]] * 2)
    for rc, stdout, stderr in runs:
        assert rc == 0, stderr[-3000:]
        assert "step 1 of 3: std (kept: finished with the same settings)" in stdout
        assert "step 2 of 3: r0 (robustify, resumed, every worker)" in stdout
    assert json.loads((out / "steps" / "r0" / "results.json").read_text())["resumed_chunks"] == 3
    assert (out / "steps" / "std" / "model.keras").stat().st_mtime_ns == model
    assert (out / "report.html").is_file() and not list(out.glob("steps/*.partial"))
