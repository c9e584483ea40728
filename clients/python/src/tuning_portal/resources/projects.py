import builtins
from typing import Any

from tuning_portal.resources._base import Resource
from tuning_portal.types import Project


class Projects(Resource):
    """GET/POST projects/, GET/PATCH projects/<id>/."""

    def list(self) -> builtins.list[Project]:
        return [Project.from_dict(row) for row in self._client._get("projects/")]

    def retrieve(self, project_id: int | None = None) -> Project:
        return Project.from_dict(self._client._get(self._path(project_id)))

    def create(self, *, name: str, description: str = "") -> Project:
        body = {"name": name, "description": description}
        return Project.from_dict(self._client._post("projects/", json=body))

    def update(self, project_id: int | None = None, **changes: Any) -> Project:
        """Change `name`, `description` or `archived` (admins only)."""
        return Project.from_dict(self._client._patch(self._path(project_id), json=changes))
