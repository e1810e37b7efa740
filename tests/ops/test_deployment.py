"""Deployment defaults: owner-only data files, the TLS switch, and the warnings at start-up."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.factories import PASSWORD, make_user

BASE_DIR = Path(django_settings.BASE_DIR)
DATA_FILES = ("secret_key", "jwt_secret_key", "vantage6.sqlite3")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def bootstrap(data_dir: Path, **variables: str) -> subprocess.CompletedProcess:
    """``manage.py bootstrap`` in a fresh process on SQLite in ``data_dir``, with a permissive umask."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("V6_")}
    environment = {**clean, "V6_DATA_DIR": str(data_dir), "V6_BCRYPT_ROUNDS": "4",
                   **{f"V6_{k}": v for k, v in variables.items()}}  # fmt: skip
    return subprocess.run(
        [sys.executable, "manage.py", "bootstrap"], env=environment, cwd=BASE_DIR, capture_output=True,
        text=True, timeout=120, umask=0o022,
    )  # fmt: skip


def test_a_fresh_data_folder_is_owner_only(tmp_path):
    data_dir = tmp_path / "data"
    result = bootstrap(data_dir)
    assert result.returncode == 0, result.stderr
    assert mode(data_dir) == 0o700
    assert {name: mode(data_dir / name) for name in DATA_FILES} == dict.fromkeys(DATA_FILES, 0o600)
    assert all(mode(path) & 0o077 == 0 for path in data_dir.glob("vantage6.sqlite3*"))
    assert "readable by its owner only" not in result.stderr


def test_start_up_makes_an_existing_data_folder_owner_only(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    for name in DATA_FILES:
        (data_dir / name).write_text("k" * 64 if "secret" in name else "")
        (data_dir / name).chmod(0o644)
    result = bootstrap(data_dir)
    assert result.returncode == 0, result.stderr
    assert mode(data_dir) == 0o700
    assert {name: mode(data_dir / name) for name in DATA_FILES} == dict.fromkeys(DATA_FILES, 0o600)


# --- the TLS switch and the start-up warnings -------------------------------------------------------------
@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory) -> Path:
    """A data folder bootstrapped once (migrated, root created), to copy."""
    data_dir = tmp_path_factory.mktemp("bootstrapped") / "data"
    result = bootstrap(data_dir)
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.mark.parametrize(
    ("variables", "warned"),
    [
        ({}, []),
        ({"HOST": "localhost"}, []),
        ({"HOST": "::1"}, []),
        ({"HOST": "0.0.0.0"}, ["V6_BEHIND_TLS", "V6_ALLOWED_HOSTS"]),
        ({"HOST": "10.1.2.3", "BEHIND_TLS": "1"}, ["V6_TRUSTED_PROXIES", "V6_ALLOWED_HOSTS"]),
        ({"HOST": "10.1.2.3", "BEHIND_TLS": "1", "TRUSTED_PROXIES": "10.0.0.1"}, ["V6_ALLOWED_HOSTS"]),
        ({"HOST": "v6.example.org", "ALLOWED_HOSTS": "v6.example.org"}, ["V6_BEHIND_TLS"]),
        ({"HOST": "0.0.0.0", "BEHIND_TLS": "yes", "ALLOWED_HOSTS": "v6.example.org"},
         ["V6_TRUSTED_PROXIES"]),
        ({"HOST": "0.0.0.0", "BEHIND_TLS": "yes", "ALLOWED_HOSTS": "v6.example.org",
          "TRUSTED_PROXIES": "10.0.0.0/8"}, []),
    ],
)  # fmt: skip
def test_bootstrap_warns_when_other_machines_are_served_without_tls(
    tmp_path, bootstrapped, variables, warned
):
    data_dir = tmp_path / "data"
    shutil.copytree(bootstrapped, data_dir)  # the warnings come before the migrations: none to wait for
    result = bootstrap(data_dir, **variables)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    names = ("V6_BEHIND_TLS", "V6_TRUSTED_PROXIES", "V6_ALLOWED_HOSTS")
    assert [name for name in names if name in " ".join(warnings)] == warned
    assert len(warnings) == len(warned)


@pytest.mark.django_db
@pytest.mark.parametrize("behind_tls", [False, True])
def test_admin_session_cookie_and_hsts_behind_tls(client, world, settings, behind_tls):
    if behind_tls:  # what V6_BEHIND_TLS=1 sets (tests/api/test_settings.py)
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
        settings.SECURE_HSTS_SECONDS = 31536000
    make_user(world.org_a, "Organization Admin", username="boss")
    # A browser on the HTTPS site of a proxy that forwards the scheme.
    client = type(client)(
        enforce_csrf_checks=True,
        HTTP_HOST="v6.example.org",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_REFERER="https://v6.example.org/admin/login/",
    )
    page = client.get("/admin/login/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    # cookies set for an HTTPS request are Secure either way; HSTS needs V6_BEHIND_TLS
    assert session["secure"]
    assert session["httponly"]
    assert page.cookies["csrftoken"]["secure"]
    hsts = response.headers.get("Strict-Transport-Security")
    assert hsts == ("max-age=31536000" if behind_tls else None)
