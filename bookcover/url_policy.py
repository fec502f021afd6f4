"""What a cover URL may reach: address rules checked after name resolution, and the covers root.

The downloader applies these to every URL and every redirect; the address rules
are applied to the addresses a name resolves to, at the moment of connecting, so
a name that resolves differently later (DNS rebinding) is checked again. The
decisions are plain functions of their inputs, so tests check them on addresses
without sending traffic anywhere. Behind an HTTP proxy (HTTPS_PROXY and the like)
the connection is to the proxy, so the address rules apply to the proxy's address
and the host rules to the URL; the proxy resolves the cover's host itself.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

# Refused whatever the settings: link-local (169.254.169.254 is most clouds' metadata
# service), the other clouds' metadata addresses, multicast and reserved space.
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "224.0.0.0/4",
        "240.0.0.0/4",
        "ff00::/8",
    )
)
# Refused unless private addresses are allowed (locally by default: the development
# covers are served on 127.0.0.1): this machine, its networks and the cluster's.
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # connecting to 0.0.0.0 reaches this machine
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, also used inside clusters
        "192.0.0.0/24",
        "198.18.0.0/15",
        "::/128",
        "::1/128",
        "fc00::/7",
    )
)
ALWAYS_REFUSED_WHY = "a link-local, metadata or reserved address"
PRIVATE_WHY = "a loopback or private address"


def parse_networks(values: Iterable[str]) -> tuple[str, ...]:
    """CIDR blocks as given, after checking each; ValueError names the bad one."""
    out = []
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or CIDR block (10.1.0.0/16)") from None
        out.append(value)
    return tuple(out)


def parse_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """Host names, lower case; '.example.com' allows every name under example.com."""
    out = []
    for value in values:
        host = value.strip().lower()
        if not host or any(c in host for c in "/:@ ") or host.strip(".") == "":
            raise ValueError(f"{value!r} is not a host name (covers.example.com or .example.com)")
        out.append(host)
    return tuple(out)


def _unwrapped(address: Address) -> Address:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def address_refusal(
    address: Address | str, allow_private: bool, allowed_networks: Iterable[str] = ()
) -> str | None:
    """Why connecting to `address` is refused, or None when it is allowed."""
    if isinstance(address, str):
        address = address.partition("%")[0]  # getaddrinfo's IPv6 scope: fe80::1%eth0
    address = _unwrapped(ipaddress.ip_address(address))
    if any(address in network for network in ALWAYS_REFUSED):
        return ALWAYS_REFUSED_WHY
    if allow_private or not any(address in network for network in PRIVATE):
        return None
    for network in allowed_networks:
        network = ipaddress.ip_network(network, strict=False)
        if address.version == network.version and address in network:
            return None
    return PRIVATE_WHY


def host_refusal(host: str, allowed_hosts: Iterable[str]) -> str | None:
    """Why a host name is refused by the allow-list (empty: every host), or None."""
    allowed_hosts = tuple(allowed_hosts)
    if not allowed_hosts:
        return None
    host = host.lower().rstrip(".")
    for allowed in allowed_hosts:
        if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
            return None
    return "a host not in the allowed hosts"


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def resolve(host: str, port: int, timeout_s: float, resolver: Resolver) -> list:
    """getaddrinfo's answers for a TCP connection, or TimeoutError after `timeout_s`.

    The system resolver cannot be interrupted, so it runs in a thread of its own
    that is left behind if it never answers: the cover fails on time either way.
    """
    if literal_address(host) is not None:
        return resolver(host.strip("[]"), port, 0, socket.SOCK_STREAM)
    answer = call_within(lambda: resolver(host, port, 0, socket.SOCK_STREAM), timeout_s)
    if answer is None:
        raise TimeoutError(f"name resolution took over {timeout_s:.1f} s")
    return answer[0]


def call_within(work: Callable, timeout_s: float) -> tuple | None:
    """(work(),) when it returns within `timeout_s`, None when it does not. For calls
    nothing can interrupt (the resolver, a read from a hung mount): the call goes on
    in a daemon thread of its own, left behind; its exception is raised here."""
    answer: dict = {}
    done = threading.Event()

    def run():
        try:
            answer["value"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            answer["error"] = e
        done.set()

    threading.Thread(target=run, name="cover-bounded-call", daemon=True).start()
    if not done.wait(max(timeout_s, 0.0)):
        return None
    if "error" in answer:
        raise answer["error"]
    return (answer["value"],)


def has_scheme(location: str) -> bool:
    """True for a URI such as gs://bucket/a.jpg; False for paths (C:\\ included)."""
    scheme = urllib.parse.urlparse(location).scheme
    return len(scheme) > 1


def local_target(location: str, base_dir: str, covers_root: str) -> str | None:
    """The file a path or filesystem URI (gs://...) names, resolved against `base_dir`
    (the CSV's folder), or None when it lies outside `covers_root` (default: base_dir).

    Local paths are compared after symbolic links are resolved, so a link inside
    the root cannot lead out of it. With neither folder set, any path is allowed
    (models.predict reads the files its user names).
    """
    root = covers_root or base_dir
    if has_scheme(location) or has_scheme(base_dir):
        target = location if has_scheme(location) else posixpath.join(base_dir, location)
        target = _normalised_uri(target)
        if not root:
            return target
        root = _normalised_uri(root).rstrip("/") + "/"
        return target if target.startswith(root) else None
    target = (
        location if os.path.isabs(location) or not base_dir else os.path.join(base_dir, location)
    )
    target = os.path.realpath(target)
    if not root or has_scheme(root):
        return target if not root else None
    root = os.path.realpath(root)
    return target if os.path.commonpath([target, root]) == root else None


def _normalised_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    bucket, _, path = rest.partition("/")
    return f"{scheme}://{bucket}/{posixpath.normpath('/' + path).lstrip('/')}"
