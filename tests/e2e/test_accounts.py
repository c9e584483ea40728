import re

import pytest
from playwright.sync_api import expect

from core import services
from core.models import Role, User
from portal.demo import DEMO_LOGINS, demo_seed
from tests.e2e.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

HOME_CARD = {
    Role.ANNOTATOR: "Annotation queues",
    Role.ADJUDICATOR: "Adjudication",
    Role.REVIEWER: "Review campaigns",
    Role.ENGINEER: "Data and training jobs",
    Role.COMPLIANCE: "Dossiers and audit",
    Role.ADMIN: "Project administration",
}


@pytest.mark.parametrize("demo", DEMO_LOGINS, ids=[d.role for d in DEMO_LOGINS])
def test_each_demo_role_logs_in_and_sees_its_home(page, demo):
    demo_seed()

    log_in(page, demo.username, demo.password)

    expect(page.get_by_role("heading", name=f"Welcome, {demo.username}")).to_be_visible()
    expect(page.get_by_test_id("project-list")).to_contain_text("Support assistant (demo)")
    expect(page.get_by_test_id(f"work-{demo.role}")).to_contain_text(HOME_CARD[demo.role])
    others = [r for r in HOME_CARD if r != demo.role]
    for other in others:
        expect(page.get_by_test_id(f"work-{other}")).to_have_count(0)


def test_wrong_password_shows_a_clear_error(page):
    demo_seed()

    log_in(page, "annotator", "not-the-password")

    expect(page.get_by_test_id("login-error")).to_contain_text(
        "That username and password do not match"
    )
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))


def test_logout_ends_the_session(page):
    demo_seed()
    log_in(page, "reviewer", "reviewer-demo")
    expect(page.get_by_test_id("project-list")).to_be_visible()

    page.get_by_test_id("logout").click()

    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))


def test_message_from_a_celery_task_reaches_the_browser(
    page, celery_worker, django_capture_on_commit_callbacks
):
    project, _ = demo_seed()
    newcomer = User.objects.create(username="newcomer")
    newcomer.set_password("newcomer-pass-1")
    newcomer.save()
    log_in(page, "newcomer", "newcomer-pass-1")
    expect(page.get_by_test_id("no-projects")).to_be_visible()
    expect(page.locator("body[data-ws-status=open]")).to_have_count(1)

    # The service enqueues the notification on commit; the worker pushes it over Redis.
    with django_capture_on_commit_callbacks(execute=True):
        services.membership_add(
            project=project,
            user=newcomer,
            role=Role.REVIEWER,
            added_by=User.objects.get(username="admin"),
        )

    expect(page.get_by_test_id("toasts")).to_contain_text(
        "You were added to Support assistant (demo) as reviewer."
    )
    # The toast also refreshes the project list in place, without a reload.
    expect(page.get_by_test_id("project-list")).to_contain_text("Support assistant (demo)")
