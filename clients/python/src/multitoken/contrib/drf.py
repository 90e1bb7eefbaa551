"""Django REST Framework authentication against a multitoken server.

Settings (read on every request, so ``override_settings`` works):

- ``MULTITOKEN_URL`` (required): the server root, ``http://host:8080``, as for ``Client``.
- ``MULTITOKEN_CACHE_SECONDS`` (default 5): how long a positive answer is reused. A revoked key
  keeps working here for at most this long; ``0`` asks the server on every request.
- ``MULTITOKEN_CREATE_USERS`` (default True): create the Django user on first sight; when False
  a multitoken user without a Django user is refused.
- ``MULTITOKEN_ADMIN_TOKEN`` (default unset): an admin key; when set, keys are checked by
  introspection instead of forward auth.
- ``MULTITOKEN_TIMEOUT`` (default 5): seconds to wait for the server.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
from typing import Optional

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework import authentication, exceptions, permissions

from multitoken.client import Client, MultitokenError, MultitokenUnreachable, TokenInfo

CACHE_KEY_PREFIX = "multitoken:verified:"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_KEY_PREFIX = "mt_"

log = logging.getLogger(__name__)


class MultitokenUnavailable(exceptions.APIException):
    """multitoken could not answer, so nobody gets in: a 503, never a pass."""

    status_code = 503
    default_detail = "The token service is unavailable; try again later."
    default_code = "multitoken_unavailable"


class MultitokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <key>`` or ``Bearer <key>``, checked by multitoken.

    ``request.user`` is the Django user named like the token's owner, and ``request.auth`` a
    ``multitoken.TokenInfo`` (``username``, ``token_id``, ``scopes``, ``read_only``, ...).
    A read-only token may only use GET, HEAD and OPTIONS (403 otherwise), as on multitoken's own
    API. Keys that do not start with ``mt_`` are left to the next authentication class, so an
    older ``TokenAuthentication`` can run beside this one while clients move over.
    """

    keyword = "Token"

    def authenticate(self, request):
        key = self._key_from(request)
        if key is None:
            return None
        info = verify_key(key, request.META.get("REMOTE_ADDR"))
        if info.read_only and request.method not in SAFE_METHODS:
            raise exceptions.PermissionDenied("This token is read-only")
        return self.user_for(info), info

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) to a missing or refused key.
        return f'{self.keyword} realm="api"'

    def user_for(self, info: TokenInfo):
        """The Django user for the token's owner, created on first sight unless disabled."""
        user_model = get_user_model()
        lookup = {user_model.USERNAME_FIELD: info.username}
        if getattr(settings, "MULTITOKEN_CREATE_USERS", True):
            user, created = user_model._default_manager.get_or_create(**lookup)
            if created:
                # The password lives in multitoken; this user must never log in with one here.
                user.set_unusable_password()
                user.save(update_fields=["password"])
        else:
            try:
                user = user_model._default_manager.get(**lookup)
            except user_model.DoesNotExist:
                raise exceptions.AuthenticationFailed("Unknown user") from None
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user

    def _key_from(self, request) -> Optional[str]:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() not in (b"token", b"bearer"):
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token header.") from None
        return key if key.startswith(_KEY_PREFIX) else None


class HasScope(permissions.BasePermission):
    """Requires the multitoken token to carry scopes: ``HasScope.with_scopes("billing")``.

    A request not authenticated by multitoken has no scopes, so it is refused (401 when it
    carried no key, 403 otherwise).
    """

    required_scopes: frozenset = frozenset()
    message = "Insufficient scope"

    @classmethod
    def with_scopes(cls, *scopes: str) -> type:
        """A permission class requiring every one of ``scopes``."""
        if not scopes:
            raise ValueError("HasScope.with_scopes needs at least one scope")
        return type(
            f"HasScope({', '.join(scopes)})",
            (cls,),
            {
                "required_scopes": frozenset(scopes),
                "message": f"Insufficient scope: requires {' '.join(scopes)}",
            },
        )

    def has_permission(self, request, view):
        if not self.required_scopes:
            # A bare HasScope would require nothing: refuse the configuration, not the request.
            raise ImproperlyConfigured(
                'Use HasScope.with_scopes("scope", ...) in permission_classes'
            )
        auth = request.auth
        return isinstance(auth, TokenInfo) and auth.has_scopes(*self.required_scopes)


def verify_key(key: str, client_address: Optional[str] = None) -> TokenInfo:
    """The server's answer for ``key`` used from ``client_address``, cached when positive.

    The cache key is a SHA-256 digest (never the key itself: a cache dump must not leak keys)
    and includes the address, since a network-bound token's answer depends on it.
    """
    cache_key = CACHE_KEY_PREFIX + hashlib.sha256(f"{client_address}\n{key}".encode()).hexdigest()
    info = cache.get(cache_key)
    if info is not None:
        return info
    info = _ask_server(key, client_address)
    seconds = _cache_seconds(info)
    if seconds > 0:
        cache.set(cache_key, info, seconds)
    return info


def _cache_seconds(info: TokenInfo) -> int:
    seconds = float(getattr(settings, "MULTITOKEN_CACHE_SECONDS", 5))
    if info.expires_at is not None:
        # Never serve a token from the cache past its own expiry.
        left = (info.expires_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        seconds = min(seconds, left)
    return max(0, int(seconds))


def _ask_server(key: str, client_address: Optional[str]) -> TokenInfo:
    admin_token = getattr(settings, "MULTITOKEN_ADMIN_TOKEN", None)
    client = _client()
    try:
        if admin_token:
            client.key = admin_token
            answer = client.introspect(key)
            if not answer.get("active"):
                raise exceptions.AuthenticationFailed("Invalid or Inactive Token")
            return TokenInfo.from_introspection(answer)
        # Only GET is forwarded: the read-only check is made here on the cached answer, so
        # one cache entry serves every method.
        return client.verify(key, forwarded_for=client_address)
    except MultitokenUnreachable as error:
        log.error("%s", error)
        raise MultitokenUnavailable() from error
    except MultitokenError as error:
        if error.status_code == 401 and not admin_token:
            raise exceptions.AuthenticationFailed(error.error) from None
        # A 5xx, or an answer that only a wrong configuration explains (a 404 from a
        # MULTITOKEN_URL ending in /api, a 401/403 to the admin token): fail closed, and tell
        # the operator, not the client.
        log.error("multitoken refused to check a key: %s", error)
        raise MultitokenUnavailable() from error


_local = threading.local()


def _client() -> Client:
    """One ``Client`` per thread, to reuse its connections; rebuilt when the settings change."""
    url = getattr(settings, "MULTITOKEN_URL", None)
    if not url:
        raise ImproperlyConfigured(
            "Set MULTITOKEN_URL to the multitoken server root, http://host:8080"
        )
    timeout = float(getattr(settings, "MULTITOKEN_TIMEOUT", 5))
    client = getattr(_local, "client", None)
    if client is None or client.base_url != url.rstrip("/") or client.timeout != timeout:
        client = _local.client = Client(url, timeout=timeout)
    return client
