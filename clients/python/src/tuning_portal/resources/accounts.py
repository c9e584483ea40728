"""Accounts (portal administrators), the caller's API keys and a project's members."""

from typing import Any

from tuning_portal.pagination import CursorPaginator
from tuning_portal.resources._base import Resource
from tuning_portal.types import ApiKey, Membership, User


class Users(Resource):
    """/users/ and /users/<id>/: every account of the portal (portal administrators only)."""

    def list(
        self,
        *,
        is_active: bool | None = None,
        is_staff: bool | None = None,
        page_size: int = 100,
    ) -> CursorPaginator[User]:
        params = {"is_active": is_active, "is_staff": is_staff}
        return self._pages("users/", User.from_dict, params, page_size)

    def create(
        self,
        *,
        username: str,
        password: str,
        email: str = "",
        first_name: str = "",
        last_name: str = "",
        is_staff: bool = False,
    ) -> User:
        """A new account; the password must pass the portal's password rules."""
        body = {
            "username": username,
            "password": password,
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "is_staff": is_staff,
        }
        return User.from_dict(self._client._post("users/", json=body))

    def retrieve(self, user_id: int) -> User:
        return User.from_dict(self._client._get(f"users/{int(user_id)}/"))

    def update(self, user_id: int, **changes: Any) -> User:
        """Change email, first_name, last_name, is_staff or is_active."""
        return User.from_dict(self._client._patch(f"users/{int(user_id)}/", json=changes))

    def deactivate(self, user_id: int) -> None:
        """Accounts are never deleted (the audit log names them): this deactivates one and
        revokes its API keys."""
        self._client._request("DELETE", f"users/{int(user_id)}/")


class ApiKeys(Resource):
    """/me/keys/ and /me/keys/<id>/: the caller's own keys. Making a key needs a signed-in
    session, not a key (a leaked key cannot mint successors), so `create` answers 403 here
    unless this client was built on a session."""

    def list(self, *, page_size: int = 100) -> CursorPaginator[ApiKey]:
        return self._pages("me/keys/", ApiKey.from_dict, None, page_size)

    def create(self, *, name: str, expires_in_days: int | None = None) -> ApiKey:
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return ApiKey.from_dict(self._client._post("me/keys/", json=body))

    def retrieve(self, key_id: int) -> ApiKey:
        return ApiKey.from_dict(self._client._get(f"me/keys/{int(key_id)}/"))

    def revoke(self, key_id: int) -> None:
        self._client._request("DELETE", f"me/keys/{int(key_id)}/")


class Memberships(Resource):
    """projects/<p>/memberships/ (list, add) and projects/<p>/memberships/<id>/ (retrieve,
    change role, remove): one row per role a person holds in the project."""

    def list(
        self,
        *,
        project: int | None = None,
        role: str | None = None,
        user: int | None = None,
        page_size: int = 100,
    ) -> CursorPaginator[Membership]:
        path = self._path(project, "memberships/")
        return self._pages(path, Membership.from_dict, {"role": role, "user": user}, page_size)

    def create(self, *, username: str, role: str, project: int | None = None) -> Membership:
        """Give `username` `role` in the project (admins); a role they hold is answered as is."""
        body = {"username": username, "role": role}
        path = self._path(project, "memberships/")
        return Membership.from_dict(self._client._post(path, json=body))

    def retrieve(self, membership_id: int, *, project: int | None = None) -> Membership:
        path = self._path(project, f"memberships/{int(membership_id)}/")
        return Membership.from_dict(self._client._get(path))

    def update(self, membership_id: int, *, role: str, project: int | None = None) -> Membership:
        path = self._path(project, f"memberships/{int(membership_id)}/")
        return Membership.from_dict(self._client._patch(path, json={"role": role}))

    def delete(self, membership_id: int, *, project: int | None = None) -> None:
        path = self._path(project, f"memberships/{int(membership_id)}/")
        self._client._request("DELETE", path)
