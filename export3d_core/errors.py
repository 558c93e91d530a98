"""The one exception type that reaches users (a clear, one-line message and no traceback), and
the exit codes every command returns."""

EXIT_USER_ERROR = 2  # an `Export3DError`: bad input, missing file, mismatched weights
EXIT_SYSTEM_ERROR = 1  # the disk or the OS refused (full, read-only, not a folder); not a bad input
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT (Ctrl-C), also a training run stopped early


class Export3DError(Exception):
    """A user-facing error (bad input, missing file, mismatched weights).

    The CLI prints `export3d: error: <message>` and exits with code 2; the editor shows the
    message in a dialog and keeps its state. Never raise it for programming errors.
    """
