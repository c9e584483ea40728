"""Reads for `/metrics` (which no user signs in to: it answers loopback and configured
scrapers only, and names deployments, never content)."""

from serving.models import Deployment


def deployment_names() -> dict[int, tuple[str, int]]:
    """Every deployment's (name, project id) by its id."""
    return {
        pk: (name, project_id)
        for pk, name, project_id in Deployment.objects.values_list("pk", "name", "project_id")
    }
