"""What the tests of a Collaboration Admin of A facing B, A's partner in AB, start from: B also in a
collaboration A is not in, and A's admin on the admin site."""

from __future__ import annotations

from collaborations.models import Organization
from tests.admin.browser import Browser
from tests.factories import make_collab, make_org, make_task, make_user


def partner_also_elsewhere(world) -> Organization:
    """B, a partner of A in AB, also in BD with D, where A is not, with a task there: what B does without
    A, which a hold on B's organization or accounts would reach."""
    bd = make_collab(world.org_b, make_org("D"), name="BD")
    make_task(bd, world.org_b, world.org_b, name="zzd-task")
    return world.org_b


def collaboration_admin_site(world) -> Browser:
    """The admin site as a Collaboration Admin of A drives it."""
    return Browser(make_user(world.org_a, "Collaboration Admin").username)
