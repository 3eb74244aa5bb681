"""The one exception type the command line turns into a one-line message."""


class InputError(ValueError):
    """Bad input from the user: a missing or unreadable file, an unknown key, a wrong value.

    The message names the file or key and says what was expected. The CLI prints it as
    ``ctsdg: error: <message>`` and exits with status 2; the Python API lets it propagate.
    """


class InpaintWarning(UserWarning):
    """Something was adjusted to make an input usable or writable (a mask resized, an image
    written in another mode than it was read in); the CLI prints it as one line."""
