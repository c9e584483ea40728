"""Demo accounts and project for `make demo`: one person per role, all in one project."""

from dataclasses import dataclass

from django.db import transaction

from portal import services
from portal.models import Project, Role, User

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


DEMO_LOGINS = [DemoLogin(role.value, f"{role.value}-demo", role.value) for role in Role]


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
        name=DEMO_PROJECT_NAME, description=DEMO_PROJECT_DESCRIPTION, created_by=admin
    )
    for login in DEMO_LOGINS:
        user = User.objects.filter(username=login.username).first() or services.user_create(
            username=login.username,
            password=login.password,
            email=f"{login.username}@demo.invalid",
            created_by=admin,
            validate=False,
        )
        services.membership_add(project=project, user=user, role=login.role, added_by=admin)
    return project, DEMO_LOGINS
