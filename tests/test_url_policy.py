"""The URL policy: decisions on resolved addresses (no traffic), and refusals end to end
on 127.0.0.x only, through the real downloader and a real HTTP server."""

import dataclasses
import os
import socket

import pytest

from bookcover import downloader, url_policy
from tests import cover_server as cs
from tests import images

FAST = cs.FAST_FETCH
STRICT = dataclasses.replace(FAST, allow_private_addresses=False)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure metadata
        "169.254.0.1",
        "::ffff:169.254.169.254",  # the same, IPv4-mapped
        "fe80::1",
        "fe80::1%eth0",  # as getaddrinfo writes a scoped address
        "fd00:ec2::254",
        "100.100.100.200",
        "224.0.0.1",
        "255.255.255.255",
    ],
)
def test_link_local_metadata_and_reserved_addresses_are_always_refused(address):
    for allow_private in (True, False):
        why = url_policy.address_refusal(address, allow_private, ("0.0.0.0/0", "::/0"))
        assert why == url_policy.ALWAYS_REFUSED_WHY


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "10.1.2.3", "172.20.0.5", "192.168.1.1",
     "100.64.0.1", "fd12:3456::1", "::ffff:10.0.0.1"],
)  # fmt: skip
def test_private_addresses_are_refused_only_when_private_is_off(address):
    assert url_policy.address_refusal(address, allow_private=True) is None
    assert url_policy.address_refusal(address, allow_private=False) == url_policy.PRIVATE_WHY


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert url_policy.address_refusal(address, allow_private=False) is None


def test_allowed_networks_open_a_private_block_and_nothing_else():
    networks = url_policy.parse_networks(["10.1.0.0/16", "fd00:1::/32"])
    assert url_policy.address_refusal("10.1.9.9", False, networks) is None
    assert url_policy.address_refusal("fd00:1::5", False, networks) is None
    assert url_policy.address_refusal("10.2.0.1", False, networks) == url_policy.PRIVATE_WHY
    with pytest.raises(ValueError, match="10.1.0.0/33"):
        url_policy.parse_networks(["10.1.0.0/33"])


def test_allowed_hosts_match_exact_names_and_dotted_suffixes():
    hosts = url_policy.parse_hosts(["Covers.Example.com", ".images.example.org"])
    assert url_policy.host_refusal("covers.example.com", hosts) is None
    assert url_policy.host_refusal("covers.example.com.", hosts) is None
    assert url_policy.host_refusal("a.b.images.example.org", hosts) is None
    assert url_policy.host_refusal("images.example.org", hosts) is None
    assert url_policy.host_refusal("evilimages.example.org", hosts) is not None
    assert url_policy.host_refusal("example.com", hosts) is not None
    assert url_policy.host_refusal("anything", ()) is None
    with pytest.raises(ValueError, match="not a host name"):
        url_policy.parse_hosts(["http://x"])


