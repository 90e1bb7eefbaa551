"""Pairing a device (RFC 8628) against the real server: with oauthlib's DeviceClient, a real
third-party device-flow client, and with this package's own helpers.

The server fixture polls at 1s (``MULTITOKEN_PAIRING_INTERVAL``); ``short_pairing_server``'s codes
expire after 2s.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from urllib.parse import parse_qs

import pytest
import requests
from oauthlib.oauth2 import DeviceClient
from oauthlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidGrantError,
    OAuth2Error,
    UnsupportedGrantTypeError,
)

from multitoken import Client, MultitokenError, PairingDenied, PairingError, PairingExpired
from multitoken.client import DEVICE_CODE_GRANT

CLIENT_ID = "thermostat-firmware"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def device_authorization(url: str, **form: str) -> dict:
    """RFC 8628 §3.1's request, sent as the RFC has it (oauthlib has no helper for this one)."""
    answer = requests.post(f"{url}/api/pair/", data={"client_id": CLIENT_ID, **form}, timeout=10)
    assert answer.status_code == 200, f"POST /api/pair/: {answer.status_code} {answer.text}"
    assert answer.headers.get("Cache-Control") == "no-store", f"cacheable codes: {answer.headers}"
    return answer.json()


def signed_in(server) -> tuple:
    """A new user and a Client holding their session key: ``(username, client)``."""
    username, password = server.create_user("owner")
    approver = Client(server.url)
    approver.login(username, password)
    return username, approver


def poll(url: str, body: str) -> requests.Response:
    """One RFC 8628 §3.4 poll with a body oauthlib prepared."""
    return requests.post(f"{url}/api/pair/token/", data=body, headers=FORM, timeout=10)


def run_in_thread(target):
    """Runs ``target`` in a thread; returns a ``join`` that gives its result or raises its error."""
    outcome = {}

    def run():
        try:
            outcome["result"] = target()
        except Exception as error:  # noqa: BLE001 (join() raises it in the main thread)
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float = 60):
        thread.join(timeout)
        assert not thread.is_alive(), f"the device side still runs after {timeout}s"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    return join


