"""HMAC request signing: what passes, what is refused, and the exact scheme."""

from __future__ import annotations

import hashlib
import hmac
import threading

import pytest

from bridge.errors import RateLimitExceeded, Unauthorized
from bridge.signing import Verifier, path_from_environ, sign
from tests.support.fakes import FakeClock

SECRET = "s3cret-for-tests"
BODY = b'{"model": "m", "prompt": "hi"}'


def make_verifier(clock: FakeClock, **kw: int) -> Verifier:
    return Verifier(SECRET, clock=clock, **kw)


def signed(clock: FakeClock, **kw: str) -> dict[str, str]:
    return sign(SECRET, "POST", "/generate?x=1", BODY, timestamp=int(clock()), **kw)


def test_a_signed_request_passes_and_headers_are_case_insensitive() -> None:
    clock = FakeClock(1_700_000_000)
    headers = {k.lower(): v for k, v in signed(clock).items()}
    assert make_verifier(clock).verify("POST", "/generate?x=1", headers, BODY) is None


def test_the_signature_is_hmac_sha256_over_the_documented_canonical_string() -> None:
    headers = sign(b"k", "post", "/info?a=b", b"body", timestamp=1234, nonce="n" * 16)
    digest = hashlib.sha256(b"body").hexdigest()
    canonical = "\n".join(["bridge-hmac-v2", "POST", "/info?a=b", "1234", "n" * 16, "", digest])
    expected = hmac.new(b"k", canonical.encode(), hashlib.sha256).hexdigest()
    assert headers == {
        "X-Bridge-Timestamp": "1234",
        "X-Bridge-Nonce": "n" * 16,
        "X-Bridge-Signature": expected,
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/generate?x=1", BODY), ("POST", "/generate?x=2", BODY),
     ("POST", "/generate", BODY), ("POST", "/generate?x=1", BODY + b" ")],
)  # fmt: skip
def test_any_change_to_method_path_query_or_body_breaks_the_signature(
    method: str, path: str, body: bytes
) -> None:
    clock = FakeClock(1_700_000_000)
    with pytest.raises(Unauthorized, match="Invalid request signature"):
        make_verifier(clock).verify(method, path, signed(clock), body)


def test_a_wrong_secret_is_refused() -> None:
    clock = FakeClock(1_700_000_000)
    headers = sign("other", "POST", "/generate", BODY, timestamp=int(clock()))
    with pytest.raises(Unauthorized, match="Invalid request signature"):
        make_verifier(clock).verify("POST", "/generate", headers, BODY)


@pytest.mark.parametrize("missing", ["X-Bridge-Timestamp", "X-Bridge-Nonce", "X-Bridge-Signature"])
def test_a_missing_header_is_refused(missing: str) -> None:
    clock = FakeClock(1_700_000_000)
    headers = signed(clock)
    del headers[missing]
    with pytest.raises(Unauthorized, match="Missing request signature"):
        make_verifier(clock).verify("POST", "/generate?x=1", headers, BODY)


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_outside_the_window_is_refused(offset: int) -> None:
    clock = FakeClock(1_700_000_000)
    headers = signed(clock)
    clock.advance(offset)
    with pytest.raises(Unauthorized, match="Stale"):
        make_verifier(clock).verify("POST", "/generate?x=1", headers, BODY)


def test_a_replayed_request_is_refused_and_stays_refused_after_the_window() -> None:
    clock = FakeClock(1_700_000_000)
    verifier = make_verifier(clock)
    headers = signed(clock)
    verifier.verify("POST", "/generate?x=1", headers, BODY)
    with pytest.raises(Unauthorized, match="Replayed"):
        verifier.verify("POST", "/generate?x=1", headers, BODY)
    clock.advance(300)
    with pytest.raises(Unauthorized, match="Replayed"):
        verifier.verify("POST", "/generate?x=1", headers, BODY)
    clock.advance(1)
    with pytest.raises(Unauthorized, match="Stale"):
        verifier.verify("POST", "/generate?x=1", headers, BODY)


def test_the_nonce_cache_is_bounded_and_forgets_expired_nonces() -> None:
    clock = FakeClock(1_700_000_000)
    verifier = make_verifier(clock, max_nonces=2)
    for _ in range(2):
        verifier.verify("POST", "/generate?x=1", signed(clock), BODY)
    with pytest.raises(RateLimitExceeded) as caught:
        verifier.verify("POST", "/generate?x=1", signed(clock), BODY)
    assert caught.value.retry_after == 300
    clock.advance(301)
    verifier.verify("POST", "/generate?x=1", signed(clock), BODY)


