"""multitoken.Client end to end against the real server."""

import pytest

from multitoken import Client, MultitokenError, MultitokenUnreachable, TokenInfo


def test_login_me_and_logout(server):
    username, password = server.create_user()
    client = Client(server.url)

    key = client.login(username, password)
    assert key.startswith("mt_") and len(key) == 39, f"unexpected key format: {key!r}"
    assert client.key == key, "login must keep the key for later calls"

    me = client.me()
    assert me["user"] == username, f"/api/me/ names someone else: {me}"
    assert me["token"]["kind"] == "session", f"a login gives a session token: {me}"

    assert client.logout() == {"detail": "User successfully logged out"}
    assert client.key is None, "logout must forget the key"
    with pytest.raises(MultitokenError) as refused:
        Client(server.url, key).me()
    assert refused.value.status_code == 401, "a logged-out key must be refused"
    assert refused.value.error == "Invalid or Inactive Token", f"server text lost: {refused.value}"


def test_device_token_create_list_use_delete(server):
    username, password = server.create_user()
    client = Client(server.url)
    client.login(username, password)

    created = client.create_device_token(
        "thermostat", read_only=True, scopes=["schedule:read"], expires_in_days=30
    )
    assert created["id_token"].startswith("mt_"), f"no key in the answer: {created}"
    assert created["name"] == "thermostat" and created["read_only"] is True, created

    listed = {token["id"]: token for token in client.list_tokens()}
    assert created["id"] in listed, f"new token missing from the list: {listed}"
    assert "id_token" not in listed[created["id"]], "a listing must never show keys"

    device = Client(server.url, created["id_token"])
    assert device.me()["token"]["scopes"] == ["schedule:read"], "device key does not work"

    client.delete_token(created["id"])
    assert created["id"] not in {token["id"] for token in client.list_tokens()}, "token not deleted"
    with pytest.raises(MultitokenError) as refused:
        device.me()
    assert refused.value.status_code == 401, f"a deleted key must be refused, got {refused.value}"


def test_non_expiring_token_speaks_the_recipe(server):
    username, password = server.create_user()
    client = Client(server.url)

    answer = client.non_expiring_token(username, password, "ci job")
    assert set(answer) == {"id_token", "token_name", "user", "is_admin"}, f"recipe shape: {answer}"
    assert (answer["token_name"], answer["user"], answer["is_admin"]) == ("ci job", username, False)
    assert client.key is None, "a device key is for the device, not this client"

    with pytest.raises(MultitokenError) as taken:
        client.non_expiring_token(username, password, "ci job")
    assert taken.value.status_code == 409, f"a taken name is a conflict: {taken.value}"
    assert taken.value.error == "a token with this name already exists", str(taken.value)


def test_wrong_password_raises_with_the_server_text(server):
    username, _ = server.create_user()

    with pytest.raises(MultitokenError) as refused:
        Client(server.url).login(username, "not the password")

    error = refused.value
    assert error.status_code == 400, f"a failed login is a 400: {error}"
    assert error.error == "Unable to log in with provided credentials.", (
        f"server text lost: {error}"
    )
    assert error.body["is_authenticated"] is False, f"recipe field missing: {error.body}"
    assert "Unable to log in" in str(error), "the message should show the server's text"


def test_introspect_needs_an_admin_and_reports_revocation(server):
    username, password = server.create_user()
    user = Client(server.url)
    user_key = user.login(username, password)
    admin = Client(server.url, server.admin_key)

    answer = admin.introspect(user_key)
    assert answer["active"] is True and answer["username"] == username, f"introspection: {answer}"
    assert answer["token_kind"] == "session", answer

    with pytest.raises(MultitokenError) as forbidden:
        user.introspect(user_key)
    assert forbidden.value.status_code == 403, f"non-admins may not introspect: {forbidden.value}"

    user.logout()
    assert admin.introspect(user_key) == {"active": False}, "a revoked key must be inactive"


def test_verify_reads_the_forward_auth_headers(server):
    username, password = server.create_user()
    client = Client(server.url)
    client.login(username, password)
    device = client.create_device_token("Küche thermostat", scopes=["billing", "read"])

    info = client.verify(device["id_token"])
    assert isinstance(info, TokenInfo)
    assert (info.username, info.token_id) == (username, device["id"]), info
    assert info.token_name == "Küche thermostat", f"percent-encoded name not decoded: {info}"
    assert info.scopes == {"billing", "read"} and not info.read_only, info
    assert info.kind == "device" and info.expires_at is None, info

    session = client.verify()
    assert session.kind == "session" and session.expires_at is not None, f"session: {session}"

    with pytest.raises(MultitokenError) as insufficient:
        client.verify(device["id_token"], scopes=["admin"])
    assert insufficient.value.status_code == 403, str(insufficient.value)
    assert insufficient.value.error == "Insufficient scope", str(insufficient.value)


def test_unreachable_server_is_its_own_error(unreachable_url):
    with pytest.raises(MultitokenUnreachable) as unreachable:
        Client(unreachable_url, timeout=2).me()
    assert unreachable.value.status_code is None, "no answer means no status"