def wait_for(condition, seconds: float = 30, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_oauthlib_device_client_pairs_with_the_server(server, monkeypatch):
    username, approver = signed_in(server)
    started = device_authorization(server.url, name="hall thermostat", scope="ignored")
    assert set(started) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }, f"RFC 8628 §3.2 fields: {started}"
    assert USER_CODE.match(started["user_code"]), f"user code format: {started['user_code']!r}"
    assert started["verification_uri"] == f"{server.url}/pair", started
    assert started["verification_uri_complete"] == (
        f"{server.url}/pair?code={started['user_code']}"
    ), started
    assert started["interval"] == 1, f"the fixture sets MULTITOKEN_PAIRING_INTERVAL=1s: {started}"
    assert started["expires_in"] > 0, started

    oauth = DeviceClient(CLIENT_ID)
    body = oauth.prepare_request_body(device_code=started["device_code"], include_client_id=True)
    assert parse_qs(body) == {
        "grant_type": [DEVICE_CODE_GRANT],
        "device_code": [started["device_code"]],
        "client_id": [CLIENT_ID],
    }, f"oauthlib's token request: {body}"

    seen = []  # (RFC error code or "token", HTTP status), in order
    pending = threading.Event()

    def device():
        interval = started["interval"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(interval)
            answer = poll(server.url, body)
            assert answer.headers.get("Cache-Control") == "no-store", answer.headers
            try:
                token = oauth.parse_request_body_response(answer.text)
            except OAuth2Error as error:
                seen.append((error.error, answer.status_code))
                if error.error == "authorization_pending":
                    pending.set()
                elif error.error == "slow_down":
                    interval += 5
                else:
                    raise
            else:
                seen.append(("token", answer.status_code))
                return token
        raise AssertionError(f"no token within 30s; polls: {seen}")

    join = run_in_thread(device)
    assert pending.wait(30), f"the device never saw authorization_pending: {seen}"
    approved = approver.approve_pairing(started["user_code"])
    token = join()

    assert seen[0] == ("authorization_pending", 400), f"polls: {seen}"
    assert seen[-1] == ("token", 200), f"polls: {seen}"
    assert ("slow_down", 400) not in seen, f"polling every interval must not be too fast: {seen}"
    assert approved["token_name"] == "hall thermostat", f"the device's suggestion: {approved}"

    assert token["access_token"].startswith("mt_"), f"no key in oauthlib's token: {token}"
    assert token["token_type"] == "Bearer", token
    assert (token["token_id"], token["token_name"], token["user"]) == (
        approved["token_id"],
        "hall thermostat",
        username,
    ), token
    assert "expires_in" not in token, f"approved without expiry, so none: {token}"
    assert (oauth.access_token, oauth.token_type) == (token["access_token"], "Bearer"), (
        "oauthlib did not take the token in"
    )

    me = Client(server.url, token["access_token"]).me()
    assert me["user"] == username, f"the key is someone else's: {me}"
    assert (me["token"]["id"], me["token"]["name"], me["token"]["kind"]) == (
        approved["token_id"],
        "hall thermostat",
        "device",
    ), me
    # And as oauthlib sends it: Authorization: Bearer ... (oauthlib wants https unless told).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    uri, headers, _ = oauth.add_token(f"{server.url}/api/me/", http_method="GET")
    assert headers["Authorization"] == f"Bearer {token['access_token']}", headers
    answer = requests.get(uri, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["user"] == username, answer.text

    again = poll(server.url, body)
    assert again.status_code == 400, f"a second collection: {again.status_code} {again.text}"
    with pytest.raises(InvalidGrantError):
        DeviceClient(CLIENT_ID).parse_request_body_response(again.text)


def test_oauthlib_reads_every_poll_error(server, short_pairing_server):
    """What oauthlib raises for each of the server's RFC 8628 §3.5 / RFC 6749 §5.2 answers."""
    _, approver = signed_in(server)
    oauth = DeviceClient(CLIENT_ID)
    answers = {}

    def keep(code: str, answer: requests.Response):
        assert answer.status_code == 400, f"{code}: {answer.status_code} {answer.text}"
        assert answer.json()["error"] == code, f"wanted {code}: {answer.text}"
        answers[code] = answer

    waiting = device_authorization(server.url)
    body = oauth.prepare_request_body(device_code=waiting["device_code"], include_client_id=True)
    keep("authorization_pending", poll(server.url, body))
    keep("slow_down", poll(server.url, body))

    denied = device_authorization(server.url)
    approver.deny_pairing(denied["user_code"])
    keep("access_denied", poll(server.url, oauth.prepare_request_body(denied["device_code"])))

    short = device_authorization(short_pairing_server.url)
    assert short["expires_in"] == 2, short
    time.sleep(2.2)
    keep(
        "expired_token",
        poll(short_pairing_server.url, oauth.prepare_request_body(short["device_code"])),
    )

    keep("invalid_grant", poll(server.url, oauth.prepare_request_body("not-a-device-code")))
    keep("invalid_request", poll(server.url, f"grant_type={DEVICE_CODE_GRANT}"))
    keep("unsupported_grant_type", poll(server.url, "grant_type=password&device_code=x"))

    raised = {}
    for code, answer in answers.items():
        with pytest.raises(OAuth2Error) as error:
            DeviceClient(CLIENT_ID).parse_request_body_response(answer.text)
        assert error.value.error == code, f"oauthlib read {code} as {error.value.error}"
        assert error.value.description == answer.json()["error_description"], error.value
        raised[code] = type(error.value)
    # The codes RFC 6749 itself defines get oauthlib's own classes. (oauthlib 4.0.1 raises its
    # CustomOAuth2Error for authorization_pending, slow_down and expired_token, although it
    # defines classes for them in oauthlib.oauth2.rfc8628.errors, and InvalidClientIdError for
    # invalid_request; so only .error is checked for those.)
    assert issubclass(raised["access_denied"], AccessDeniedError), raised
    assert issubclass(raised["invalid_grant"], InvalidGrantError), raised
    assert issubclass(raised["unsupported_grant_type"], UnsupportedGrantTypeError), raised
    # slow_down carries the grown interval, which oauthlib's error does not keep.
    assert answers["slow_down"].json()["interval"] == waiting["interval"] + 5, answers["slow_down"]


def test_wait_for_pairing_honours_the_interval_and_returns_the_token(server):
    username, approver = signed_in(server)
    device = Client(server.url)
    started = device.start_pairing("kitchen display", client_id=CLIENT_ID)
    assert USER_CODE.match(started["user_code"]) and started["interval"] == 1, started

    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    join = run_in_thread(
        lambda: device.wait_for_pairing(
            started["device_code"],
            started["interval"],
            started["expires_in"],
            client_id=CLIENT_ID,
            sleep=sleep,
        )
    )
    # A second wait begins only after a poll answered authorization_pending.
    wait_for(lambda: len(sleeps) >= 2, what="a pending poll")
    approved = approver.approve_pairing(
        started["user_code"],
        "kitchen screen",
        read_only=True,
        scopes=["display:read"],
        expires_in_days=7,
    )
    token = join()

    assert set(sleeps) == {1}, f"must wait the interval before every poll, and no more: {sleeps}"
    assert token["token_type"] == "Bearer" and token["access_token"].startswith("mt_"), token
    assert (token["token_id"], token["token_name"], token["user"]) == (
        approved["token_id"],
        "kitchen screen",
        username,
    ), token
    assert 7 * 86400 - 120 <= token["expires_in"] <= 7 * 86400, f"7 days: {token}"
    assert device.key is None, "wait_for_pairing hands the key over and does not keep it"

    me = Client(server.url, token["access_token"]).me()
    assert me["user"] == username, me
    assert (me["token"]["name"], me["token"]["read_only"], me["token"]["scopes"]) == (
        "kitchen screen",
        True,
        ["display:read"],
    ), f"the approver's policy: {me}"

    with pytest.raises(PairingError) as collected:
        device.wait_for_pairing(started["device_code"], 0)
    assert collected.value.error == "invalid_grant", f"a token is handed out once: {collected}"
    assert collected.value.status_code == 400 and collected.value.description, collected.value


def test_pair_device_keeps_the_key(server):
    username, approver = signed_in(server)
    codes = queue.Queue()
    device = Client(server.url)
    join = run_in_thread(lambda: device.pair_device("garage door", on_code=codes.put, timeout=30))
    started = codes.get(timeout=10)
    assert USER_CODE.match(started["user_code"]), started
    approver.approve_pairing(started["user_code"])
    token = join()

    assert device.key == token["access_token"], "pair_device keeps the key, like login"
    assert device.me()["token"]["name"] == "garage door"
    assert device.me()["user"] == username


def test_wait_for_pairing_stops_on_deny(server):
    _, approver = signed_in(server)
    device = Client(server.url)
    started = device.start_pairing()
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    join = run_in_thread(
        lambda: device.wait_for_pairing(
            started["device_code"], started["interval"], started["expires_in"], sleep=sleep
        )
    )
    wait_for(lambda: len(sleeps) >= 2, what="a pending poll")
    assert approver.deny_pairing(started["user_code"]) == {"state": "denied"}
    with pytest.raises(PairingDenied) as denied:
        join()
    assert (denied.value.error, denied.value.status_code) == ("access_denied", 400), denied.value

    for decide in (approver.deny_pairing, approver.approve_pairing):
        with pytest.raises(MultitokenError) as used:
            decide(started["user_code"])
        assert used.value.status_code == 404, f"a denied code is used up: {used.value}"


def test_slow_down_grows_the_interval_by_five_seconds(server):
    _, approver = signed_in(server)
    device = Client(server.url)

    # Polling twice at once: the server asks for 5 more seconds (RFC 8628 §3.5).
    started = device.start_pairing()
    with pytest.raises(PairingError) as first:
        device.poll_pairing(started["device_code"])
    assert first.value.error == "authorization_pending", first.value
    with pytest.raises(PairingError) as second:
        device.poll_pairing(started["device_code"])
    assert second.value.error == "slow_down", second.value
    assert second.value.interval == started["interval"] + 5, second.value.body

    # wait_for_pairing, told to poll without waiting, is slowed down and then waits the new
    # interval. The owner approves during that wait; this fake sleep does not really wait, as
    # the server hands out approved tokens without pacing.
    started = device.start_pairing()
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if seconds > 0:
            approver.approve_pairing(started["user_code"])

    token = device.wait_for_pairing(started["device_code"], 0, started["expires_in"], sleep=sleep)
    assert sleeps == [0, 0, started["interval"] + 5], f"pending, slow_down, then 6s: {sleeps}"
    assert token["access_token"].startswith("mt_"), token


def test_pairing_codes_expire(short_pairing_server):
    device = Client(short_pairing_server.url)
    started = device.start_pairing()
    assert started["expires_in"] == 2, started
    begun = time.monotonic()
    with pytest.raises(PairingExpired) as expired:
        device.wait_for_pairing(started["device_code"], started["interval"])
    assert (expired.value.error, expired.value.status_code) == ("expired_token", 400), (
        f"the server itself must say so: {expired.value}"
    )
    assert time.monotonic() - begun < 10, "stopped polling late"

    _, approver = signed_in(short_pairing_server)
    with pytest.raises(MultitokenError) as late:
        approver.approve_pairing(started["user_code"])
    assert late.value.status_code == 404, f"an expired code can't be approved: {late.value}"

    # With its own deadline the helper stops too, by the server's answer or its own clock.
    started = device.start_pairing()
    with pytest.raises(PairingExpired):
        device.wait_for_pairing(started["device_code"], started["interval"], started["expires_in"])


def test_pairing_refusals(server):
    username, approver = signed_in(server)
    device = Client(server.url)
    with pytest.raises(MultitokenError) as long_name:
        device.start_pairing("x" * 65)
    # RFC 8628 §3.2: the device authorization endpoint answers OAuth-shaped errors.
    assert long_name.value.status_code == 400, long_name.value.body
    assert long_name.value.body["error"] == "invalid_request", long_name.value.body
    assert "64" in long_name.value.body["error_description"], long_name.value.body

    with pytest.raises(MultitokenError) as unknown:
        approver.approve_pairing("BCDF-GHJK")
    assert unknown.value.status_code == 404, unknown.value

    started = device.start_pairing()
    with pytest.raises(MultitokenError) as anonymous:
        Client(server.url).approve_pairing(started["user_code"])
    assert anonymous.value.status_code == 401, anonymous.value

    read_only = approver.create_device_token("viewer", read_only=True)["id_token"]
    with pytest.raises(MultitokenError) as limited:
        Client(server.url, read_only).approve_pairing(started["user_code"])
    assert limited.value.status_code == 403, f"approving needs a full-access key: {limited.value}"

    # The code is typed in any case, without its dash.
    typed = started["user_code"].replace("-", "").lower()
    assert approver.approve_pairing(typed)["token_name"] == f"device {started['user_code']}", (
        "without a suggestion or a name, the token is named after the code"
    )
    assert device.wait_for_pairing(started["device_code"], 0)["user"] == username
