"""Cover fetching against a real, misbehaving HTTP server on 127.0.0.1."""

import dataclasses
import gzip
import io
import os
import random
import threading
import time

import pytest
from PIL import Image

from bookcover import downloader, fetching, local_files
from tests import cover_server as cs
from tests import images

FAST = cs.FAST_FETCH


@pytest.fixture
def session():
    with downloader.make_session(4) as s:
        yield s


def fetch(server, session, path, cfg=FAST, cache=None):
    return downloader.download_cover(
        server.url + path, session, cfg, cache or downloader.CoverCache(None)
    )


def assert_cover(jpeg: bytes):
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (100, 150)


def test_plain_jpeg_is_resized_to_100x150_rgb(server, session):
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    jpeg, cached = fetch(server, session, "/ok.jpg")
    assert_cover(jpeg)
    assert not cached


@pytest.mark.parametrize(
    "route,data",
    [
        ("/p.png", images.png()),
        ("/gray.jpg", images.jpeg(mode="L", color=128)),
        ("/cmyk.jpg", images.jpeg(mode="CMYK", color=(0, 80, 80, 0))),
        ("/anim.gif", images.encode(Image.new("P", (50, 75)), "GIF")),
    ],
)
def test_other_formats_and_modes_become_rgb(server, session, route, data):
    server.routes[route] = cs.send_bytes(data)
    assert_cover(fetch(server, session, route)[0])


def test_404_fails_at_once_without_retry(server, session):
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/missing.jpg")
    assert e.value.reason == "http_404"
    assert server.requests["/missing.jpg"] == 1


def test_500_then_200_is_retried_then_stored(server, session):
    server.routes["/flaky.jpg"] = cs.fail_then(cs.send_status(500), cs.send_bytes(images.jpeg()))
    assert_cover(fetch(server, session, "/flaky.jpg")[0])
    assert server.requests["/flaky.jpg"] == 2


def test_persistent_503_gives_up_after_the_retries(server, session):
    server.routes["/down.jpg"] = cs.send_status(503)
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/down.jpg")
    assert e.value.reason == "http_503"
    assert server.requests["/down.jpg"] == FAST.max_retries + 1


def test_429_honours_retry_after(server, session):
    server.routes["/busy.jpg"] = cs.fail_then(
        cs.send_status(429, {"Retry-After": "1"}), cs.send_bytes(images.jpeg())
    )
    start = time.monotonic()
    assert_cover(fetch(server, session, "/busy.jpg")[0])
    assert time.monotonic() - start >= 0.95
    assert server.requests["/busy.jpg"] == 2


def test_response_slower_than_the_timeout_is_a_timeout(server, session):
    server.routes["/slow.jpg"] = cs.slow(1.5, cs.send_bytes(images.jpeg()))
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/slow.jpg")
    assert e.value.reason == "timeout"


@pytest.mark.parametrize(
    "route,data,reason",
    [
        ("/truncated.jpg", images.jpeg()[:400], "not_an_image"),
        ("/page.html", b"<html><body>Not found</body></html>", "not_an_image"),
        ("/bomb.png", images.bomb_png(), "decompression_bomb"),
    ],
)
def test_bad_content_is_counted_by_reason(server, session, route, data, reason):
    server.routes[route] = cs.send_bytes(data)
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, route)
    assert e.value.reason == reason


def test_image_over_the_size_cap_is_refused(server, session):
    noisy = Image.frombytes("RGB", (400, 600), random.Random(1).randbytes(400 * 600 * 3))
    data = images.encode(noisy, "PNG")
    assert len(data) > FAST.max_bytes
    server.routes["/huge.png"] = cs.send_bytes(data)
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/huge.png")
    assert e.value.reason == "too_large"


def test_redirect_is_followed(server, session):
    server.routes["/moved.jpg"] = cs.redirect("/ok.jpg")
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    assert_cover(fetch(server, session, "/moved.jpg")[0])


def test_unsupported_scheme(session):
    with pytest.raises(downloader.CoverError) as e:
        downloader.download_cover(
            "ftp://example.invalid/a.jpg", session, FAST, downloader.CoverCache(None)
        )
    assert e.value.reason == "unsupported_scheme"


def test_local_paths_and_file_uris(tmp_path, session):
    path = tmp_path / "cover one.png"
    path.write_bytes(images.png())
    for url in (str(path), path.as_uri()):
        assert_cover(downloader.download_cover(url, session, FAST, downloader.CoverCache(None))[0])
    with pytest.raises(downloader.CoverError) as e:
        downloader.download_cover(
            str(tmp_path / "nope.jpg"), session, FAST, downloader.CoverCache(None)
        )
    assert e.value.reason == "missing_file"


