import pytest
from django.urls import reverse

from core.models import AuditEvent, Membership, Role, User

pytestmark = pytest.mark.django_db


def test_home_lists_projects_and_work_per_role(client, project, member_of):
    user = member_of(Role.ANNOTATOR, "multi")
    Membership.objects.create(user=user, project=project, role=Role.REVIEWER)
    client.force_login(user)

    html = client.get("/").content.decode()

    assert "Acme support bot" in html
    assert 'data-testid="work-annotator"' in html
    assert 'data-testid="work-reviewer"' in html
    assert 'data-testid="work-engineer"' not in html


def test_home_without_projects_says_how_to_get_one(client, db):
    client.force_login(User.objects.create(username="lonely"))

    assert b'data-testid="no-projects"' in client.get("/").content


def test_home_htmx_request_gets_only_the_fragment(client, annotator):
    client.force_login(annotator)

    response = client.get("/", headers={"HX-Request": "true"})

    body = response.content.decode()
    assert body.lstrip().startswith('<div id="home-projects"')
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_pages_send_a_content_security_policy(client, annotator):
    client.force_login(annotator)

    policy = client.get("/")["Content-Security-Policy"]

    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy


def test_admin_adds_member_with_roles_through_the_page(client, project, admin):
    User.objects.create(username="newbie")
    client.force_login(admin)

    client.post(
        reverse("project_members", args=[project.pk]),
        {"username": "newbie", "roles": ["annotator", "reviewer"]},
    )

    roles = set(Membership.objects.filter(user__username="newbie").values_list("role", flat=True))
    assert roles == {"annotator", "reviewer"}
    assert AuditEvent.objects.filter(action="membership.add").count() == 2


def test_members_page_names_an_unknown_username(client, project, admin):
    client.force_login(admin)

    response = client.post(
        reverse("project_members", args=[project.pk]), {"username": "ghost", "roles": ["annotator"]}
    )

    assert "No active account has that username." in response.content.decode()


def test_htmx_removal_returns_the_members_fragment(client, project, admin, annotator):
    membership = Membership.objects.get(user=annotator)
    client.force_login(admin)

    response = client.post(
        reverse("membership_remove", args=[project.pk, membership.pk]),
        headers={"HX-Request": "true"},
    )

    assert response.content.decode().lstrip().startswith('<section class="card" id="members"')
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_signup_page_closed_by_default(client, db):
    response = client.get(reverse("signup"))

    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content


def test_staff_creates_an_account_on_the_people_page(client, staff):
    client.force_login(staff)

    client.post("/people/", {"username": "carol", "password": "long-enough-phrase-1"})

    assert User.objects.get(username="carol").check_password("long-enough-phrase-1")


def test_password_change_keeps_the_session(client, annotator):
    client.force_login(annotator)

    response = client.post(
        "/accounts/",
        {
            "old_password": "ann-pass-123",
            "new_password1": "brand-new-phrase-9",
            "new_password2": "brand-new-phrase-9",
        },
    )

    assert response.status_code == 302
    assert client.get("/").status_code == 200
    annotator.refresh_from_db()
    assert annotator.check_password("brand-new-phrase-9")


def test_failed_logins_lock_the_account_after_five(client, annotator):
    for _ in range(5):
        client.post("/accounts/login/", {"username": "ann", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "ann", "password": "ann-pass-123"})

    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content


def test_healthz_answers_without_login(client, db):
    assert client.get("/healthz/").json() == {"status": "ok"}


def test_openapi_schema_and_docs_are_served(client, annotator):
    client.force_login(annotator)

    assert b"/api/v1/projects/" in client.get("/api/schema/").content
    assert client.get("/api/docs/").status_code == 200


def test_project_page_shows_where_the_project_stands_stage_by_stage(
    client, project, member_of, tiny_model_dir
):
    from annotation.services.snapshots import snapshot_create
    from tests.annotation.factories import DatasetFactory, classification_setup, gold_item
    from training import services as training_services

    engineer = member_of(Role.ENGINEER, "eng")
    classification_setup(project)
    dataset = DatasetFactory(project=project)
    for i in range(10):
        gold_item(dataset, {"text": f"t{i}"}, {"labels": ["pos"]})
    snapshot = snapshot_create(actor=engineer, project=project, name="cls")
    base = training_services.base_model_register(
        actor=None, project=None, name="tiny", source="local", path=str(tiny_model_dir)
    )
    rows = tiny_model_dir.parent / "rows.jsonl"
    rows.write_text('{"prompt": "a", "completion": "b"}\n')
    training_services.training_job_create(
        actor=engineer,
        project=project,
        name="first run",
        kind="sft",
        method="lora",
        base_model=base,
        values={"max_steps": 8},
        train_file=str(rows),
    )
    client.force_login(engineer)

    html = client.get(reverse("project_detail", args=[project.pk])).content.decode()

    assert 'data-testid="stage-data" data-state="done"' in html
    assert f"{snapshot} · 10 items · leakage not checked" in html
    assert 'data-testid="stage-training" data-state="active"' in html
    assert "first run: queued, step 0 of 8" in html
    assert 'data-testid="stage-gate" data-state="todo"' in html
    # While a job runs the card refreshes itself; an htmx request gets only the card.
    assert 'data-moving="yes"' in html
    fragment = client.get(
        reverse("project_detail", args=[project.pk]), headers={"HX-Request": "true"}
    ).content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="journey"')


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ANNOTATOR, Role.ADJUDICATOR])
def test_the_project_journey_is_not_shown_to_reviewers_or_annotators(
    client, project, member_of, role
):
    client.force_login(member_of(role, "someone"))

    html = client.get(reverse("project_detail", args=[project.pk])).content.decode()

    assert 'data-testid="journey"' not in html


def test_the_journey_shows_generation_progress_before_a_campaign_exists(client, project, member_of):
    from evaluation import services as evaluation_services
    from tests.evaluation.factories import base_model, prompt_rows

    engineer = member_of(Role.ENGINEER, "eng")
    prompts = evaluation_services.prompt_set_create(
        actor=engineer, project=project, name="held out", rows=prompt_rows(5)
    )
    contestant = evaluation_services.contestant_create(
        actor=engineer, project=project, label="base", base_model=base_model(project, "b")
    )
    evaluation_services.generation_job_start(
        actor=engineer, contestant=contestant, prompt_set=prompts
    )
    client.force_login(engineer)

    html = client.get(reverse("project_detail", args=[project.pk])).content.decode()

    assert 'data-testid="stage-evaluation" data-state="active"' in html
    assert "generating answers to compare: 0 of 5" in html
    assert 'data-moving="yes"' in html
