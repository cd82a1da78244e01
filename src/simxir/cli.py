"""The ``simxir`` command line: one typer app; each capability's commands live in its command.py."""

from __future__ import annotations

import json
import sys

import typer

from simxir.analysis import command as analysis
from simxir.config import ConfigError
from simxir.data.command import data_app
from simxir.dynamics.command import dynamics_app
from simxir.errors import TrainingDiverged, TrainingInterrupted, UserError
from simxir.eval.command import eval_command
from simxir.experiments import command as experiments
from simxir.finetune.command import finetune_command
from simxir.methods.command import methods_command
from simxir.models import command as models
from simxir.train.command import pretrain_command

app = typer.Typer(
    name="simxir",
    help="Non-contrastive self-supervised learning: pretrain, SimXIR fine-tune, evaluate, analyse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """simxir: pretrain, fine-tune (SimXIR), evaluate, and study SSL representations."""


def _register() -> None:
    """Attach every capability's commands to the app (each capability's command.py owns its options)."""
    app.command("demo")(experiments.demo_command)
    app.command("pretrain")(pretrain_command)
    app.command("finetune")(finetune_command)
    app.command("eval")(eval_command)
    app.command("methods")(methods_command)
    app.command("inspect-encoder")(models.inspect_command)
    app.command("export-encoder")(models.export_command)
    app.add_typer(data_app, name="data")
    app.add_typer(dynamics_app, name="dynamics")
    app.command("analyze")(analysis.analyze_command)
    app.command("theorem31")(analysis.theorem_command)
    app.command("ablation")(experiments.ablation_command)


EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130   # the shell's code for Ctrl-C (128 + SIGINT)


def _fail(kind: str, message: str, code: int) -> None:
    """One line on stderr; with --json also the one JSON object the command promises, on stdout."""
    print(f"{kind}: {message}", file=sys.stderr)
    if "--json" in sys.argv[1:]:
        print(json.dumps({"error": message, "status": kind, "exit_code": code}))
    sys.exit(code)


def main() -> None:
    """Entry point: run the app. Bad input prints one line 'error: ...' and exits 2; a diverged run
    'diverged: ...' and exits 3; Ctrl-C during training 'interrupted: ...' (what was kept and how
    to resume) and exits 130. With --json each also prints one JSON object
    ``{"error", "status", "exit_code"}`` on stdout.

    Usage errors (unknown options, missing arguments) are handled by typer/click (exit code 2);
    anything else propagates with its traceback, since that is a bug to report.
    """
    _register()
    try:
        app()
    except (UserError, ConfigError) as exc:
        _fail("error", str(exc), EXIT_BAD_INPUT)
    except TrainingDiverged as exc:
        _fail("diverged", str(exc), EXIT_DIVERGED)
    except TrainingInterrupted as exc:
        _fail("interrupted", str(exc), EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
