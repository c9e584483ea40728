import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from core import services
from core.models import AuditEvent, Membership, Project, Role, User
from portal.demo import demo_seed

pytestmark = pytest.mark.django_db


def _actions():
    return list(AuditEvent.objects.values_list("action", flat=True))


def test_staff_creates_project_and_becomes_its_admin_and_engineer(
    staff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        project = services.project_create(name="Support bot", created_by=staff)

    held = Membership.objects.filter(project=project, user=staff).values_list("role", flat=True)
    assert set(held) == {Role.ADMIN, Role.ENGINEER}
    assert project.slug == "support-bot"
    assert _actions() == ["project.create", "membership.add", "membership.add"]


def test_project_slugs_stay_unique(staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        first = services.project_create(name="Same", created_by=staff)
        second = services.project_create(name="Same", created_by=staff)

    assert (first.slug, second.slug) == ("same", "same-2")


def test_non_staff_cannot_create_projects(engineer):
    with pytest.raises(PermissionDenied):
        services.project_create(name="Mine", created_by=engineer)

    assert not Project.objects.filter(name="Mine").exists()
    assert _actions() == []


def test_membership_add_is_audited_and_notifies_after_commit(
    project, admin, django_capture_on_commit_callbacks
):
    newcomer = User.objects.create(username="newcomer")

    with django_capture_on_commit_callbacks() as callbacks:
        services.membership_add(project=project, user=newcomer, role=Role.REVIEWER, added_by=admin)

    assert len(callbacks) == 1
    event = AuditEvent.objects.get(action="membership.add")
    assert event.data == {"user": newcomer.pk, "role": "reviewer"}
    assert event.project_id == project.pk


def test_adding_a_held_role_again_changes_nothing(project, annotator, admin):
    services.membership_add(project=project, user=annotator, role=Role.ANNOTATOR, added_by=admin)

    assert Membership.objects.filter(user=annotator).count() == 1
    assert _actions() == []


def test_unknown_role_is_refused_naming_the_field(project, annotator, admin):
    with pytest.raises(ValidationError) as error:
        services.membership_add(project=project, user=annotator, role="god", added_by=admin)

    assert "role" in error.value.message_dict


def test_set_roles_adds_and_removes(project, annotator, admin, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        services.membership_set_roles(
            project=project,
            user=annotator,
            roles={Role.REVIEWER, Role.ADJUDICATOR},
            changed_by=admin,
        )

    roles = set(Membership.objects.filter(user=annotator).values_list("role", flat=True))
    assert roles == {Role.REVIEWER, Role.ADJUDICATOR}
    assert sorted(_actions()) == ["membership.add", "membership.add", "membership.remove"]


def test_last_admin_cannot_be_removed(project, admin):
    membership = Membership.objects.get(user=admin, role=Role.ADMIN)

    with pytest.raises(ValidationError, match="at least one admin"):
        services.membership_remove(membership=membership, removed_by=admin)

    assert Membership.objects.filter(pk=membership.pk).exists()


def test_project_update_records_what_changed(project, admin):
    services.project_update(project=project, updated_by=admin, name="Renamed", description=None)

    event = AuditEvent.objects.get(action="project.update")
    assert event.data == {"name": {"from": "Acme support bot", "to": "Renamed"}}


def test_signup_refused_while_closed(db):
    with pytest.raises(PermissionDenied):
        services.user_signup(username="eve", password="a-long-pass-phrase", email="e@x.org")

    assert not User.objects.filter(username="eve").exists()


def test_signup_works_once_staff_opens_it(staff):
    services.site_settings_set_signup(open_=True, changed_by=staff)

    user = services.user_signup(username="eve", password="a-long-pass-phrase", email="e@x.org")

    assert user.check_password("a-long-pass-phrase")
    assert _actions() == ["site.signup", "user.create", "user.signup"]


def test_only_staff_open_signup(engineer):
    with pytest.raises(PermissionDenied):
        services.site_settings_set_signup(open_=True, changed_by=engineer)

    assert not services.site_settings_get().signup_open


def test_user_create_enforces_password_rules(staff):
    with pytest.raises(ValidationError):
        services.user_create(username="weak", password="123", created_by=staff)

    assert not User.objects.filter(username="weak").exists()


def test_usernames_are_unique_ignoring_case(staff, annotator):
    with pytest.raises(ValidationError, match="taken"):
        services.user_create(username="ANN", password="a-long-pass-phrase", created_by=staff)


def test_password_change_is_audited(annotator):
    services.user_password_change(user=annotator, new_password="another-long-phrase")

    annotator.refresh_from_db()
    assert annotator.check_password("another-long-phrase")
    assert _actions() == ["user.password_change"]


def test_a_creator_always_becomes_the_first_admin(staff):
    with pytest.raises(ValueError, match="admin"):
        services.project_create(name="Nobody runs it", created_by=staff, creator_roles=["engineer"])

    assert not Project.objects.exists()


def test_the_demo_admin_holds_only_the_admin_role(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        project, _ = demo_seed()

    roles = Membership.objects.filter(project=project, user__username="admin").values_list(
        "role", flat=True
    )
    assert list(roles) == [Role.ADMIN]
