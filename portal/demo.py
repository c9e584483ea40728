"""Demo accounts and project for `make demo`: one person per role, all in one project."""

from dataclasses import dataclass

from django.db import transaction

from core import services
from core.models import Project, Role, User

DEMO_PROJECT_NAME = "Support assistant (demo)"
DEMO_PROJECT_DESCRIPTION = (
    "A customer-support assistant tuned from SmolLM2-135M-Instruct: annotate answers, "
    "adjudicate disagreements, train a LoRA adapter, compare it blind with the base model "
    "and sign off its dossier."
)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    note: str = ""


DEMO_LOGINS = [DemoLogin(role.value, f"{role.value}-demo", role.value) for role in Role]
# More people than one per role: two more annotators, so items get labels from different
# people, and the two reviewers whose judgments the demo simulates.
EXTRA_DEMO_LOGINS = [
    DemoLogin("ana", "ana-demo", Role.ANNOTATOR.value),
    DemoLogin("ben", "ben-demo", Role.ANNOTATOR.value),
    DemoLogin("rita", "rita-demo", Role.REVIEWER.value, "simulated judgments"),
    DemoLogin("sam", "sam-demo", Role.REVIEWER.value, "simulated judgments"),
]


def extra_demo_logins(role: str) -> list[DemoLogin]:
    return [login for login in EXTRA_DEMO_LOGINS if login.role == role]


def demo_login_lines() -> list[str]:
    """What seed_demo and serve_demo print: every demo login, one line each."""
    return [
        f"  {login.role:<12} {login.username} / {login.password}"
        + (f" ({login.note})" if login.note else "")
        for login in DEMO_LOGINS + EXTRA_DEMO_LOGINS
    ]


def demo_member(*, project: Project, admin: User, login: DemoLogin) -> User:
    """The login's user (created if missing) as a member of `project` in its role."""
    user = User.objects.filter(username=login.username).first() or services.user_create(
        username=login.username,
        password=login.password,
        email=f"{login.username}@demo.invalid",
        created_by=admin,
        validate=False,
    )
    services.membership_add(project=project, user=user, role=login.role, added_by=admin)
    return user


@transaction.atomic
def demo_seed() -> tuple[Project, list[DemoLogin]]:
    """Create the demo users and project if missing; running it twice changes nothing."""
    admin_login = next(d for d in DEMO_LOGINS if d.role == Role.ADMIN)
    admin = User.objects.filter(username=admin_login.username).first() or services.user_create(
        username=admin_login.username,
        password=admin_login.password,
        is_staff=True,
        email="admin@demo.invalid",
        created_by=None,
        validate=False,
    )
    project = Project.objects.filter(name=DEMO_PROJECT_NAME).first() or services.project_create(
        name=DEMO_PROJECT_NAME,
        description=DEMO_PROJECT_DESCRIPTION,
        created_by=admin,
        creator_roles=[Role.ADMIN],  # each demo login shows one role
    )
    for login in DEMO_LOGINS:
        demo_member(project=project, admin=admin, login=login)
    return project, DEMO_LOGINS
