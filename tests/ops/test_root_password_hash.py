"""``V6_INIT_SUPER_PASS_HASHED``: the first root password given as a bcrypt hash, as vantage6's
``root_user`` setting offers; values that are no usable hash stop start-up."""

from __future__ import annotations

import sqlite3

import bcrypt
import pytest

from tests.ops.test_deployment import bootstrap

PASSWORD = "Kept-from-vantage6-1"


def root_hash(data_dir) -> str | None:
    with sqlite3.connect(data_dir / "vantage6.sqlite3") as connection:
        row = connection.execute('SELECT password FROM "user" WHERE username = ?', ("root",)).fetchone()
    return row and row[0]


def test_root_is_created_with_the_given_hash(tmp_path):
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    result = bootstrap(tmp_path, INIT_SUPER_PASS_HASHED=hashed)
    assert result.returncode == 0, result.stderr
    assert "Created user 'root' with password" not in result.stdout
    assert root_hash(tmp_path) == hashed
    # A later start with another hash leaves root alone.
    other = bcrypt.hashpw(b"Another-password-2", bcrypt.gensalt(rounds=4)).decode()
    assert bootstrap(tmp_path, INIT_SUPER_PASS_HASHED=other).returncode == 0
    assert root_hash(tmp_path) == hashed


@pytest.mark.parametrize(
    "variables,message",
    [
        ({"INIT_SUPER_PASS_HASHED": PASSWORD}, "must be a bcrypt hash"),
        ({"INIT_SUPER_PASS_HASHED": "$2b$04$" + "x" * 20}, "must be a bcrypt hash"),
        ({"INIT_SUPER_PASS_HASHED": bcrypt.hashpw(b"", bcrypt.gensalt(rounds=4)).decode()}, "empty password"),
        (
            {"INIT_SUPER_PASS_HASHED": bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode(),
             "ROOT_PASSWORD": PASSWORD},
            "set V6_ROOT_PASSWORD or V6_INIT_SUPER_PASS_HASHED, not both",
        ),
    ],
)  # fmt: skip
def test_a_value_that_is_no_usable_hash_stops_start_up(tmp_path, variables, message):
    result = bootstrap(tmp_path, **variables)
    assert result.returncode == 2
    assert "V6_INIT_SUPER_PASS_HASHED" in result.stderr and message in result.stderr
    assert not (tmp_path / "vantage6.sqlite3").exists() or root_hash(tmp_path) is None


# 72 bytes, as V6_ROOT_PASSWORD's own bound counts them, but 38 characters of two bytes: wider than the
# policy the API sets passwords by (every character counted as the widest), so the API would refuse it.
WIDE = "Aa1!" + "é" * 34


@pytest.mark.parametrize(
    ("password", "problem"),
    [(WIDE, "at most 72 bytes in UTF-8"), ("rootroot", "at least one digit")],
)
def test_a_first_root_password_the_policy_refuses_is_warned_about(tmp_path, password, problem):
    result = bootstrap(tmp_path, ROOT_PASSWORD=password)

    assert result.returncode == 0, result.stderr  # the operator's choice, as vantage6 takes it
    assert "password policy refuses" in result.stderr and problem in result.stderr
    assert password not in result.stderr + result.stdout
    assert root_hash(tmp_path) is not None


def test_a_first_root_password_the_policy_accepts_is_not_warned_about(tmp_path):
    result = bootstrap(tmp_path, ROOT_PASSWORD=PASSWORD)

    assert result.returncode == 0 and "password policy" not in result.stderr


def test_a_later_start_does_not_judge_the_root_password_it_does_not_use(tmp_path):
    assert bootstrap(tmp_path, ROOT_PASSWORD=PASSWORD).returncode == 0
    first = root_hash(tmp_path)

    result = bootstrap(tmp_path, ROOT_PASSWORD=WIDE)

    assert result.returncode == 0 and "password policy" not in result.stderr, result.stderr
    assert root_hash(tmp_path) == first
