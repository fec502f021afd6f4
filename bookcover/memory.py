"""Handing freed memory back to the operating system after a step that ran in this process."""

from __future__ import annotations

import ctypes
import gc


def return_freed_memory() -> None:
    """Collects garbage, then asks glibc to give its free heap pages back (malloc_trim):
    a step that ran its Beam pipeline in this process (CoverExampleGen, on the
    DirectRunner) frees millions of cover-sized blocks, which glibc would otherwise
    keep for this process for the rest of the run. Elsewhere than glibc, nothing."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
