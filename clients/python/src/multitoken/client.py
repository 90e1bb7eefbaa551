"""A thin client for multitoken's JSON API: one method per endpoint, nothing hidden.

The server's answers are returned as the JSON it sent (dicts and lists), so that fields it adds
later reach callers without a client release. Refusals become ``MultitokenError`` carrying the
server's own ``error`` text, because that text is the contract (``"Token has expired"``,
``"Invalid or Inactive Token"``, ...) and callers should not have to guess from a status code.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import unquote

import requests

DEFAULT_TIMEOUT = 10.0

#: RFC 8628 §3.4's grant type, for polling ``POST /api/pair/token/``.
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: RFC 8628 §3.5: a device told to ``slow_down`` adds this many seconds to its interval for good.
SLOW_DOWN_STEP = 5
#: RFC 8628 §3.2: the interval to use when the server names none.
DEFAULT_PAIRING_INTERVAL = 5


class MultitokenError(Exception):
    """The server refused a request.

    ``error`` is the server's text (the ``error`` field of its JSON answer), ``status_code`` the
    HTTP status and ``body`` the whole decoded answer (``fields`` for a 400, ``retry_after`` for
    a 429, ...).
    """

    def __init__(self, error: str, status_code: Optional[int] = None, body: Any = None):
        shown = error if status_code is None else f"{error} (HTTP {status_code})"
        super().__init__(shown)
        self.error = error
        self.status_code = status_code
        self.body = body

    @classmethod
    def from_response(cls, response: requests.Response) -> "MultitokenError":
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            error = body["error"]
        else:
            # Not one of the API's JSON errors (a proxy's page, say): show its start.
            error = response.text[:200] or response.reason or "no answer body"
        return cls(error, response.status_code, body)


class MultitokenUnreachable(MultitokenError):
    """No answer at all (refused connection, timeout, DNS failure).

    Kept apart from ``MultitokenError`` proper because it says nothing about the key: a caller
    must not treat an outage as a revocation, nor as a success.
    """


class PairingError(MultitokenError):
    """A device's poll got no token (RFC 8628 §3.5): ``error`` is the OAuth code.

    ``authorization_pending`` and ``slow_down`` only mean "not yet" (``wait_for_pairing`` keeps
    polling on them); ``invalid_grant`` means the device code is unknown or its token was already
    collected. ``description`` is the server's ``error_description``.
    """

    @property
    def description(self) -> Optional[str]:
        return self.body.get("error_description") if isinstance(self.body, dict) else None

    @property
    def interval(self) -> Optional[int]:
        """With ``slow_down``: the interval the server now asks for, in seconds."""
        return self.body.get("interval") if isinstance(self.body, dict) else None


class PairingDenied(PairingError):
    """``access_denied``: the approver refused the pairing (or deleted its token before the
    device collected it). Polling again will not help."""


class PairingExpired(PairingError):
    """``expired_token``: the codes expired before approval; start pairing again.

    Also raised with ``status_code`` None when ``wait_for_pairing``'s own ``expires_in`` runs out
    while the server still answers "pending".
    """


_PAIRING_ERRORS = {
    "authorization_pending": PairingError,
    "slow_down": PairingError,
    "access_denied": PairingDenied,
    "expired_token": PairingExpired,
    "invalid_grant": PairingError,
    "invalid_request": PairingError,
    "unsupported_grant_type": PairingError,
}


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """A key the server found valid: whose it is and what it may do.

    Built from ``/auth/verify``'s ``X-Auth-*`` headers or from an introspection answer, so both
    ways of checking a key give callers the same object.
    """

    username: str
    token_id: str
    token_name: str
    kind: str
    is_admin: bool
    scopes: frozenset
    read_only: bool
    expires_at: Optional[datetime.datetime] = None

    def has_scopes(self, *required: str) -> bool:
        """Whether the token carries every one of ``required``."""
        return set(required) <= self.scopes

    @classmethod
    def from_verify_headers(cls, headers: Mapping[str, str]) -> "TokenInfo":
        # Usernames and token names may be in any script, so the server percent-encodes them.
        expires = headers.get("X-Auth-Expires-At")
        return cls(
            username=unquote(headers["X-Auth-User"]),
            token_id=headers["X-Auth-Token-Id"],
            token_name=unquote(headers.get("X-Auth-Token-Name", "")),
            kind=headers.get("X-Auth-Token-Kind", ""),
            is_admin=headers.get("X-Auth-Admin") == "true",
            scopes=frozenset(headers.get("X-Auth-Scopes", "").split()),
            read_only=headers.get("X-Auth-Read-Only") == "true",
            expires_at=parse_time(expires) if expires else None,
        )

    @classmethod
    def from_introspection(cls, answer: Mapping[str, Any]) -> "TokenInfo":
        """From an active introspection answer (RFC 7662 shape; ``exp`` in epoch seconds)."""
        exp = answer.get("exp")
        return cls(
            username=answer["username"],
            token_id=answer["token_id"],
            token_name=answer.get("token_name", ""),
            kind=answer.get("token_kind", ""),
            is_admin=bool(answer.get("is_admin")),
            scopes=frozenset((answer.get("scope") or "").split()),
            read_only=bool(answer.get("read_only")),
            expires_at=(
                datetime.datetime.fromtimestamp(exp, tz=datetime.timezone.utc)
                if exp is not None
                else None
            ),
        )


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time as the server writes it (``Z``, 0 to 9 fraction digits).

    Python before 3.11 reads neither ``Z`` nor more than six fraction digits.
    """
    text = text.strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.datetime.fromisoformat(text)


