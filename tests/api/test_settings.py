"""Settings from V6_ variables: each parser, the start-up error, and the files that set variables."""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings

from vantage6 import env
from vantage6.env import (
    DATABASE_OPTIONS,
    SettingError,
    env_amqp,
    env_api_path,
    env_bool,
    env_choice,
    env_database,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_secret,
    env_str,
)

BASE_DIR = Path(django_settings.BASE_DIR)
# The registry as the settings filled it, before any test below asks for made-up names.
SETTINGS_VARIABLES = frozenset(env.KNOWN_VARIABLES)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No V6_ variable of the calling environment, and a registry of this test's own."""
    monkeypatch.setattr(env, "KNOWN_VARIABLES", set())
    for name in [name for name in os.environ if name.startswith("V6_")]:
        monkeypatch.delenv(name)


def _set(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"V6_{name}", value)


def _fails_naming(variable: str):
    return pytest.raises(SettingError, match=rf"^V6_{variable}\b")


# --- the parsers ---------------------------------------------------------------------------------------
def test_every_name_asked_for_is_recorded(monkeypatch):
    _set(monkeypatch, X_SET="1")
    env_str("X_UNSET", "d")
    env_int("X_SET", 0)
    assert {"V6_X_UNSET", "V6_X_SET"} == env.KNOWN_VARIABLES


def test_str(monkeypatch):
    assert env_str("X", "default") == "default"
    _set(monkeypatch, X="")
    assert env_str("X", "default") == ""
    _set(monkeypatch, X=" value ")
    assert env_str("X", "default") == " value "


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), (" ON ", True), ("0", False), ("false", False),
     ("NO", False), ("off", False), ("", False)],
)  # fmt: skip
def test_bool(monkeypatch, raw, expected):
    _set(monkeypatch, X=raw)
    assert env_bool("X", not expected) is expected


def test_bool_default_and_bad_value(monkeypatch):
    assert env_bool("X", True) is True
    _set(monkeypatch, X="maybe")
    with _fails_naming("X"):
        env_bool("X")


def test_int(monkeypatch):
    assert env_int("X", 7) == 7
    _set(monkeypatch, X=" 42 ")
    assert env_int("X", 7, minimum=1, maximum=42) == 42


@pytest.mark.parametrize(("raw", "message"), [("abc", "integer"), ("1.5", "integer"), ("", "integer"),
                                              ("0", "at least 1"), ("70000", "at most 65535")])  # fmt: skip
def test_int_bad_values(monkeypatch, raw, message):
    _set(monkeypatch, X=raw)
    with pytest.raises(SettingError, match=rf"^V6_X must .*{message}"):
        env_int("X", 7, minimum=1, maximum=65535)


def test_list(monkeypatch):
    assert env_list("X", ["*"]) == ["*"]
    _set(monkeypatch, X=" a, b,,c ")
    assert env_list("X", ["*"]) == ["a", "b", "c"]
    _set(monkeypatch, X="")
    assert env_list("X", ["*"]) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("*", ["*"]), (" * ", ["*"]), ("", []),
     (" https://ui.example.org , http://localhost:7600", ["https://ui.example.org", "http://localhost:7600"]),
     # Spellings of the same origin, written as a browser sends it.
     ("HTTPS://UI.Example.ORG", ["https://ui.example.org"]), ("https://ui.example.org:443", ["https://ui.example.org"]),
     ("http://ui.example.org:80", ["http://ui.example.org"]), ("https://ui.example.org:80", ["https://ui.example.org:80"]),
     ("http://[::1]:8080", ["http://[::1]:8080"]), ("http://127.0.0.1:7600", ["http://127.0.0.1:7600"])],
)  # fmt: skip
def test_origins(monkeypatch, raw, expected):
    _set(monkeypatch, X=raw)
    assert env_origins("X", ["*"]) == expected


def test_origins_default():
    assert env_origins("X", ["*"]) == ["*"]


