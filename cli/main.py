"""The ``advtf`` command group: lazy sub-commands and the error policy.

User errors (``advtf.errors.UserError``) print one line and exit 2; bugs exit 1 with a
hint; ``--debug`` (anywhere on the command line) shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

# Quiet TensorFlow's C++ start-up chatter (set before TensorFlow is first imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from advtf.jobs import JOBS  # the one command table (light: TensorFlow loads when a command runs)


class LazyGroup(click.Group):
    """Imports a sub-command's module only when it runs, so ``--help`` stays fast."""

    def list_commands(self, ctx):
        return list(JOBS)

    def get_command(self, ctx, name):
        if name not in JOBS:
            return None
        module, _, attr = JOBS.get(name).cli.partition(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        if args and not args[0].startswith("-") and args[0] not in JOBS:
            import difflib

            close = difflib.get_close_matches(args[0], list(JOBS), n=2, cutoff=0.6)
            guess = f"; did you mean {' or '.join(close)}?" if close else "; `advtf --help` lists the commands"
            ctx.fail(f"no command {args[0]!r}{guess}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        from advtf.errors import UserError
        from advtf.runs import Interrupted

        try:
            return super().invoke(ctx)
        except Interrupted as e:
            hint = getattr(e, "advtf_resume", None)
            click.echo(f"interrupted ({e}); " + (f"finished work is kept, continue with: {hint}" if hint
                                                else "nothing was kept"), err=True)
            ctx.exit(e.exit_code)
        except UserError as e:
            if _debug(ctx):
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except Exception as e:  # a bug: say so; the traceback only on request
            data_error = _data_check_error(e)
            if data_error is not None:  # a bad pixel or label found inside a tf.data pipeline
                if _debug(ctx):
                    traceback.print_exc()
                click.echo(f"error: {data_error}", err=True)
                ctx.exit(2)
            if _debug(ctx):
                traceback.print_exc()
            else:
                click.echo(f"internal error: {type(e).__name__}: {e} (run again with --debug for the traceback)",
                           err=True)
            ctx.exit(1)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's main, with usage errors (bad option values) on one line and exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{where}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def format_commands(self, ctx, formatter):
        rows = [(name, spec.summary) for name, spec in JOBS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="advtf")
@click.option("--debug", is_flag=True, help="Show tracebacks (may also be given after the sub-command).")
@click.pass_context
def advtf(ctx, debug):
    """advtf: adversarial-robustness research in TensorFlow / Keras.

    \b
    Example:
      advtf train --model resnet20v2 --width 0.25 --robust --norm l2 --eps 0.5 --out runs/robust
      advtf evaluate runs/robust --eps 0.5 --steps 20 --out runs/robust-eval

    Add --debug anywhere to see tracebacks.
    """
    ctx.obj = {"debug": debug}


def _data_check_error(error: BaseException):
    """The UserError of a failed in-pipeline data check (advtf.data.loading.checked), else None."""
    if "tensorflow" not in sys.modules:
        return None
    from advtf.data.checks import data_check_error

    return data_check_error(error)


def _debug(ctx) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or os.environ.get("ADVTF_DEBUG") == "1"


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up log lines (printed to fd 2 before
    TF_CPP_MIN_LOG_LEVEL applies) captured; they are shown only if the import fails."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notes when sweeping eps


def main(argv: list[str] | None = None) -> None:
    """Console entry point; ``--debug`` is accepted anywhere on the line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args = ["--debug"] + [a for a in args if a != "--debug"]
    if any(a in JOBS for a in args) and "--debug" not in args:
        _import_tensorflow_quietly()
    try:
        advtf.main(args=args, prog_name="advtf")
    except KeyboardInterrupt:
        click.echo("interrupted; a resumable run continues with --resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
