"""The one exception type for bad user input; the CLI prints it as a single line."""


class UserError(ValueError):
    """Bad input from the user: a file, argument or value that is not what was expected.

    The message is one line naming the file/argument and what was expected.
    """
