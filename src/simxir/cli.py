"""The ``simxir`` command line: one typer app; each capability's commands live in its command.py."""

from __future__ import annotations

import sys

import typer

from simxir.config import ConfigError
from simxir.errors import UserError

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
    from simxir import demo
    from simxir.analysis import command as analysis
    from simxir.data.command import data_app
    from simxir.dynamics.command import dynamics_app
    from simxir.eval.command import eval_command
    from simxir.finetune.command import finetune_command
    from simxir.methods.command import methods_command
    from simxir.models import command as models
    from simxir.train.command import pretrain_command

    app.command("demo")(demo.demo_command)
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
    app.command("ablation")(analysis.ablation_command)


def main() -> None:
    """Entry point: run the app; bad input prints one line 'error: ...' and exits with code 2.

    Usage errors (unknown options, missing arguments) are handled by typer/click (exit code 2);
    anything else propagates with its traceback, since that is a bug to report.
    """
    _register()
    try:
        app()
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