@pytest.mark.parametrize(
    ("raw", "sent"),
    [("https://ui.example.org/", "a browser sends 'https://ui.example.org'"),
     ("https://UI.example.org:443/app", "a browser sends 'https://ui.example.org'"),
     ("https://ui.example.org?x=1", "a browser sends 'https://ui.example.org'"),
     ("https://ui.example.org#", "a browser sends 'https://ui.example.org'"),
     ("https://ui.example.org#/app", "a browser sends 'https://ui.example.org'"),
     ("https://user@ui.example.org", "a browser sends 'https://ui.example.org'"),
     ("ui.example.org", "e.g. 'https://ui.example.org'"),
     ("UI.example.org:8443/", "e.g. 'https://ui.example.org:8443'"),
     ("https://a.org https://b.org", "separate origins with commas"),
     ("null", "would let any sandboxed page or local file read the answers"),
     ("NULL", "would let any sandboxed page or local file read the answers"),
     ("file:///var/www", "not an http:// or https:// origin"),
     ("https://ui.example.org:99999", "invalid port"), ("https://ui.example.org:x", "invalid port"),
     ("https://", "needs a host"), ("https://bücher.example", "needs a host, in ASCII"),
     ("https://*.example.org", "'*' in it is no wildcard"), ("https://[::1", "it is no URL")],
)  # fmt: skip
def test_origins_that_cannot_be_meant_name_the_value_and_what_a_browser_sends(monkeypatch, raw, sent):
    _set(monkeypatch, X=f"https://fine.example, {raw}")
    with _fails_naming("X") as failure:
        env_origins("X", ["*"])
    assert str(failure.value).startswith(f"V6_X: {raw!r} ")
    assert sent in str(failure.value)


@pytest.mark.parametrize("raw", ["*, https://ui.example.org", "https://ui.example.org,*"])
def test_origins_with_any_origin_among_them(monkeypatch, raw):
    """Whether every origin was meant or only the listed ones is unknown: the operator says which."""
    _set(monkeypatch, X=raw)
    with _fails_naming("X") as failure:
        env_origins("X", ["*"])
    assert "'*' alone, or the origins alone" in str(failure.value)


def test_networks(monkeypatch):
    assert env_networks("X") == []
    _set(monkeypatch, X=" 10.0.0.1, 10.0.0.0/8,fd00::/8 ")
    assert [str(network) for network in env_networks("X")] == ["10.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
    for bad in ("proxy.example.org", "10.0.0.0/33", "10.0.0.1,*"):
        _set(monkeypatch, X=bad)
        with _fails_naming("X"):
            env_networks("X")


def test_choice(monkeypatch):
    assert env_choice("X", "info", ("info", "debug")) == "info"
    _set(monkeypatch, X=" DEBUG ")
    assert env_choice("X", "info", ("info", "debug")) == "debug"
    _set(monkeypatch, X="loud")
    with _fails_naming("X"):
        env_choice("X", "info", ("info", "debug"))


@pytest.mark.parametrize(
    ("raw", "expected"), [("/api", "/api"), ("/api/", "/api"), ("/", ""), ("/server/v6", "/server/v6")]
)
def test_api_path(monkeypatch, raw, expected):
    _set(monkeypatch, API_PATH=raw)
    assert env_api_path("API_PATH", "/api") == expected


@pytest.mark.parametrize("raw", ["api", "", "//api", "/a b", "http://x/api"])
def test_api_path_bad_values(monkeypatch, raw):
    _set(monkeypatch, API_PATH=raw)
    with _fails_naming("API_PATH"):
        env_api_path("API_PATH", "/api")


def test_secret_from_the_environment(monkeypatch, tmp_path):
    _set(monkeypatch, KEY="k" * 32)
    assert env_secret("KEY", tmp_path) == "k" * 32
    assert not list(tmp_path.iterdir())
    _set(monkeypatch, KEY="short")
    with _fails_naming("KEY"):
        env_secret("KEY", tmp_path)


def test_secret_is_generated_once_and_kept_private(tmp_path):
    folder = tmp_path / "data"
    first = env_secret("KEY", folder)
    assert len(first) >= 64
    assert env_secret("KEY", folder) == first
    assert (folder / "key").read_text() == first
    assert stat.S_IMODE((folder / "key").stat().st_mode) == 0o600
    assert [p.name for p in folder.iterdir()] == ["key"]


def test_secret_in_an_unwritable_place_names_the_variable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with _fails_naming("KEY"):
        env_secret("KEY", blocker / "data")


def test_database_default_is_sqlite_in_the_data_folder(monkeypatch, tmp_path):
    assert env_database("DATABASE_URL", tmp_path / "db.sqlite3") == {
        "ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3"),
    }  # fmt: skip
    _set(monkeypatch, DATABASE_URL=" ")
    assert env_database("DATABASE_URL", tmp_path / "x")["NAME"] == str(tmp_path / "x")


