"""The run-directory guarantees: exact-or-refused resume, the lock, safe overwrite, crash safety, signals."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from advtf.errors import ResultError, UserError
from advtf.runs import Interrupted, OutLock, RunDir, interruptible


def _finished(out, **kw):
    with RunDir(out, **kw) as run:
        (run.path / "results.json").write_text("{}")


def _interrupted(out, request):
    with pytest.raises(RuntimeError):
        with RunDir(out, resumable=True, request=request) as run:
            run.store.save_record("chunk_0", {"n": 1})
            raise RuntimeError("killed")


def test_resume_with_other_options_is_refused_naming_them(tmp_path):
    out = tmp_path / "run"
    _interrupted(out, {"steps": 3, "chunk_size": 10, "seed": 0})
    with pytest.raises(UserError, match=r"chunk_size, steps"):
        with RunDir(out, resume=True, resumable=True, request={"steps": 4, "chunk_size": 20, "seed": 0}):
            pass
    assert (tmp_path / "run.partial").exists()  # the refusal keeps the interrupted run
    with RunDir(out, resume=True, resumable=True, request={"steps": 3, "chunk_size": 10, "seed": 0}) as run:
        assert run.store.is_done("chunk_0")


def test_run_control_flags_are_not_part_of_the_request(tmp_path):
    out = tmp_path / "run"
    _interrupted(out, {"steps": 3, "quiet": False, "resume": False, "overwrite": False})
    with RunDir(out, resume=True, resumable=True, options={"steps": 3, "quiet": True, "resume": True}) as run:
        assert run.request == {"steps": 3}


def test_resume_with_changed_inputs_is_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunDir(out, resumable=True, request={"a": 1}) as run:
            run.record_inputs(model={"sha256": "aa"})
            run.store.save_record("chunk_0", {})
            raise RuntimeError
    with pytest.raises(UserError, match="inputs .*model"):
        with RunDir(out, resume=True, resumable=True, request={"a": 1}) as run:
            run.record_inputs(model={"sha256": "bb"})


def test_a_second_process_on_the_same_out_fails_at_once_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from advtf.runs import OutLock
        lock = OutLock({str(out)!r}); lock.acquire(); print("held", flush=True); time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"pid {holder.pid}.*another --out|another advtf process"):
            with RunDir(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "run.lock").exists()  # left behind by the killed holder: stale
    _finished(out)  # taken over
    assert (out / "results.json").exists() and not (tmp_path / "run.lock").exists()


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    with OutLock(tmp_path / "x"):
        with pytest.raises(UserError, match="another advtf process"):
            OutLock(tmp_path / "x").acquire()


def test_overwrite_refuses_a_folder_advtf_did_not_write(tmp_path):
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("precious")
    with pytest.raises(UserError, match="only a run directory advtf wrote"):
        _finished(user, overwrite=True)
    assert (user / "chapter1.tex").read_text() == "precious"


def test_overwrite_refuses_the_commands_own_input(tmp_path):
    model_run = tmp_path / "std"
    _finished(model_run)
    (model_run / "model.keras").write_text("weights")
    for given in (model_run, model_run / "model.keras"):
        with pytest.raises(UserError, match="holds an input"):
            _finished(model_run, overwrite=True, inputs=[given])
    assert (model_run / "model.keras").read_text() == "weights"


def test_overwrite_refuses_the_current_directory(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _finished(run)
    monkeypatch.chdir(run)
    with pytest.raises(UserError, match="current directory"):
        _finished(".", overwrite=True)
    assert (run / "results.json").exists()


def test_overwrite_touches_no_sibling(tmp_path):
    out = tmp_path / "run"
    _finished(out)
    sibling = tmp_path / "run.old"
    sibling.mkdir()
    (sibling / "keep").write_text("x")
    _finished(out, overwrite=True)
    assert (sibling / "keep").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.old"]


def test_a_failure_before_any_finished_work_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError):
        with RunDir(out, resumable=True, request={}):
            raise UserError("bad option")
    assert list(tmp_path.iterdir()) == []


def test_a_result_error_after_finished_work_keeps_nothing_a_user_error_keeps_the_work(tmp_path):
    """A ResultError (say, an attack that never succeeded) is fixed by other options, which could
    never resume the partial; any other failure after finished work keeps it for --resume."""
    for error, kept in ((ResultError("no successful adversarial examples; use a stronger attack"), False),
                        (UserError("the disk is full; free space and --resume"), True)):
        out = tmp_path / type(error).__name__
        with pytest.raises(UserError) as caught:
            with RunDir(out, resumable=True, request={}) as run:
                run.store.save_record("chunk_0", {"n": 1})
                raise error
        assert (tmp_path / f"{out.name}.partial").exists() is kept
        assert (caught.value.advtf_resume is not None) is kept
        assert not (tmp_path / f"{out.name}.lock").exists()


def test_resume_state_survives_a_crash_during_the_final_save(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(OSError):
        with RunDir(out, resumable=True, request={"a": 1}) as run:
            run.store.save_record("chunk_0", {"n": 1})
            raise OSError("disk full while writing the dataset")
    with RunDir(out, resume=True, resumable=True, request={"a": 1}) as run:
        assert run.store.is_done("chunk_0")
        (run.path / "results.json").write_text("{}")
    assert json.loads((out / "manifest.json").read_text())["resumed"] is True


def test_signals_raise_interrupted_with_the_shell_exit_code():
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with pytest.raises(Interrupted) as caught:
            with interruptible():
                os.kill(os.getpid(), signum)
                for _ in range(1000):  # the handler runs at the next bytecode
                    pass
        assert caught.value.exit_code == code
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_an_interrupted_resumable_run_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as caught:
        with interruptible(), RunDir(out, resumable=True, request={}) as run:
            run.store.save_record("chunk_0", {})
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    assert caught.value.advtf_resume.endswith("--resume")
    assert (tmp_path / "run.partial").exists() and not (tmp_path / "run.lock").exists()


def test_a_killed_non_resumable_run_leaves_a_partial_the_next_run_replaces(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "run.partial" / ".advtf").mkdir(parents=True)  # as SIGKILL leaves it: no clean-up ran
    (tmp_path / "run.partial" / ".advtf" / "request.json").write_text('{"request": {}, "inputs": {}}')
    (tmp_path / "run.partial" / "half.png").write_text("x")
    _finished(out)
    assert (out / "results.json").exists() and not (out / "half.png").exists()
    (tmp_path / "other.partial").mkdir()
    (tmp_path / "other.partial" / "notes.txt").write_text("a user's")
    with pytest.raises(UserError, match="not an advtf partial"):
        _finished(tmp_path / "other")
