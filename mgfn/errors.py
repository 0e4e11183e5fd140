"""The one exception type for bad user input; the CLI prints it as a one-line error."""


class InputError(ValueError):
    """Bad input found before any work starts (file, shape, label, checkpoint...)."""
