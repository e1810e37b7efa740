"""What an anonymous client can do with password recovery: have every account it knows of mailed
from one address, and learn from the answers which accounts exist."""

from __future__ import annotations

import pytest

from accounts.models import User
from tests.accounts.conftest import delivered
from tests.factories import make_org, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("smtp")]

ATTACKER, OTHER = "203.0.113.7", "198.51.100.20"
LIMIT = 3
SENT = {"msg": "If the username or email is in our database you will soon receive an email."}


@pytest.fixture(autouse=True)
def _limit(settings):
    settings.RECOVERY_REQUESTS_PER_HOUR = LIMIT


def _lost(api, address: str, **body: str):
    return api.post("/api/recover/lost", body, format="json", REMOTE_ADDR=address)


def _unmailed() -> set[str]:
    return set(User.objects.filter(last_email_recover_password_sent=None).values_list("username", flat=True))


def test_one_address_cannot_have_every_account_mailed(api, mailoutbox):
    org = make_org("victims")
    victims = [make_user(org, username=f"victim{n}") for n in range(LIMIT + 2)]

    answers = [_lost(api, ATTACKER, username=victim.username) for victim in victims]

    assert [a.status_code for a in answers] == [200] * LIMIT + [429] * 2
    assert all(a.json() == SENT for a in answers[:LIMIT])
    refused = answers[-1]
    assert refused.json()["msg"].startswith("Too many recovery requests from your address")
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert sorted(m.to[0] for m in delivered(mailoutbox)) == sorted(v.email for v in victims[:LIMIT])
    assert {v.username for v in victims[LIMIT:]} <= _unmailed()
    # Another client is not held up by the attacker.
    assert _lost(api, OTHER, email=victims[-1].email).status_code == 200
    assert len(delivered(mailoutbox)) == LIMIT + 1


def test_the_limit_tells_nothing_about_which_accounts_exist(api, mailoutbox):
    known = make_user(make_org("org"), username="known")
    for n in range(LIMIT):
        assert _lost(api, ATTACKER, username=f"nobody{n}").status_code == 200

    answers = [_lost(api, ATTACKER, username=name) for name in ("known", "nobody-else")]
    answers += [_lost(api, ATTACKER, email=email) for email in (known.email, "nobody@example.org")]

    assert {(a.status_code, a.json()["msg"].split(";")[0]) for a in answers} == {
        (429, "Too many recovery requests from your address")
    }
    assert delivered(mailoutbox) == []
    assert "known" in _unmailed()


def test_requests_refused_as_bad_input_do_not_count(api, mailoutbox):
    user = make_user(make_org("org"), username="someone")
    for _ in range(LIMIT + 2):
        assert _lost(api, ATTACKER).status_code == 400

    assert _lost(api, ATTACKER, username=user.username).status_code == 200
    assert len(delivered(mailoutbox)) == 1


def test_no_limit_when_set_to_zero(api, settings):
    settings.RECOVERY_REQUESTS_PER_HOUR = 0
    assert {_lost(api, ATTACKER, username=f"nobody{n}").status_code for n in range(LIMIT + 2)} == {200}