@pytest.mark.parametrize(
    ("url", "name"), [("sqlite:///relative/v6.db", "relative/v6.db"), ("sqlite:////abs/v6.db", "/abs/v6.db")]
)
def test_database_sqlite_urls(monkeypatch, tmp_path, url, name):
    _set(monkeypatch, DATABASE_URL=url)
    assert env_database("DATABASE_URL", tmp_path) == {"ENGINE": "django.db.backends.sqlite3", "NAME": name}


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_database_postgres_urls(monkeypatch, tmp_path, scheme):
    _set(monkeypatch, DATABASE_URL=f"{scheme}://v6:p%40ss%2Fword@db.example.org:5433/vantage%206")
    config = env_database("DATABASE_URL", tmp_path)
    assert {key: config[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")} == {
        "ENGINE": "django.db.backends.postgresql", "NAME": "vantage 6", "USER": "v6",
        "PASSWORD": "p@ss/word", "HOST": "db.example.org", "PORT": "5433",
    }  # fmt: skip
    # A connect to an unreachable server ends in time; a dead peer is found within about a minute.
    assert config["OPTIONS"] == {
        "connect_timeout": "5", "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
        "keepalives_count": "3", "tcp_user_timeout": "60000",
    }  # fmt: skip


def test_database_postgres_defaults_and_options(monkeypatch, tmp_path):
    _set(monkeypatch, DATABASE_URL="postgres://db/v6?sslmode=require&connect_timeout=12")
    config = env_database("DATABASE_URL", tmp_path)
    assert (config["USER"], config["PASSWORD"], config["PORT"]) == ("", "", "5432")
    assert config["OPTIONS"] == {**DATABASE_OPTIONS, "sslmode": "require", "connect_timeout": "12"}


@pytest.mark.parametrize(
    "url",
    ["mysql://u:secret@h/db", "postgres://u:secret@h:5432", "postgres://u:secret@h:abc/db",
     "postgres:///db", "sqlite://host/db", "sqlite://", "just-a-path.db"],
)  # fmt: skip
def test_database_bad_urls_name_the_variable_but_not_the_password(monkeypatch, tmp_path, url):
    _set(monkeypatch, DATABASE_URL=url)
    with _fails_naming("DATABASE_URL") as failure:
        env_database("DATABASE_URL", tmp_path)
    assert "secret" not in str(failure.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("amqp://g:g@127.0.0.1:5672", "amqp://g:g@127.0.0.1:5672"),
     ("amqp://g:g@127.0.0.1:5672/", "amqp://g:g@127.0.0.1:5672"), ("amqp://g:g@mq/asgi", "amqp://g:g@mq/asgi"),
     ("amqps://g:g@mq:5671", "amqps://g:g@mq:5671")],
)  # fmt: skip
def test_amqp(monkeypatch, raw, expected):
    if raw is not None:
        _set(monkeypatch, RABBITMQ_URI=raw)
    assert env_amqp("RABBITMQ_URI") == expected


@pytest.mark.parametrize("raw", ["http://mq:5672", "amqp://", "127.0.0.1:5672"])
def test_amqp_bad_values(monkeypatch, raw):
    _set(monkeypatch, RABBITMQ_URI=raw)
    with _fails_naming("RABBITMQ_URI"):
        env_amqp("RABBITMQ_URI")


