"""Library code reports through `logging` (loggers under 'clampgen'); entry points show it.

    from clampgen.logs import show_logs
    show_logs()       # clampgen's messages, one line each: INFO on stdout, warnings on stderr

Only command-line entry points print; everything else returns values, calls a callback or logs.
"""

import logging
import sys


class _ConsoleHandler(logging.Handler):
    """INFO to stdout (the run's transcript), WARNING and above to stderr, written to whatever
    sys.stdout / sys.stderr are at the moment of each message (pytest and notebooks replace
    them), never to a stream captured once."""

    def emit(self, record):
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 -- logging must never break a run
            self.handleError(record)


def show_logs(level: int = logging.INFO) -> None:
    """Shows messages of clampgen's loggers at `level` and above (idempotent)."""
    logger = logging.getLogger("clampgen")
    logger.setLevel(level)
    logger.propagate = False  # shown here once, whatever handlers the root logger has
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
