"""Progress of the long steps: a live bar on a terminal, periodic plain lines elsewhere.

tqdm draws both: the bar on a TTY, and on a pipe or in CI the same figures
(done/total, rate, ETA) as one plain line every few seconds through the
`bookcover` logger, with no control characters. Every line also reaches the
run's log file.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

LOGGER = logging.getLogger("bookcover")
PLAIN_EVERY_S = 10.0


def is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Counts work done towards a total; `extra` figures (failures, ...) ride along."""

    def __init__(
        self,
        description: str,
        total: int | None,
        unit: str = "it",
        stream=None,
        every_s: float = PLAIN_EVERY_S,
    ):
        self.description, self.total, self.unit = description, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.done = 0
        self.extra: dict[str, int] = {}
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if is_terminal(self.stream):
            self.bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=False)

    def set_total(self, total: int | None) -> None:
        """The total once known (a Beam side input's, after the work began)."""
        if total != self.total:
            self.total = total
            if self.bar is not None:
                self.bar.total = total
                self.bar.refresh()

    def update(self, done: int = 1, **extra: int) -> None:
        self.done += done
        for name, n in extra.items():
            self.extra[name] = self.extra.get(name, 0) + n
        if self.bar is not None:
            self.bar.update(done)
            if extra:
                self.bar.set_postfix(self.extra, refresh=False)
        elif time.monotonic() - self.last_line >= self.every_s:
            self.last_line = time.monotonic()
            LOGGER.info(self.line())

    def line(self) -> str:
        """The figures as one plain line: 'covers: 40/120 ... 12.0cover/s, failed=2'."""
        text = tqdm.format_meter(
            self.done,
            self.total,
            time.monotonic() - self.started,
            prefix=self.description,
            unit=self.unit,
            ncols=0,  # no bar: figures only
        )
        if self.extra:
            text += ", " + ", ".join(f"{k}={v}" for k, v in self.extra.items())
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        LOGGER.info(self.line())


def eta_text(seconds: float) -> str:
    return tqdm.format_interval(max(0.0, seconds))