class Client:
    """multitoken's API at ``base_url``, the server root (``http://host:8080``, no ``/api``).

    ``key`` authenticates calls that need a token; ``login`` sets it and ``logout`` clears it.
    Not safe to share between threads while ``login``/``logout`` change ``key``.
    """

    def __init__(
        self,
        base_url: str,
        key: Optional[str] = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: Optional[requests.Session] = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.session = session or requests.Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # Logging in: the Django recipe's endpoints.

    def login(self, username: str, password: str, token_name: Optional[str] = None) -> str:
        """``POST /api/token/``: a new session token; returns the key, kept for later calls."""
        body = {"username": username, "password": password}
        if token_name is not None:
            body["token_name"] = token_name
        answer = self._call("POST", "/api/token/", json=body, key=None).json()
        self.key = answer["id_token"]
        return self.key

    def non_expiring_token(
        self, username: str, password: str, token_name: str, **policy: Any
    ) -> dict:
        """``POST /api/non-expiring-token/``: a named device token from username and password.

        Returns ``{id_token, token_name, user, is_admin}``; ``policy`` takes the token's policy
        fields (``read_only``, ``scopes``, ``allowed_ips``, ``max_uses``, ...). ``key`` is left as
        it was: a device key usually goes to the device, not to this client.
        """
        body = {"username": username, "password": password, "token_name": token_name, **policy}
        return self._call("POST", "/api/non-expiring-token/", json=body, key=None).json()

    def logout(self) -> dict:
        """``POST /api/logout/``: revoke this client's key, then forget it."""
        answer = self._call("POST", "/api/logout/").json()
        self.key = None
        return answer

    # The caller's own tokens.

    def me(self) -> dict:
        """``GET /api/me/``: ``{user, is_admin, token: {id, name, kind, ..., policy}}``."""
        return self._call("GET", "/api/me/").json()

    def create_device_token(
        self, name: str, *, expires_in_days: Optional[int] = None, **policy: Any
    ) -> dict:
        """``POST /api/tokens/``: a named device token for the current user.

        Never expires unless ``expires_in_days`` is given. The answer holds the new key in
        ``id_token`` (shown this once) and its ``id``.
        """
        body = {"name": name, **policy}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self._call("POST", "/api/tokens/", json=body).json()

    def list_tokens(self) -> list:
        """``GET /api/tokens/``: the current user's tokens (never their keys)."""
        return self._call("GET", "/api/tokens/").json()

    def delete_token(self, token_id: str) -> None:
        """``DELETE /api/tokens/{id}/``: revoke one of the current user's tokens."""
        self._call("DELETE", f"/api/tokens/{token_id}/")

    # Pairing a device (RFC 8628's device authorization grant).
    #
    # The device calls start_pairing, shows the user code, and polls with wait_for_pairing (or
    # does all three with pair_device); its owner, signed in elsewhere, calls approve_pairing or
    # deny_pairing with the code. The device needs no key; the approver's must be full-access.

    def start_pairing(
        self,
        name: Optional[str] = None,
        *,
        client_id: Optional[str] = None,
        scope: Optional[str] = None,
    ) -> dict:
        """``POST /api/pair/`` (RFC 8628 §3.1), no key: a new pair of codes for this device.

        ``name`` is the device's suggestion for its token's name (at most 64 characters); the
        approver may change it. ``client_id`` and ``scope`` are sent as the RFC has them and
        ignored by the server. Returns ``{device_code, user_code, verification_uri,
        verification_uri_complete, expires_in, interval}``: show the user ``user_code`` and
        ``verification_uri`` (or ``verification_uri_complete`` as a link or QR code), keep
        ``device_code`` secret.
        """
        form = {"name": name, "client_id": client_id, "scope": scope}
        form = {field: value for field, value in form.items() if value is not None}
        return self._call("POST", "/api/pair/", data=form, key=None).json()

    def poll_pairing(self, device_code: str, *, client_id: Optional[str] = None) -> dict:
        """``POST /api/pair/token/`` (RFC 8628 §3.4), no key: one poll, without waiting.

        Returns the token once the pairing is approved, exactly once: ``{access_token,
        token_type: "Bearer", token_id, token_name, user, expires_in?}`` (no ``expires_in`` for a
        token that never expires). Until then raises ``PairingError`` with the RFC's code in
        ``error``: ``authorization_pending``, ``slow_down`` (``interval`` has the new interval),
        ``PairingDenied``, ``PairingExpired``, or ``invalid_grant`` once the token was collected.
        Any other refusal (a 429, a 5xx) is a plain ``MultitokenError``.
        """
        form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code}
        if client_id is not None:
            form["client_id"] = client_id
        try:
            return self._call("POST", "/api/pair/token/", data=form, key=None).json()
        except MultitokenUnreachable:
            raise
        except MultitokenError as error:
            kind = _PAIRING_ERRORS.get(error.error) if error.status_code == 400 else None
            if kind is None:
                raise
            raise kind(error.error, error.status_code, error.body) from None

    def wait_for_pairing(
        self,
        device_code: str,
        interval: float = DEFAULT_PAIRING_INTERVAL,
        expires_in: Optional[float] = None,
        *,
        client_id: Optional[str] = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> dict:
        """Polls ``POST /api/pair/token/`` until the pairing is approved; returns the token.

        ``interval`` and ``expires_in`` come from ``start_pairing``'s answer. It waits
        ``interval`` seconds before every poll, and on ``slow_down`` adds 5 seconds to it for good
        (RFC 8628 §3.5), or takes the server's new interval when that is longer. It stops with
        ``PairingDenied`` (``access_denied``), ``PairingExpired`` (``expired_token``, or
        ``expires_in`` seconds passed with the server still saying "pending") or ``PairingError``
        (``invalid_grant``: unknown code, or token already collected). Other refusals and
        ``MultitokenUnreachable`` end the wait too: retry them yourself if the device should ride
        out an outage. ``sleep`` is how it waits (tests replace it).

        Returns the answer of ``poll_pairing``; the key, ``access_token``, is shown this once and
        not kept by this client (``pair_device`` keeps it).
        """
        clock = time.monotonic
        deadline = None if expires_in is None else clock() + expires_in
        while True:
            wait = interval
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    raise PairingExpired(
                        "expired_token",
                        None,
                        {
                            "error": "expired_token",
                            "error_description": f"not approved within {expires_in:g}s",
                        },
                    )
                # A last poll at the deadline lets the server say so itself.
                wait = min(wait, left)
            sleep(wait)
            try:
                return self.poll_pairing(device_code, client_id=client_id)
            except PairingError as not_yet:
                if not_yet.error == "slow_down":
                    interval = max(interval + SLOW_DOWN_STEP, not_yet.interval or 0)
                elif not_yet.error != "authorization_pending":
                    raise

    def pair_device(
        self,
        name: Optional[str] = None,
        *,
        on_code: Callable[[dict], Any],
        timeout: Optional[float] = None,
        client_id: Optional[str] = None,
    ) -> dict:
        """The device's whole side of pairing: start, show the code, wait for the approval.

        ``on_code`` gets ``start_pairing``'s answer: show its ``user_code`` and
        ``verification_uri`` to the device's owner. ``timeout`` (seconds) gives up sooner than
        the codes expire. Returns the token answer (see ``poll_pairing``) and keeps its key, like
        ``login``, so this client then acts as the device. Raises as ``wait_for_pairing``.
        """
        started = self.start_pairing(name, client_id=client_id)
        on_code(started)
        expires_in = started.get("expires_in")
        if timeout is not None:
            expires_in = timeout if expires_in is None else min(timeout, expires_in)
        token = self.wait_for_pairing(
            started["device_code"],
            started.get("interval") or DEFAULT_PAIRING_INTERVAL,
            expires_in,
            client_id=client_id,
        )
        self.key = token["access_token"]
        return token

    def approve_pairing(
        self,
        user_code: str,
        name: Optional[str] = None,
        *,
        expires_in_days: Optional[int] = None,
        **policy: Any,
    ) -> dict:
        """``POST /api/pair/approve/``: give the device showing ``user_code`` a device token.

        This client's key must be a full-access one (not read-only, no scopes). The token is
        this client's user's, named ``name`` (default: the device's suggestion, else
        ``device XXXX-XXXX``), never expires unless ``expires_in_days`` is given, and takes the
        policy fields of ``create_device_token`` (``read_only``, ``scopes``, ``allowed_ips``,
        ...). The device collects its key on its next poll. Returns ``{token_id, token_name}``.
        An unknown, expired or already used code is a 404 ``MultitokenError``; wrong codes count
        like failed logins (429 past the limit).
        """
        body = {"user_code": user_code, **policy}
        if name is not None:
            body["name"] = name
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self._call("POST", "/api/pair/approve/", json=body).json()

    def deny_pairing(self, user_code: str) -> dict:
        """``POST /api/pair/deny/``: refuse the device showing ``user_code``.

        Its next poll answers ``access_denied``. Returns ``{"state": "denied"}``; errors as
        ``approve_pairing``.
        """
        return self._call("POST", "/api/pair/deny/", json={"user_code": user_code}).json()

    # Checking other people's keys.

    def introspect(self, key: str) -> dict:
        """``POST /api/introspect/`` (RFC 7662); this client's key must be an admin's.

        ``{"active": false}`` alone for a key that is not valid now.
        """
        return self._call("POST", "/api/introspect/", data={"token": key}).json()

    def verify(
        self,
        key: Optional[str] = None,
        *,
        scopes: Iterable[str] = (),
        method: Optional[str] = None,
        forwarded_for: Optional[str] = None,
    ) -> TokenInfo:
        """``GET /auth/verify`` (forward auth) for ``key`` (default: this client's).

        ``scopes`` must all be on the token (else 403 ``Insufficient scope``); ``method`` is the
        method of the request being decided on (a read-only token may only read);
        ``forwarded_for`` the end client's address, believed only when the server lists this
        caller in ``MULTITOKEN_TRUSTED_PROXIES``.
        """
        headers = {}
        if method is not None:
            headers["X-Forwarded-Method"] = method
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        response = self._call(
            "GET",
            "/auth/verify",
            key=self.key if key is None else key,
            headers=headers,
            params=[("scope", scope) for scope in scopes],
        )
        return TokenInfo.from_verify_headers(response.headers)

    # Plumbing.

    _UNSET: Any = object()

    def _call(self, method: str, path: str, *, key: Any = _UNSET, headers=None, **kwargs):
        key = self.key if key is self._UNSET else key
        headers = dict(headers or {})
        if key:
            headers["Authorization"] = f"Token {key}"
        try:
            response = self.session.request(
                method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise MultitokenUnreachable(
                f"multitoken at {self.base_url} did not answer: {error}"
            ) from error
        if response.status_code >= 400:
            raise MultitokenError.from_response(response)
        return response
