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

# name -> (module, function, one-line help); modules import TensorFlow only when run.
COMMANDS = {
    "train": ("advtf.cli.train", "train", "Train a standard or adversarially robust classifier."),
    "evaluate": ("advtf.cli.evaluate", "evaluate", "Clean and robust accuracy of a trained model."),
    "attack": ("advtf.cli.attack", "attack", "Attack a model; save the adversarial dataset with success and norms."),
    "quickstart": ("advtf.cli.quickstart", "quickstart",
                   "The main job: standard vs L2-robust model on Fashion-MNIST, with a report."),
    "frequency": ("advtf.cli.local", "frequency",
                  "Filtered and frequency-swapped accuracy, mean spectra of adversarial examples "
                  "(the local-properties paper)."),
    "perturbations": ("advtf.cli.local", "perturbations",
                      "Adversarial perturbations side by side, with local-consistency statistics "
                      "(the local-properties paper)."),
    "response": ("advtf.cli.local", "response",
                 "Local response differences per layer, natural vs adversarial (the local-properties paper)."),
    "kernels": ("advtf.cli.local", "kernels",
                "Kernel smoothness per conv layer (magnitude, variance, TV; the local-properties paper)."),
    "features": ("advtf.cli.features", "features",
                 "Natural vs adversarial feature-vector distributions per module: MMD, C2ST, t-SNE "
                 "(Siddiqui & Breuel 2021)."),
    "robustify": ("advtf.cli.derived", "robustify",
                  "Robustified test set R_eps from a model's representation (Springer et al. 2021)."),
    "relabel": ("advtf.cli.derived", "relabel",
                "Zero-robust / negative-robust relabeled dataset, targeted attacks (Springer et al. 2021)."),
    "robust-table": ("advtf.cli.transfer", "robust_table",
                     "Accuracy matrix: classifiers x test sets (e.g. robustified sets), with chance marked."),
    "transfer-eval": ("advtf.cli.transfer", "transfer_eval",
                      "Transfer attacks: sources of varying robustness x victim models (Springer et al. 2021)."),
    "retrain": ("advtf.cli.retrain", "retrain",
                "Block-wise retraining: reinitialise and retrain modules, the rest frozen "
                "(Siddiqui & Breuel 2021)."),
    "dissect": ("advtf.cli.dissect", "dissect",
                "Network dissection: unit concepts (IoU), sensitivity to attacks, p-values (Xu et al. 2019)."),
    "cam": ("advtf.cli.interpret", "cam",
            "CAMs of natural/adversarial images and the interpretability score (Xu et al. 2019)."),
    "psr": ("advtf.cli.interpret", "psr",
            "Grid sensitivity and promotion-suppression ratio of perturbations, refined attacks "
            "(Xu et al. 2019)."),
    "datasets": ("advtf.cli.info", "datasets", "List registered datasets and where they are found."),
    "models": ("advtf.cli.info", "models", "List registered models."),
    "attacks": ("advtf.cli.info", "attacks", "List registered attacks, their norms and options."),
    "env": ("advtf.cli.info", "env", "Versions, devices and strategy, for bug reports."),
}


class LazyGroup(click.Group):
    """Imports a sub-command's module only when it runs, so ``--help`` stays fast."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx):
        from advtf.errors import UserError

        try:
            return super().invoke(ctx)
        except UserError as e:
            if _debug(ctx):
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug: say so; the traceback only on request
            if _debug(ctx):
                traceback.print_exc()
            else:
                click.echo(f"internal error: {type(e).__name__}: {e} (run again with --debug for the traceback)",
                           err=True)
            ctx.exit(1)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
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
    if any(a in COMMANDS for a in args) and "--debug" not in args:
        _import_tensorflow_quietly()
    try:
        advtf.main(args=args, prog_name="advtf")
    except KeyboardInterrupt:
        click.echo("interrupted; a resumable run continues with --resume", err=True)
        sys.exit(130)
