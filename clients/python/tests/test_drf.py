"""MultitokenAuthentication and HasScope in a Django project, against the real server."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from multitoken import Client
from multitoken.contrib.drf import CACHE_KEY_PREFIX


@pytest.fixture
def user(drf):
    """A fresh multitoken user, logged in: ``(username, Client)``."""
    username, password = drf.create_user()
    client = Client(drf.url)
    client.login(username, password)
    return username, client


def api(key=None, scheme="Token", **extra):
    client = APIClient(**extra)
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    return client


def test_valid_key_gets_the_user_and_token(user):
    username, client = user

    answer = api(client.key).get("/whoami/")

    assert answer.status_code == 200, f"valid key refused: {answer.status_code} {answer.content}"
    body = answer.json()
    assert body["user"] == username and body["token_username"] == username, body
    assert body["token_id"] == client.me()["token"]["id"], (
        f"request.auth names another token: {body}"
    )
    assert body["read_only"] is False and body["scopes"] == [], body
    created = get_user_model().objects.get(username=username)
    assert not created.has_usable_password(), (
        "a user created on first sight must have no password here"
    )


def test_bearer_scheme_works_too(user):
    _, client = user
    answer = api(client.key, scheme="Bearer").get("/whoami/")
    assert answer.status_code == 200, f"Bearer refused: {answer.content}"


def test_no_header_is_401_with_www_authenticate(drf):
    answer = api().get("/whoami/")
    assert answer.status_code == 401, f"expected 401, got {answer.status_code}"
    assert answer["WWW-Authenticate"].startswith("Token"), "401 must say how to authenticate"


def test_unknown_key_is_401_with_the_server_text(drf):
    bogus = "mt_" + "a" * 36
    answer = api(bogus).get("/whoami/")
    assert answer.status_code == 401, f"expected 401, got {answer.status_code}"
    assert answer.json() == {"detail": "Invalid or Inactive Token"}, answer.content
    assert "WWW-Authenticate" in answer, "401 must carry WWW-Authenticate"


def test_scope_is_required(user):
    _, client = user
    plain = client.create_device_token("no scopes")["id_token"]
    billing = client.create_device_token("billing", scopes=["billing"])["id_token"]

    refused = api(plain).get("/billing/")
    assert refused.status_code == 403, f"missing scope must be 403, got {refused.status_code}"
    assert "Insufficient scope" in refused.json()["detail"], refused.content

    allowed = api(billing).get("/billing/")
    assert allowed.status_code == 200, f"scoped key refused: {allowed.content}"

    assert api().get("/billing/").status_code == 401, "no key on a scoped view is still a 401"


def test_read_only_token_is_visible_and_cannot_write(user):
    _, client = user
    key = client.create_device_token("reader", read_only=True, scopes=["read"])["id_token"]

    read = api(key).get("/whoami/")
    assert read.status_code == 200, read.content
    assert read.json()["read_only"] is True, f"read_only not on request.auth: {read.json()}"
    assert read.json()["scopes"] == ["read"], read.json()

    write = api(key).post("/whoami/")
    assert write.status_code == 403, f"a read-only token must not write: {write.status_code}"
    assert write.json() == {"detail": "This token is read-only"}, write.content


def test_revocation_reaches_the_app_within_the_cache_bound(user):
    _, client = user
    device = client.create_device_token("revoked soon")

    with override_settings(MULTITOKEN_CACHE_SECONDS=1):
        assert api(device["id_token"]).get("/whoami/").status_code == 200, "valid key refused"
        client.delete_token(device["id"])
        time.sleep(1.5)
        answer = api(device["id_token"]).get("/whoami/")
    assert answer.status_code == 401, (
        f"revoked key still accepted after the bound: {answer.status_code}"
    )


def test_positive_answers_are_served_from_the_cache(user):
    _, client = user
    device = client.create_device_token("cached")

    # A bound far longer than the test, so that "still cached" does not depend on timing.
    with override_settings(MULTITOKEN_CACHE_SECONDS=300):
        assert api(device["id_token"]).get("/whoami/").status_code == 200, "valid key refused"
        client.delete_token(device["id"])
        cached = api(device["id_token"]).get("/whoami/")
        assert cached.status_code == 200, "the positive answer should come from the cache"
        entries = list(cache._cache)  # LocMemCache's own keys
        assert any(CACHE_KEY_PREFIX in entry for entry in entries), f"nothing cached: {entries}"
        assert not any(device["id_token"] in entry for entry in entries), (
            "the cache must be keyed by a digest, never the key"
        )
        cache.clear()
        fresh = api(device["id_token"]).get("/whoami/")
    assert fresh.status_code == 401, (
        f"revoked key accepted once the cache is gone: {fresh.status_code}"
    )


def test_network_bound_token_is_checked_against_the_end_client(user):
    _, client = user
    key = client.create_device_token("office", allowed_ips=["192.0.2.0/24"])["id_token"]

    inside = api(key, REMOTE_ADDR="192.0.2.7").get("/whoami/")
    assert inside.status_code == 200, f"client inside the network refused: {inside.content}"
    outside = api(key, REMOTE_ADDR="198.51.100.1").get("/whoami/")
    assert outside.status_code == 401, "a cached answer for one address must not serve another"


def test_unknown_users_refused_when_creation_is_off(drf):
    username, password = drf.create_user("stranger")
    key = Client(drf.url).login(username, password)

    with override_settings(MULTITOKEN_CREATE_USERS=False):
        answer = api(key).get("/whoami/")
    assert answer.status_code == 401, (
        f"expected 401 for an unknown Django user: {answer.status_code}"
    )
    assert not get_user_model().objects.filter(username=username).exists(), "user was created"


def test_inactive_django_user_is_refused(user):
    username, client = user
    assert api(client.key).get("/whoami/").status_code == 200
    get_user_model().objects.filter(username=username).update(is_active=False)

    answer = api(client.key).get("/whoami/")
    assert answer.status_code == 401, (
        f"an inactive Django user must be refused: {answer.status_code}"
    )


def test_introspection_mode_with_an_admin_token(user, drf):
    _, client = user
    key = client.create_device_token("introspected", scopes=["billing"])["id_token"]

    with override_settings(MULTITOKEN_ADMIN_TOKEN=drf.admin_key, MULTITOKEN_CACHE_SECONDS=0):
        allowed = api(key).get("/billing/")
        assert allowed.status_code == 200, f"introspection refused a valid key: {allowed.content}"
        session_key = client.key
        assert api(session_key).get("/whoami/").status_code == 200, "session key refused"
        client.logout()
        refused = api(session_key).get("/whoami/")
    assert refused.status_code == 401, (
        f"revoked key accepted by introspection: {refused.status_code}"
    )


def test_unreachable_server_never_lets_a_request_through(user, unreachable_url):
    _, client = user
    with override_settings(MULTITOKEN_URL=unreachable_url, MULTITOKEN_TIMEOUT=2):
        answer = api(client.key).get("/whoami/")
    assert answer.status_code == 503, f"an outage must be a 503, got {answer.status_code}"
