import factory

from core.models import Membership, Project, Role, User
from core.services import api_key_create

PASSWORD_SUFFIX = "-pass-123"


def password_for(username: str) -> str:
    return username + PASSWORD_SUFFIX


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or password_for(self.username))
        if create:
            self.save(update_fields=["password"])


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    created_by = factory.SubFactory(UserFactory, is_staff=True)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory)
    role = Role.ANNOTATOR


def api_key_for(user: User, name: str = "tests") -> str:
    """A new API key's secret for `user`, made the one way keys are made."""
    return api_key_create(user=user, name=name)[1]