def test_cache_means_the_second_download_makes_no_request(server, session, tmp_path):
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    cache = downloader.CoverCache(str(tmp_path / "cache"))
    first, first_cached = fetch(server, session, "/ok.jpg", cache=cache)
    second, second_cached = fetch(server, session, "/ok.jpg", cache=cache)
    assert (first_cached, second_cached) == (False, True)
    assert first == second
    assert server.requests["/ok.jpg"] == 1


@pytest.mark.parametrize("keep", [0, 200], ids=["empty", "truncated"])
def test_a_broken_cache_entry_is_dropped_and_downloaded_again(server, session, tmp_path, keep):
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    cache = downloader.CoverCache(str(tmp_path / "cache"))
    good, _ = fetch(server, session, "/ok.jpg", cache=cache)
    entry = cache._path(server.url + "/ok.jpg")
    with open(entry, "r+b") as f:
        f.truncate(keep)
    again, cached = fetch(server, session, "/ok.jpg", cache=cache)
    assert (again, cached, cache.dropped) == (good, False, 1)
    assert server.requests["/ok.jpg"] == 2
    with open(entry, "rb") as f:
        assert f.read() == good  # the entry is whole again
    other_size = downloader.CoverCache(str(tmp_path / "cache"), size=(50, 75))
    assert other_size.get(server.url + "/ok.jpg") is None  # not a cover of its size


def test_backoff_grows_and_respects_retry_after():
    cfg = downloader.FetchConfig(backoff_base_s=1.0, backoff_max_s=10.0)
    assert 0.5 <= fetching.backoff_delay(0, cfg) <= 1.0
    assert 4.0 <= fetching.backoff_delay(3, cfg) <= 8.0
    assert fetching.backoff_delay(9, cfg) <= 10.0
    assert fetching.backoff_delay(0, cfg, retry_after="7") == 7.0
    assert fetching.backoff_delay(0, cfg, retry_after="600") == 10.0


DEADLINE = dataclasses.replace(FAST, deadline_s=1.0, max_retries=1)
# Slack for the test machine's scheduling; the bound under test is deadline_s.
SLACK_S = 1.0


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_server_that_drips_bytes_forever_meets_the_deadline(server, session, headers_too):
    # One byte every 0.2 s: the per-read timeout (0.5 s) never fires.
    server.routes["/drip.jpg"] = cs.drip(0.2, headers_too=headers_too)
    started = time.monotonic()
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/drip.jpg", cfg=DEADLINE)
    elapsed = time.monotonic() - started
    assert e.value.reason == "deadline"
    assert server.requests["/drip.jpg"] == 1  # one deadline for all attempts
    assert elapsed < DEADLINE.deadline_s + SLACK_S
    # The pool and the session still work after the shut sockets.
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    assert_cover(fetch(server, session, "/ok.jpg")[0])


def test_redirect_bodies_are_never_read(server, session):
    bomb = gzip.compress(b"\0" * (50 * FAST.max_bytes))
    server.routes["/moved.jpg"] = cs.send_with_body(
        302, bomb, {"Location": "/ok.jpg", "Content-Encoding": "gzip"}
    )
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    assert_cover(fetch(server, session, "/moved.jpg")[0])


def test_redirects_stop_after_five_hops_and_only_to_http(server, session):
    for hop in range(7):
        server.routes[f"/hop{hop}"] = cs.redirect(f"/hop{hop + 1}")
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/hop0")
    assert e.value.reason == "too_many_redirects"
    assert server.requests["/hop5"] == 1 and server.requests["/hop6"] == 0
    server.routes["/to-ftp"] = cs.redirect("ftp://example.invalid/a.jpg")
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/to-ftp")
    assert e.value.reason == "bad_redirect"


def test_bodies_are_asked_for_uncompressed_and_capped_when_compressed_anyway(server, session):
    server.routes["/headers"] = cs.echo_headers()
    asked = session.get(server.url + "/headers").text.lower()
    assert "accept-encoding: identity" in asked
    jpeg = images.jpeg()
    server.routes["/zipped.jpg"] = cs.send_with_body(
        200, gzip.compress(jpeg), {"Content-Encoding": "gzip"}
    )
    assert_cover(fetch(server, session, "/zipped.jpg")[0])
    bomb = gzip.compress(b"\0" * (50 * FAST.max_bytes))  # small on the wire
    assert len(bomb) < FAST.max_bytes
    server.routes["/bomb.jpg"] = cs.send_with_body(200, bomb, {"Content-Encoding": "gzip"})
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/bomb.jpg")
    assert e.value.reason == "too_large"


