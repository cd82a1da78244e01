"""The exceptions the CLI turns into one line and an exit code (see ``simxir.cli.main``)."""


class UserError(ValueError):
    """Bad input from the user: a file, argument or value that is not what was expected.

    The message is one line naming the file/argument and what was expected.
    """


class TrainingDiverged(RuntimeError):
    """The loss became nan/inf; the message names epoch and step and the last good checkpoint."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (KeyboardInterrupt) during training; the message names what was kept and how to resume."""