def test_local_targets_stay_under_the_covers_root(tmp_path):
    root = tmp_path / "data"
    (root / "covers").mkdir(parents=True)
    (root / "covers" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", root / "covers" / "link.jpg")
    base = str(root)
    assert url_policy.local_target("covers/a.jpg", base, "") == str(root / "covers" / "a.jpg")
    assert url_policy.local_target(str(root / "covers/a.jpg"), base, "") is not None
    for outside in (
        "../secret.txt",
        str(tmp_path / "secret.txt"),
        "covers/link.jpg",
        "/etc/passwd",
    ):
        assert url_policy.local_target(outside, base, "") is None, outside
    # A named covers root replaces the CSV's folder as the limit.
    assert url_policy.local_target("covers/a.jpg", base, str(root / "covers")) is not None
    assert url_policy.local_target(str(tmp_path / "secret.txt"), base, str(tmp_path)) is not None
    assert url_policy.local_target("a.jpg", base, str(root / "covers")) is None
    # Filesystem URIs: the same rule on normalised paths.
    gs = "gs://bucket/data"
    assert url_policy.local_target("covers/a.jpg", gs, "") == "gs://bucket/data/covers/a.jpg"
    assert url_policy.local_target("gs://bucket/data/x/../a.jpg", gs, "") is not None
    assert url_policy.local_target("../other/a.jpg", gs, "") is None
    assert url_policy.local_target("gs://bucket/database/a.jpg", gs, "") is None
    assert url_policy.local_target("gs://other/data/a.jpg", gs, "") is None
    assert url_policy.local_target("/etc/passwd", gs, "") is None


def resolver_for(names: dict[str, str]):
    """getaddrinfo for made-up names, each to a 127.0.0.x address: no DNS is asked."""

    def resolve(host, port, *args):
        address = names.get(host, host)
        if not address.startswith("127."):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not a test name")
        return socket.getaddrinfo(address, port, socket.AF_INET, socket.SOCK_STREAM)

    return resolve


def fetch(url, cfg, resolver=None):
    with downloader.make_session(2, resolver=resolver) as session:
        return downloader.download_cover(url, session, cfg, downloader.CoverCache(None))


def refusal(url, cfg, resolver=None) -> downloader.CoverError:
    with pytest.raises(downloader.CoverError) as e:
        fetch(url, cfg, resolver)
    return e.value


@pytest.fixture
def second_server():
    """A cover server on 127.0.0.2: a second host behind a redirect."""
    s = cs.CoverServer(host="127.0.0.2")
    yield s
    s.close()


def test_loopback_is_fetched_by_default_and_refused_when_private_is_off(server):
    server.routes["/a.jpg"] = cs.send_bytes(images.jpeg())
    assert fetch(server.url + "/a.jpg", FAST)[1] is False
    error = refusal(server.url + "/a.jpg", STRICT)
    assert error.reason == "forbidden_address"
    named = refusal(
        f"http://covers.test:{server.port}/a.jpg",
        STRICT,
        resolver_for({"covers.test": "127.0.0.1"}),
    )
    assert named.reason == "forbidden_address"  # a name is checked after resolving it
    assert server.requests["/a.jpg"] == 1


def test_a_redirect_to_a_refused_address_is_not_followed(server, second_server):
    second_server.routes["/inner.jpg"] = cs.send_bytes(images.jpeg())
    server.routes["/moved.jpg"] = cs.redirect(second_server.url + "/inner.jpg")
    assert fetch(server.url + "/moved.jpg", FAST)  # both allowed by default
    only_first = dataclasses.replace(STRICT, allowed_networks=("127.0.0.1/32",))
    error = refusal(server.url + "/moved.jpg", only_first)
    assert error.reason == "forbidden_address"
    assert "127.0.0.2" not in error.detail and "inner" not in error.detail
    assert second_server.requests["/inner.jpg"] == 1  # only the allowed fetch reached it


def test_a_name_that_resolves_to_a_refused_address_is_refused_at_connect(server, second_server):
    # Both names pass every check made before connecting; only the address tells them apart.
    second_server.routes["/a.jpg"] = cs.send_bytes(images.jpeg())
    resolver = resolver_for({"good.test": "127.0.0.1", "rebound.test": "127.0.0.2"})
    server.routes["/moved.jpg"] = cs.redirect(f"http://rebound.test:{second_server.port}/a.jpg")
    cfg = dataclasses.replace(STRICT, allowed_networks=("127.0.0.1/32",))
    assert refusal(f"http://good.test:{server.port}/moved.jpg", cfg, resolver).reason == (
        "forbidden_address"
    )
    assert server.requests["/moved.jpg"] == 1
    assert second_server.total_requests == 0


def test_hosts_outside_the_allow_list_are_refused_on_redirects_too(server):
    server.routes["/a.jpg"] = cs.send_bytes(images.jpeg())
    server.routes["/moved.jpg"] = cs.redirect(f"http://localhost:{server.port}/a.jpg")
    cfg = dataclasses.replace(FAST, allowed_hosts=("127.0.0.1",))
    assert fetch(server.url + "/a.jpg", cfg)
    assert refusal(server.url + "/moved.jpg", cfg).reason == "forbidden_host"
    assert refusal(f"http://localhost:{server.port}/a.jpg", cfg).reason == "forbidden_host"
    assert server.requests["/a.jpg"] == 1


def test_local_files_outside_the_covers_root_are_refused_and_reveal_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(images.png())
    (tmp_path / "secret.bin").write_bytes(b"not an image")
    cfg = dataclasses.replace(FAST, base_dir=str(data))
    assert fetch("a.png", cfg)  # relative: beside the CSV
    assert fetch((data / "a.png").as_uri(), cfg)
    outside = [str(tmp_path / "secret.bin"), str(tmp_path / "missing.bin"), "../secret.bin"]
    errors = [refusal(path, cfg) for path in outside]
    assert {e.reason for e in errors} == {"outside_covers_root"}
    assert len({e.detail for e in errors}) == 1  # exists or not: the same words
    assert refusal((tmp_path / "secret.bin").as_uri(), cfg).reason == "outside_covers_root"
    no_files = dataclasses.replace(cfg, allow_local_files=False)
    assert refusal("a.png", no_files).reason == "forbidden_local_file"


def test_a_cover_cached_under_looser_settings_is_not_handed_out(server, tmp_path):
    server.routes["/a.jpg"] = cs.send_bytes(images.jpeg())
    cache = downloader.CoverCache(str(tmp_path / "cache"))
    with downloader.make_session(2) as session:
        downloader.download_cover(server.url + "/a.jpg", session, FAST, cache)
        cfg = dataclasses.replace(STRICT, allowed_hosts=("covers.example.com",))
        with pytest.raises(downloader.CoverError) as e:
            downloader.download_cover(server.url + "/a.jpg", session, cfg, cache)
    assert e.value.reason == "forbidden_host"
