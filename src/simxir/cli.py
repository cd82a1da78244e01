"""The ``simxir`` command line: one typer app; each capability's commands live in its command.py."""

from __future__ import annotations

import errno
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
from simxir.recipes.command import recipes_command
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
    """Attach every capability's commands to the app (each capability's command.py owns its options);
    once per process, also when main() runs several times in one (the tests' in-process CLI)."""
    if app.registered_commands:
        return
    app.command("demo")(experiments.demo_command)
    app.command("pretrain")(pretrain_command)
    app.command("finetune")(finetune_command)
    app.command("eval")(eval_command)
    app.command("methods")(methods_command)
    app.command("recipes")(recipes_command)
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


def _usage_error(exc: Exception) -> bool:
    """Whether ``exc`` is click's usage error (unknown option, missing or malformed value): the
    exceptions ``typer.BadParameter`` shares a base with, told by their public interface."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _os_error(exc: OSError) -> str:
    """One line for a failed read or write: the path, the reason and its errno name."""
    name = errno.errorcode.get(exc.errno or 0, "")
    path = exc.filename if exc.filename is not None else "(no path)"
    hint = " (the disk is full)" if exc.errno == errno.ENOSPC else (
        " (a read-only file system)" if exc.errno == errno.EROFS else "")
    return f"{path}: {exc.strerror or exc}{f' [{name}]' if name else ''}{hint}"


def main() -> None:
    """Entry point: run the app; every failure ends as one line on stderr and an exit code (with
    --json also one JSON object ``{"error", "status", "exit_code"}`` on stdout):

    - bad input, usage errors (unknown option, missing or malformed value) and OS errors of reads
      and writes (a full disk, a read-only folder, a directory where a file was expected, ...):
      ``error: ...``, exit 2;
    - a diverged run: ``diverged: ...``, exit 3;
    - Ctrl-C: ``interrupted: ...`` (during training: what was kept and how to resume), exit 130.

    Anything else propagates with its traceback, since that is a bug to report.
    """
    _register()
    try:
        code = app(standalone_mode=False)
    except (UserError, ConfigError) as exc:
        _fail("error", str(exc), EXIT_BAD_INPUT)
    except TrainingDiverged as exc:
        _fail("diverged", str(exc), EXIT_DIVERGED)
    except TrainingInterrupted as exc:
        _fail("interrupted", str(exc), EXIT_INTERRUPTED)
    except typer.Abort:
        _fail("interrupted", "aborted", EXIT_INTERRUPTED)
    except OSError as exc:
        _fail("error", _os_error(exc), EXIT_BAD_INPUT)
    except Exception as exc:
        if not _usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":   # a bare command: its help, as before
            print(exc.format_message(), file=sys.stderr)
            sys.exit(exc.exit_code)
        _fail("error", " ".join(exc.format_message().split()) + " (see --help)", exc.exit_code)
    if code == EXIT_INTERRUPTED:   # Ctrl-C outside training (typer turns it into this exit code)
        _fail("interrupted", "interrupted by Ctrl-C; files this command had finished writing are kept, "
                             "nothing else", EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
