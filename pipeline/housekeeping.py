"""What an output directory holds and what can go: python -m pipeline.housekeeping.

Reports the download cache, the trainer backups, the pushed versions, the logs
and the old reports, each with its size; with --prune removes what the limits
say is old. It holds the output directory's run lock while it works, so it never
removes what a running pipeline is using, and it never removes the newest pushed
version (the one TF Serving serves).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time

from pipeline import configs

CACHE_DIR = os.path.join("cache", "covers")
BACKUP_DIR = "trainer_backup"
SERVING_DIR = "serving_model"
LOGS_DIR = "logs"
REPORTS_DIR = "reports"
DAY_S = 24 * 3600
# A temporary file or staging directory this old belongs to a writer that died.
ABANDONED_S = 3600


@dataclasses.dataclass
class Part:
    """One kind of thing in the output directory: what there is and what would go."""

    name: str
    entries: int = 0
    bytes: int = 0
    removable: list[str] = dataclasses.field(default_factory=list)
    removable_bytes: int = 0

    def add(self, path: str, remove: bool) -> None:
        size = size_of(path)
        self.entries += 1
        self.bytes += size
        if remove:
            self.removable.append(path)
            self.removable_bytes += size


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass  # removed while we looked
    return total


def age_s(path: str, now: float) -> float:
    return now - os.path.getmtime(path)


def survey(output_dir: str, args: argparse.Namespace, now: float | None = None) -> list[Part]:
    """Every part of `output_dir`, with what the limits in `args` would remove."""
    now = time.time() if now is None else now
    return [
        _cache(os.path.join(output_dir, CACHE_DIR), args.cache_days, now),
        _backups(os.path.join(output_dir, BACKUP_DIR), args.backup_days, now),
        _versions(os.path.join(output_dir, SERVING_DIR), args.keep_versions, now),
        _newest(os.path.join(output_dir, LOGS_DIR), "logs", args.keep_logs),
        _newest(os.path.join(output_dir, REPORTS_DIR), "old reports", args.keep_reports),
    ]


def _cache(cache_dir: str, cache_days: float | None, now: float) -> Part:
    part = Part("download cache")
    for folder, _, files in os.walk(cache_dir):
        for name in files:
            path = os.path.join(folder, name)
            abandoned = name.endswith(".tmp") and age_s(path, now) >= ABANDONED_S
            stale = cache_days is not None and age_s(path, now) >= cache_days * DAY_S
            part.add(path, abandoned or stale)
    return part


def _backups(backup_dir: str, backup_days: float, now: float) -> Part:
    part = Part("trainer backups")
    for name in sorted(_listdir(backup_dir)):
        path = os.path.join(backup_dir, name)
        part.add(path, age_s(path, now) >= backup_days * DAY_S)
    return part


def _versions(serving_dir: str, keep: int, now: float) -> Part:
    from bookcover import model_versions

    part = Part("pushed versions")
    versions = model_versions.versions(serving_dir) if os.path.isdir(serving_dir) else []
    for i, version in enumerate(versions):
        part.add(os.path.join(serving_dir, str(version)), i < len(versions) - max(keep, 1))
    for name in _listdir(serving_dir):
        path = os.path.join(serving_dir, name)
        if name.startswith(model_versions.STAGING_PREFIX):  # a push that died
            part.add(path, age_s(path, now) >= ABANDONED_S)
    return part


def _newest(directory: str, name: str, keep: int) -> Part:
    part = Part(name)
    paths = sorted((os.path.join(directory, n) for n in _listdir(directory)), key=os.path.getmtime)
    for i, path in enumerate(paths):
        part.add(path, i < len(paths) - keep)
    return part


def _listdir(directory: str) -> list[str]:
    return os.listdir(directory) if os.path.isdir(directory) else []


def prune(parts: list[Part]) -> int:
    """Removes every removable path; the bytes freed."""
    freed = 0
    for part in parts:
        for path in part.removable:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
        freed += part.removable_bytes
    return freed


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def report_lines(parts: list[Part]) -> list[str]:
    return [
        f"{p.name:16} {p.entries:7,} entries {megabytes(p.bytes):>12}   "
        f"removable: {len(p.removable):,} ({megabytes(p.removable_bytes)})"
        for p in parts
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipeline.housekeeping", description=__doc__)
    p.add_argument("--output-dir", default=configs.OUTPUT_DIR)
    p.add_argument("--prune", action="store_true", help="remove what is removable")
    p.add_argument("--keep-versions", type=int, default=3, help="pushed versions kept (>= 1)")
    p.add_argument("--backup-days", type=float, default=7, help="trainer backups kept this long")
    p.add_argument("--keep-logs", type=int, default=20, help="newest run logs kept")
    p.add_argument("--keep-reports", type=int, default=10, help="newest old reports kept")
    p.add_argument(
        "--cache-days",
        type=float,
        default=None,
        help="also remove cached covers not written for this long (default: keep them all)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Part]:
    from pipeline import local_run

    args = parse_args(argv)
    output_dir = os.path.abspath(args.output_dir)
    if not os.path.isdir(output_dir):
        raise SystemExit(f"{output_dir}: no such output directory")
    with local_run.output_lock(output_dir):  # never while a run uses the directory
        parts = survey(output_dir, args)
        print("\n".join(report_lines(parts)))
        if args.prune:
            print(f"removed {sum(len(p.removable) for p in parts):,} entries, "
                  f"freed {megabytes(prune(parts))}")  # fmt: skip
        elif any(p.removable for p in parts):
            print("nothing removed: pass --prune to remove what is removable")
    return parts


if __name__ == "__main__":
    main()
