"""Command-line flags that more than one command takes: bounded numbers and how covers
are downloaded (local_runner.py, python -m pipeline.classify_catalogue)."""

from __future__ import annotations

import argparse
import os

from bookcover import constants


def bounded(kind: type, low: float, high: float | None = None, low_open: bool = False):
    """An argparse type: a `kind` number within [low, high] ((low, high] when low_open);
    the error names the accepted range, and argparse adds the flag."""
    upper = "" if high is None else f" and at most {high:g}"
    lower = f"over {low:g}" if low_open else f"at least {low:g}"
    wanted = f"{'an integer' if kind is int else 'a number'} {lower}{upper}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {wanted}") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value > high) or value != value:  # NaN
            raise argparse.ArgumentTypeError(f"{text}: expected {wanted}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def cidr(text: str) -> str:
    from bookcover import url_policy

    try:
        return url_policy.parse_networks([text])[0]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def host_name(text: str) -> str:
    from bookcover import url_policy

    try:
        return url_policy.parse_hosts([text])[0]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def download_flags(parser: argparse.ArgumentParser) -> None:
    """How covers are fetched and stored, and what a cover URL may reach."""
    p = parser.add_argument_group("downloads")
    p.add_argument(
        "--cover-format",
        choices=constants.COVER_FORMATS,
        default=None,
        help=f"how covers are stored in the examples (default {constants.COVER_FORMAT}); the "
        "reviewed schema expects JPEG",
    )
    p.add_argument(
        "--connections",
        type=bounded(int, 1, 1024),
        default=None,
        help=f"concurrent downloads per Beam worker (default {constants.CONNECTIONS_PER_WORKER})",
    )
    p.add_argument(
        "--download-deadline",
        type=bounded(float, 0, 86400, low_open=True),
        default=None,
        metavar="S",
        help="seconds one cover may take in all: name resolution, connecting, every "
        "attempt, redirect and wait between attempts, or a local file's read "
        f"(default {constants.DOWNLOAD_DEADLINE_S:g})",
    )
    p.add_argument(
        "--refuse-private-addresses",
        action="store_true",
        help="refuse cover URLs (and redirects) whose host resolves to a loopback or "
        "private address; link-local and metadata addresses are always refused",
    )
    p.add_argument(
        "--allow-network",
        action="append",
        default=[],
        type=cidr,
        metavar="CIDR",
        help="with --refuse-private-addresses: a private block that is still allowed "
        "(repeatable, e.g. 10.1.0.0/16)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        type=host_name,
        metavar="HOST",
        help="fetch covers only from these hosts (repeatable; .example.com allows every "
        "name under example.com); default: any host",
    )
    p.add_argument(
        "--covers-root",
        metavar="DIR",
        help="local cover paths must lie under DIR (default: the CSV's folder); relative "
        "paths always resolve against the CSV's folder",
    )


def fetch_config_from(args: argparse.Namespace):
    """The FetchConfig that download_flags' flags ask for; flags not given keep its defaults."""
    from bookcover.fetch_config import FetchConfig
    from bookcover.settings import given

    return FetchConfig(
        **given(
            connections=args.connections,
            deadline_s=args.download_deadline,
            cover_format=args.cover_format,
        ),
        allow_private_addresses=not args.refuse_private_addresses,
        allowed_networks=tuple(args.allow_network),
        allowed_hosts=tuple(args.allow_host),
        covers_root=os.path.abspath(args.covers_root) if args.covers_root else "",
    )
