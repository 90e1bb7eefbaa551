"""Starts the real multitoken server for the tests, and configures a tiny Django project.

The server binary comes from ``MULTITOKEN_BIN``; without it the run fails (it never skips), since
tests that talk to no server would prove nothing about this client.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import django
import pytest
import requests
from django.conf import settings

# Django must be configured before DRF is imported anywhere.
settings.configure(
    DEBUG=False,
    SECRET_KEY="test only",
    ALLOWED_HOSTS=["testserver"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
    ],
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    ROOT_URLCONF="drf_app",
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["multitoken.contrib.drf.MultitokenAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    },
    # Replaced with the test server's address by the `drf` fixture.
    MULTITOKEN_URL="http://127.0.0.1:9",
    USE_TZ=True,
)
django.setup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MultitokenServer:
    """A running server: its ``url``, the ``admin`` password, and a way to add users."""

    def __init__(self, url: str, admin_password: str):
        self.url = url
        self.admin_password = admin_password
        self.admin_key = self._login("admin", admin_password)

    def _login(self, username: str, password: str) -> str:
        answer = requests.post(
            f"{self.url}/api/token/", json={"username": username, "password": password}, timeout=30
        )
        assert answer.status_code == 200, f"admin login failed: {answer.status_code} {answer.text}"
        return answer.json()["id_token"]

    def create_user(self, prefix: str = "user", is_admin: bool = False) -> tuple:
        """A new user with a unique name; returns ``(username, password)``."""
        username = f"{prefix}{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(16)
        answer = requests.post(
            f"{self.url}/api/admin/users/",
            headers={"Authorization": f"Token {self.admin_key}"},
            json={"username": username, "password": password, "is_admin": is_admin},
            timeout=30,
        )
        assert answer.status_code == 201, f"creating {username}: {answer.status_code} {answer.text}"
        return username, password


@contextlib.contextmanager
def running_server(folder: Path, **extra_env: str):
    """Runs the server from ``MULTITOKEN_BIN`` with its data in ``folder``, until the block ends.

    ``extra_env`` adds or overrides server settings (``MULTITOKEN_PAIRING_TTL="2s"``, ...).
    """
    binary = os.environ.get("MULTITOKEN_BIN")
    if not binary:
        pytest.fail(
            "MULTITOKEN_BIN is not set: point it at the multitoken server binary", pytrace=False
        )
    if not (Path(binary).is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"MULTITOKEN_BIN={binary} is not an executable file", pytrace=False)

    port = free_port()
    admin_password = secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite://{folder}/multitoken.db?mode=rwc",
        "MULTITOKEN_BIND": f"127.0.0.1:{port}",
        "MULTITOKEN_ADMIN_PASSWORD": admin_password,
        "MULTITOKEN_SECRET_KEY": secrets.token_hex(64),
        "MULTITOKEN_WORKERS": "2",
        # Django runs on this host: lets it name the end client in X-Forwarded-For.
        "MULTITOKEN_TRUSTED_PROXIES": "127.0.0.1",
        # Pairing devices poll this often (the default is RFC 8628's 5s): keeps the tests fast.
        "MULTITOKEN_PAIRING_INTERVAL": "1s",
        "RUST_LOG": "warn",
        **extra_env,
    }
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log_path)
        yield MultitokenServer(url, admin_password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("multitoken")) as running:
        yield running


@pytest.fixture(scope="session")
def short_pairing_server(tmp_path_factory):
    """A second server whose pairing codes expire after 2 seconds, for ``expired_token``."""
    folder = tmp_path_factory.mktemp("multitoken-short-pairing")
    with running_server(folder, MULTITOKEN_PAIRING_TTL="2s") as running:
        yield running


def wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"multitoken exited with {process.returncode} at start-up:\n{log_path.read_text()}",
                pytrace=False,
            )
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(
        f"multitoken did not answer /healthz within {seconds}s:\n{log_path.read_text()}",
        pytrace=False,
    )


@pytest.fixture
def unreachable_url():
    """A local address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def django_db():
    """The Django test database: in memory, migrated once."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@pytest.fixture
def drf(server, django_db):
    """Points the DRF project at the test server, with an empty verification cache."""
    from django.core.cache import cache
    from django.test import override_settings

    cache.clear()
    with override_settings(MULTITOKEN_URL=server.url, MULTITOKEN_CACHE_SECONDS=5):
        yield server
    cache.clear()