def test_failure_details_carry_no_object_reprs(server, session):
    server.routes["/page.html"] = cs.send_bytes(b"<html></html>", "text/html")
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/page.html")
    assert " object at 0x" not in str(e.value)
    with pytest.raises(downloader.CoverError) as e:
        downloader.download_cover(
            "http://127.0.0.1:9/x.jpg", session, FAST, downloader.CoverCache(None)
        )
    assert e.value.reason == "connection_error"
    assert " object at 0x" not in str(e.value)


# --- One deadline per cover: before the request, TLS, waits and local files --------

# Timeouts far longer than the deadline, so only the deadline can end these.
PATIENT = dataclasses.replace(
    FAST, connect_timeout_s=30.0, read_timeout_s=30.0, deadline_s=1.5, max_retries=3
)


def test_a_name_that_never_resolves_fails_at_the_deadline():
    never = threading.Event()

    def stuck_resolver(*args):
        never.wait()  # a resolver that never answers (released at the end)

    with downloader.make_session(2, resolver=stuck_resolver) as session:
        started = time.monotonic()
        with pytest.raises(downloader.CoverError) as e:
            fetching.fetch_url("http://covers.test/a.jpg", session, PATIENT)
        elapsed = time.monotonic() - started
    never.set()
    assert e.value.reason == "deadline"
    assert elapsed < PATIENT.deadline_s + SLACK_S


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    "host",
    [cs.FullBacklog, cs.SilentListener],
    ids=["connect-never-completes", "accepts-never-speaks"],
)
def test_a_host_that_stalls_before_answering_fails_at_the_deadline(session, scheme, host):
    # A full accept queue: the TCP handshake never completes. A silent listener: over
    # HTTPS the TLS handshake never completes; over HTTP the request goes unanswered.
    stalling = host()
    try:
        started = time.monotonic()
        with pytest.raises(downloader.CoverError) as e:
            fetching.fetch_url(f"{scheme}://127.0.0.1:{stalling.port}/a.jpg", session, PATIENT)
        elapsed = time.monotonic() - started
    finally:
        stalling.close()
    assert e.value.reason == "deadline"
    assert elapsed < PATIENT.deadline_s + SLACK_S


def test_https_with_a_trusted_throwaway_certificate_is_fetched(tmp_path):
    cert = cs.throwaway_certificate(str(tmp_path))
    server = cs.CoverServer(tls=cert)
    server.routes["/ok.jpg"] = cs.send_bytes(images.jpeg())
    try:
        with downloader.make_session(2) as session:
            session.trust_env = False  # REQUESTS_CA_BUNDLE would win over session.verify
            session.verify = cert[0]
            assert_cover(fetch(server, session, "/ok.jpg")[0])
            session.verify = True  # the system's roots do not know it
            with pytest.raises(downloader.CoverError) as e:
                fetch(server, session, "/ok.jpg")
            assert e.value.reason == "connection_error"
    finally:
        server.close()


def test_a_retry_after_past_the_deadline_is_not_waited(server, session):
    server.routes["/busy.jpg"] = cs.send_status(503, {"Retry-After": "3600"})
    cfg = dataclasses.replace(PATIENT, backoff_max_s=7200.0)
    started = time.monotonic()
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/busy.jpg", cfg=cfg)
    assert time.monotonic() - started < SLACK_S
    assert e.value.reason == "http_503"
    assert "would pass the 1.5 s deadline" in e.value.detail
    assert server.requests["/busy.jpg"] == 1


def test_waits_between_attempts_count_against_the_deadline(server, session):
    server.routes["/busy.jpg"] = cs.send_status(503, {"Retry-After": "1"})
    cfg = dataclasses.replace(PATIENT, deadline_s=2.5, max_retries=10)
    started = time.monotonic()
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/busy.jpg", cfg=cfg)
    assert time.monotonic() - started < cfg.deadline_s + SLACK_S
    assert e.value.reason == "http_503"
    assert 2 <= server.requests["/busy.jpg"] <= 3  # not the 11 tries allowed