def test_one_key_filling_its_window_does_not_lock_out_another() -> None:
    clock = FakeClock(1_700_000_000)
    keys = {"alice": "a" * 32, "bob": "b" * 32}
    verifier = Verifier(keys.get, clock=clock, max_nonces=3)

    def by(who: str) -> dict[str, str]:
        return sign(keys[who], "GET", "/info", b"", key_id=who, timestamp=int(clock()))

    for _ in range(3):
        verifier.verify("GET", "/info", by("bob"), b"")
    with pytest.raises(RateLimitExceeded, match="for this key"):
        verifier.verify("GET", "/info", by("bob"), b"")
    assert verifier.verify("GET", "/info", by("alice"), b"") == "alice"  # unaffected
    clock.advance(301)
    assert verifier.verify("GET", "/info", by("bob"), b"") == "bob"  # bob's window expired


def test_a_bad_signature_does_not_use_up_the_nonce() -> None:
    clock = FakeClock(1_700_000_000)
    verifier = make_verifier(clock)
    headers = signed(clock)
    with pytest.raises(Unauthorized):
        verifier.verify("POST", "/generate?x=1", headers, BODY + b"tampered")
    verifier.verify("POST", "/generate?x=1", headers, BODY)


def test_key_ids_select_the_secret() -> None:
    clock = FakeClock(1_700_000_000)
    keys = {"alice": "a" * 32, "bob": "b" * 32}
    verifier = Verifier(keys.get, clock=clock)
    headers = sign(keys["bob"], "GET", "/info", b"", key_id="bob", timestamp=int(clock()))
    assert verifier.verify("GET", "/info", headers, b"") == "bob"
    forged = sign(keys["bob"], "GET", "/info", b"", key_id="alice", timestamp=int(clock()))
    unknown = sign("x", "GET", "/info", b"", key_id="carol", timestamp=int(clock()))
    for headers in (forged, unknown):
        with pytest.raises(Unauthorized, match="Invalid request signature"):
            verifier.verify("GET", "/info", headers, b"")


def test_concurrent_replays_let_exactly_one_through() -> None:
    clock = FakeClock(1_700_000_000)
    verifier = make_verifier(clock)
    headers = signed(clock)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        try:
            verifier.verify("POST", "/generate?x=1", headers, BODY)
            outcomes.append("ok")
        except Unauthorized:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7


def test_the_signed_path_of_a_wsgi_request() -> None:
    assert path_from_environ({"RAW_URI": "/generate?a=1", "PATH_INFO": "/x"}) == "/generate?a=1"
    environ = {"PATH_INFO": "/models/a b", "QUERY_STRING": "q=1", "SCRIPT_NAME": ""}
    assert path_from_environ(environ) == "/models/a%20b?q=1"
    assert path_from_environ({"PATH_INFO": "/info"}) == "/info"


def test_the_key_id_is_signed_and_older_v1_signatures_still_verify() -> None:
    clock = FakeClock(1_700_000_000)
    headers = sign(b"k", "GET", "/info", b"", key_id="a", timestamp=int(clock()), nonce="m" * 16)
    canonical = "\n".join(["bridge-hmac-v2", "GET", "/info", str(int(clock())), "m" * 16, "a",
                           hashlib.sha256(b"").hexdigest()])
    assert headers["X-Bridge-Signature"] == hmac.new(b"k", canonical.encode(),
                                                     hashlib.sha256).hexdigest()
    v1 = "\n".join(["bridge-hmac-v1", "GET", "/info", str(int(clock())), "v" * 16,
                    hashlib.sha256(b"").hexdigest()])
    old = {"X-Bridge-Timestamp": str(int(clock())), "X-Bridge-Nonce": "v" * 16,
           "X-Bridge-Signature": hmac.new(b"k", v1.encode(), hashlib.sha256).hexdigest()}
    assert Verifier(b"k", clock=clock).verify("GET", "/info", old) is None


def test_a_replay_under_another_key_id_header_is_refused() -> None:
    """One secret whatever the key-id header says (the worker): the nonce is that secret's."""
    clock = FakeClock(1_700_000_000)
    verifier = Verifier(b"k", clock=clock)
    v1 = "\n".join(["bridge-hmac-v1", "GET", "/info", str(int(clock())), "r" * 16,
                    hashlib.sha256(b"").hexdigest()])
    captured = {"X-Bridge-Timestamp": str(int(clock())), "X-Bridge-Nonce": "r" * 16,
                "X-Bridge-Signature": hmac.new(b"k", v1.encode(), hashlib.sha256).hexdigest()}
    verifier.verify("GET", "/info", captured)
    for key_id in ("other", "x" * 40):
        with pytest.raises(Unauthorized, match="Replayed"):
            verifier.verify("GET", "/info", {**captured, "X-Bridge-Key-Id": key_id})
    signed_v2 = sign(b"k", "GET", "/info", b"", key_id="w", timestamp=int(clock()))
    verifier.verify("GET", "/info", signed_v2)
    with pytest.raises(Unauthorized, match="Invalid request signature"):
        verifier.verify("GET", "/info", {**signed_v2, "X-Bridge-Key-Id": "other"})
