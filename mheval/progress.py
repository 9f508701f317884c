"""Progress bars that suit where the output goes: a live tqdm bar in a terminal, a plain line now and then in a log.

A CI log keeps every carriage-return redraw of a bar, so a terminal bar there becomes thousands of lines (or one
line megabytes long). When stderr is not a terminal, `progress_bar` prints one line at most every `interval`
seconds, plus the final line, formatted by tqdm (count, percentage, elapsed, rate, remaining).
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

DEFAULT_INTERVAL = 10.0  # seconds between two lines of the same bar when not in a terminal
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}]"


class LineProgress:
    """The part of tqdm's interface the runner uses (`update`, `total`, `close`), printed as throttled log lines."""

    def __init__(self, desc: str, total: int, unit: str, interval: float, file: TextIO, clock=time.monotonic):
        self.desc, self.total, self.unit, self.n = desc, total, unit, 0
        self.interval, self.file, self.clock = interval, file, clock
        self.started = clock()
        self.printed_at = self.printed_n = None
        self.closed = False
        self._print(self.started)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.printed_at >= self.interval:
            self._print(now)

    def close(self) -> None:
        if not self.closed and self.printed_n != self.n:
            self._print(self.clock())
        self.closed = True

    def _print(self, now: float) -> None:
        line = tqdm.format_meter(self.n, self.total, now - self.started, prefix=self.desc, unit=self.unit,
                                 bar_format=LINE_FORMAT)
        self.file.write(line + "\n")
        self.file.flush()
        self.printed_at, self.printed_n = now, self.n


def progress_bar(desc: str, total: int, unit: str, enabled: bool = True, interval: float = DEFAULT_INTERVAL,
                 position: int = 0, file: TextIO | None = None) -> tqdm | LineProgress:
    """A tqdm bar on a terminal; throttled lines elsewhere; a disabled tqdm (prints nothing) when not `enabled`."""
    file = file or sys.stderr
    if not enabled:
        return tqdm(total=total, disable=True)
    if file.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=file, position=position, leave=True, dynamic_ncols=True)
    return LineProgress(desc, total, unit, interval, file)