# --- start-up ------------------------------------------------------------------------------------------
def _run(args: list[str], tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("V6_")}
    environment = {**clean, "V6_DATA_DIR": str(tmp_path), **{f"V6_{k}": v for k, v in variables.items()}}
    return subprocess.run(
        [sys.executable, *args], env=environment, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "abc"), ("PORT", "70000"), ("DEBUG", "maybe"), ("API_PATH", "api"),
     ("DATABASE_URL", "mysql://u:secret@h/db"), ("RABBITMQ_URI", "http://mq"), ("LOG_LEVEL", "loud"),
     ("SECRET_KEY", "short"), ("TOKEN_EXPIRES_HOURS", "100"), ("BEHIND_TLS", "maybe"),
     ("ALGORITHM_STORE_ALLOW_PRIVATE", "2"), ("ROOT_PASSWORD", "secret" * 13), ("TRUSTED_PROXIES", "nginx"),
     ("LOGIN_FAILURES_PER_MINUTE", "-1"), ("RECOVERY_REQUESTS_PER_HOUR", "many"),
     ("CORS_ALLOWED_ORIGINS", "https://ui.example.org/")],
)  # fmt: skip
def test_bad_variable_stops_manage_py_with_one_line(tmp_path, variable, value):
    result = _run(["manage.py", "check"], tmp_path, **{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"V6_{variable}" in lines[0]
    assert "secret" not in lines[0]
    assert result.stdout == ""


def test_bad_variable_stops_the_asgi_application_with_one_line(tmp_path):
    result = _run(["-c", "import vantage6.asgi"], tmp_path, PORT="abc")
    assert result.returncode != 0
    assert result.stderr.strip() == "Configuration error: V6_PORT must be an integer, got 'abc'"


SHOW_SETTINGS = """
import json, os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "vantage6.settings"
django.setup()
from django.conf import settings as s
names = ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER",
         "ALGORITHM_STORE_ALLOW_PRIVATE", "ALGORITHM_STORE_TRUSTED"]
print(json.dumps({name: getattr(s, name) for name in names}))
"""


@pytest.mark.parametrize(
    ("variables", "expected"),
    [({}, {"SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False, "SECURE_HSTS_SECONDS": 0,
           "SECURE_PROXY_SSL_HEADER": None, "ALGORITHM_STORE_ALLOW_PRIVATE": False,
           "ALGORITHM_STORE_TRUSTED": []}),
     ({"BEHIND_TLS": "1", "ALGORITHM_STORE_ALLOW_PRIVATE": "yes",
       "ALGORITHM_STORE_TRUSTED": "https://a.org/api/, https://b.org"},
      {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_HSTS_SECONDS": 31536000,
       "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"], "ALGORITHM_STORE_ALLOW_PRIVATE": True,
       "ALGORITHM_STORE_TRUSTED": ["https://a.org/api", "https://b.org"]})],
)  # fmt: skip
def test_tls_switch_and_store_settings(tmp_path, variables, expected):
    result = _run(["-c", SHOW_SETTINGS], tmp_path, **variables)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


# --- files that set variables --------------------------------------------------------------------------
def test_settings_read_their_variables_through_the_helpers():
    assert {"V6_PORT", "V6_HOST", "V6_DATABASE_URL", "V6_RABBITMQ_URI", "V6_API_PATH", "V6_SECRET_KEY",
            "V6_JWT_SECRET_KEY", "V6_DATA_DIR"} <= SETTINGS_VARIABLES  # fmt: skip


def test_readme_documents_exactly_the_known_variables():
    readme = (BASE_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `(V6_[A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == SETTINGS_VARIABLES


def _constant(node: ast.expr) -> object:
    """The value of a constant expression of the settings (``1024**2``)."""
    return eval(compile(ast.Expression(node), "settings.py", "eval"), {"__builtins__": {}})


def test_readme_states_the_defaults_and_bounds_the_settings_apply():
    readme = (BASE_DIR / "README.md").read_text()
    rows = {
        cells[0].strip("`"): cells[1:]
        for cells in (line[2:-2].split(" | ") for line in readme.splitlines() if line.startswith("| `V6_"))
    }
    checked = 0
    for call in ast.walk(ast.parse((BASE_DIR / "vantage6" / "settings.py").read_text())):
        helper = getattr(call.func, "id", "") if isinstance(call, ast.Call) else ""
        if helper not in ("env_int", "env_bool", "env_str"):
            continue
        name, default = f"V6_{_constant(call.args[0])}", call.args[1] if len(call.args) > 1 else None
        written, bounds = rows[name][0], rows[name][1]
        if isinstance(default, ast.Constant) and default.value != "":
            shown = str(default.value).lower() if helper == "env_bool" else default.value
            assert written.startswith(f"`{shown}`"), name
        if helper == "env_int":
            limits = {keyword.arg: _constant(keyword.value) for keyword in call.keywords}
            low, high = limits["minimum"], limits.get("maximum")
            assert bounds == (f"at least {low}" if high is None else f"{low}\N{EN DASH}{high}"), name
        checked += 1
    assert checked > 40


def _compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def test_compose_has_the_server_and_its_services():
    services = _compose()["services"]
    assert {"postgres", "rabbitmq", "server"} <= set(services)
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert services["server"]["build"] == "."


def test_compose_sets_only_known_variables_with_values_the_server_accepts(tmp_path):
    server = _compose()["services"]["server"]["environment"]
    names = {name for name in server if name.startswith("V6_")}
    assert names == set(server), "the server is configured through V6_ variables only"
    assert names <= SETTINGS_VARIABLES
    assert not server["V6_RABBITMQ_URI"].endswith("/")
    assert server["V6_DATABASE_URL"].startswith("postgres://")
    values = {name.removeprefix("V6_"): str(value) for name, value in server.items()}
    values["DATA_DIR"] = str(tmp_path)
    result = _run(["manage.py", "check"], tmp_path, **values)
    assert result.returncode == 0, result.stderr


def test_dockerfile_bootstraps_then_serves():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    command = re.search(r"^CMD (.*)$", dockerfile, flags=re.MULTILINE).group(1)
    # vantage6.serve runs daphne on V6_HOST:V6_PORT and stops it gracefully on `docker stop`.
    assert command.index("manage.py bootstrap") < command.index("exec python -m vantage6.serve")
