"""The command's errors: each is one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

EXIT_FAILED = 1   # the operation failed, or a replay found a mismatch
EXIT_USAGE = 2    # the command line or its input is wrong (bad option, malformed JSON, not a history file)


class CLIError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
