import json
from pathlib import Path

import pytest

from core.models import Role
from tests.portal.factories import MembershipFactory, UserFactory, api_key_for
from tests.training.conftest import sft_rows
from training import services
from training.models import BaseModel
from tuning_portal import Client


@pytest.fixture
def client_engineer(project):
    """An engineer of `project`, with an API key, as a script would be."""
    user = UserFactory(username="client-eng")
    MembershipFactory(project=project, user=user, role=Role.ENGINEER)
    return user


@pytest.fixture
def portal(asgi_server, client_engineer, project):
    """The client, as a user writes it: base URL, the engineer's key, a default project."""
    with Client(
        base_url=asgi_server, api_key=api_key_for(client_engineer), project=project.pk
    ) as client:
        yield client


@pytest.fixture
def tiny_base_model(tiny_model_dir, db) -> BaseModel:
    return services.base_model_register(
        actor=None, project=None, name="tiny-llama", source="local", path=str(tiny_model_dir)
    )


@pytest.fixture
def sft_file(tmp_path) -> Path:
    path = tmp_path / "sft_train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in sft_rows(32)))
    return path


def texts_file(folder: Path, n: int, name: str = "rows.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps({"text": f"ticket {i}"}) + "\n" for i in range(n)))
    return path


PROVENANCE = {
    "source_description": "Support tickets, 2025",
    "license": "CC-BY-4.0",
    "consent_basis": "terms of service",
    "collection_date": "2025-01-01",
}
