"""The one exception type for bad user input in extraction; the CLI prints it as a one-line error."""


class InputError(ValueError):
    """Bad input (unreadable video, missing weights file, bad option) reported in one line."""