def test_a_fifo_is_refused_without_blocking(tmp_path, session):
    fifo = tmp_path / "cover.jpg"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(downloader.CoverError) as e:
        fetching.fetch_url(str(fifo), session, PATIENT)
    assert time.monotonic() - started < SLACK_S
    assert e.value.reason == "not_a_file"
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    with pytest.raises(downloader.CoverError) as e:
        fetching.fetch_url(str(folder), session, PATIENT)
    assert e.value.reason == "not_a_file"


def test_a_local_read_that_blocks_fails_at_the_deadline(tmp_path):
    # What a stalled network mount does to open(): a filesystem TensorFlow reads
    # through that never answers. ram:// files are read under a held lock here.
    started = time.monotonic()
    release = threading.Event()

    def blocked(path, max_bytes):
        release.wait()
        return b""

    original = local_files._read_file
    local_files._read_file = blocked
    try:
        with pytest.raises(downloader.CoverError) as e:
            local_files.read_local(str(tmp_path / "a.jpg"), 100, timeout_s=1.0)
    finally:
        local_files._read_file = original
        release.set()
    assert e.value.reason == "deadline"
    assert time.monotonic() - started < 1.0 + SLACK_S


@pytest.mark.parametrize("value", ["\u00b2", "12abc", "-5", "1e3"])
def test_a_content_length_that_is_not_a_plain_number_has_its_own_reason(server, session, value):
    def handler(request, attempt):
        request.send_response(200)
        request.send_header("Content-Length", value)
        request.end_headers()

    server.routes["/odd.jpg"] = handler
    with pytest.raises(downloader.CoverError) as e:
        fetch(server, session, "/odd.jpg")
    assert e.value.reason == "bad_content_length"


def test_a_retry_after_that_is_not_a_number_or_date_is_ignored(server, session):
    server.routes["/busy.jpg"] = cs.fail_then(
        cs.send_status(503, {"Retry-After": "\u00b2"}), cs.send_bytes(images.jpeg())
    )
    assert_cover(fetch(server, session, "/busy.jpg")[0])
    assert fetching.backoff_delay(0, FAST, retry_after="\u00b2") <= FAST.backoff_base_s


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"HTTP_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "covers.invalid"},
        {"REQUESTS_CA_BUNDLE": "/etc/bundle.pem"},
    ],
)
def test_a_request_is_prepared_as_requests_would_prepare_it(environment, monkeypatch, tmp_path):
    """The GET goes out with what session.prepare_request and merge_environment_settings
    give (headers, URL credentials, ~/.netrc, proxies, no_proxy, CA bundle), though the
    environment is read once per host; the session's own settings still count when they
    change after the first request. Nothing is sent here."""
    import requests

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    (tmp_path / ".netrc").write_text("machine netrc.invalid login reader password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    urls = [
        "http://covers.invalid/a.jpg",
        "http://other.invalid/b.jpg",
        "http://user:pw@other.invalid/c.jpg",
        "https://netrc.invalid/d.jpg",
        "http://covers.invalid/e f.jpg?size=1&q=%7e",  # the host's headers, prepared again
        "http://user:pw@other.invalid/g.jpg",
        "https://netrc.invalid/h.jpg",
    ]
    changes = (
        lambda: None,
        lambda: setattr(session, "verify", "/mine.pem"),
        lambda: session.headers.update({"User-Agent": "changed", "X-Extra": "1"}),
    )
    with downloader.make_session(2) as session:
        for change in changes:
            change()
            for url in urls:
                expected = session.prepare_request(requests.Request("GET", url))
                settings = session.merge_environment_settings(url, {}, True, None, None)
                prepared, found = fetching._prepared_get(url, session)
                assert (prepared.method, prepared.url) == (expected.method, expected.url)
                assert prepared.headers == expected.headers, url
                assert found == {**settings, "stream": True}, url
        assert "Authorization" in fetching._prepared_get(urls[3], session)[0].headers


def test_a_session_remembers_a_bounded_number_of_hosts(monkeypatch):
    """What is read and prepared per host is kept for a bounded number of hosts: a CSV
    naming a new host on every row does not grow the session without end. Nothing is
    sent here."""
    monkeypatch.setattr(fetching, "MAX_HOSTS_REMEMBERED", 3)
    with downloader.make_session(2) as session:
        for n in range(10):
            url = f"http://host{n}.invalid/cover.jpg"
            prepared, _ = fetching._prepared_get(url, session)
            assert prepared.url == url and prepared.headers["User-Agent"]
            assert len(session._prepared_headers) <= 3 and len(session._environment) <= 3
