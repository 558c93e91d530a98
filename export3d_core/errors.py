"""The one exception type that reaches users: a clear, one-line message and no traceback."""


class Export3DError(Exception):
    """A user-facing error (bad input, missing file, mismatched weights).

    The CLI prints `export3d: error: <message>` and exits with code 2; the editor shows the
    message in a dialog and keeps its state. Never raise it for programming errors.
    """
