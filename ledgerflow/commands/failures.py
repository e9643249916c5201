"""How a failed verb ends: one line on stderr and an exit code (docs/cli.md).

Exit codes: 0 done; 1 an operational failure (a service unreachable, a record or topic
missing, a run-time refusal); 2 a usage or configuration error (a flag, a variable, a file
the user named). ``--debug`` prints the traceback as well.
"""

from __future__ import annotations

import errno

from ledgerflow.errors import InfrastructureError, LedgerflowError, NotFound

OK, OPERATIONAL, USAGE = 0, 1, 2
INTERRUPTED = 130
DEBUG_HINT = "rerun with --debug for the traceback"

# Connection failures of the client libraries, by class name: this module stays importable
# without them, and a library that wraps its errors differently still lands here.
_NETWORK_ERRORS = frozenset(
    {"KafkaConnectionError", "KafkaTimeoutError", "NoBrokersAvailable", "ConnectionError", "TimeoutError"}
)


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception that ended a verb."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, (InfrastructureError, NotFound)):
        return OPERATIONAL
    if isinstance(exc, LedgerflowError):  # validation, auth, configuration: the user can fix the input
        return USAGE
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return USAGE
    return OPERATIONAL


def one_line(exc: BaseException, *, debug: bool = False) -> str:
    """``ledgerflow: <what is wrong and what to do>`` on one line; unexpected errors name their type."""
    if isinstance(exc, LedgerflowError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or errno.errorcode.get(exc.errno or 0, 'error')}"
    elif _is_network(exc):
        text = f"a service did not answer ({type(exc).__name__}: {exc}); check `ledgerflow stack status`"
    else:
        text = f"unexpected {type(exc).__name__}: {exc}"
        if not debug:
            text += f" ({DEBUG_HINT})"
    return "ledgerflow: " + " ".join(text.split())


def _is_network(exc: BaseException) -> bool:
    return any(cls.__name__ in _NETWORK_ERRORS for cls in type(exc).__mro__)
