"""The one kind of failure `cabinetctl` shows: a line a person can act on, and an exit code.

Everything the operator can cause (a missing file, a bad key, a broker that does not
answer, a device that rejects a command) becomes a `CentralError`; the CLI prints its
message on stderr and exits with its code. Tracebacks are for programming errors only.
"""

from __future__ import annotations

EX_FAILURE = 1  # the operation did not happen or did not verify
EX_REJECTED = 3  # the device answered, with a verified rejection
EX_CONFIG = 78  # EX_CONFIG, as config.loading uses for bad files


class CentralError(Exception):
    def __init__(self, message: str, exit_code: int = EX_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
