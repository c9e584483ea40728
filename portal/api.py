"""The portal's own API: the caller, their API keys, accounts (portal administrators only),
projects and their members. Every write is a core service, the same one the pages call."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors, services
from core.access import ProjectApiView
from core.api_errors import StrictInput
from core.authentication import AuthenticatedRequest as Request
from core.models import ApiKey, Membership, Project, Role, RoleSet, User
from core.pagination import (
    ARRAY_PAGE_PARAMETERS,
    CURSOR_PARAMETERS,
    array_page,
    cursor_page,
    page_of,
    strict_query,
)
from core.parsers import StrictJSONParser


def _flag(params: dict[str, str], name: str) -> bool | None:
    """A true/false query parameter; 400 naming it for anything else."""
    if name not in params:
        return None
    value = params[name].lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise serializers.ValidationError({name: ["Use true or false."]})


def _flag_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, bool, required=False, description=description)


PROJECT_DESCRIPTION_MAX = 20_000


# JSON bodies only: the server then refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE with a
# 413 before Django reads it (portal.asgi_limits gives multipart views the file limit).
JSON_ONLY = [StrictJSONParser]


def _in_order(roles) -> list[str]:
    """Roles as every answer lists them: in `Role`'s order (as project_list_for_user)."""
    return [role for role in Role.values if role in roles]


class ProjectOutput(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "archived", "created_at", "roles"]

    def get_roles(self, project: Project) -> list[str]:
        return self.context.get("roles", {}).get(project.pk, [])


class MembershipOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["id", "user", "username", "role", "created_at"]


class MeApi(APIView):
    class MeOutput(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        is_staff = serializers.BooleanField()
        projects = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=MeOutput)
    def get(self, request: Request) -> Response:
        projects = selectors.project_list_for_user(user=request.user)
        return Response(
            {
                "id": request.user.pk,
                "username": request.user.username,
                "is_staff": request.user.is_staff,
                "projects": [
                    {"id": p.project.pk, "name": p.project.name, "roles": p.roles} for p in projects
                ],
            }
        )


class ProjectListCreateApi(APIView):
    parser_classes = JSON_ONLY

    class ProjectCreateInput(StrictInput):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            max_length=PROJECT_DESCRIPTION_MAX, required=False, allow_blank=True, default=""
        )

    @extend_schema(
        parameters=[
            *ARRAY_PAGE_PARAMETERS,
            _flag_parameter("include_archived", "Also list archived projects."),
        ],
        responses=ProjectOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        """The caller's projects, each with the roles they hold there, oldest first."""
        params = strict_query(request, ["include_archived"])
        projects, roles = selectors.project_query_for_user(
            user=request.user, include_archived=bool(_flag(params, "include_archived"))
        )
        return array_page(
            projects,
            request,
            self,
            lambda page: ProjectOutput(page, many=True, context={"roles": roles}).data,
        )

    @extend_schema(request=ProjectCreateInput, responses={201: ProjectOutput})
    def post(self, request: Request) -> Response:
        payload = self.ProjectCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **payload.validated_data)
        return Response(
            ProjectOutput(
                project, context={"roles": {project.pk: _in_order(RoleSet.CREATOR)}}
            ).data,
            status=status.HTTP_201_CREATED,
        )


class ProjectDetailApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = {"GET": RoleSet.MEMBERS, "PATCH": RoleSet.ADMINS}

    class ProjectUpdateInput(StrictInput):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(
            max_length=PROJECT_DESCRIPTION_MAX, required=False, allow_blank=True
        )
        archived = serializers.BooleanField(required=False)

    @extend_schema(responses=ProjectOutput)
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        context = {"roles": {access.project.pk: _in_order(access.roles)}}
        return Response(ProjectOutput(access.project, context=context).data)

    @extend_schema(request=ProjectUpdateInput, responses=ProjectOutput)
    def patch(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = self.ProjectUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        project = services.project_update(
            project=access.project, updated_by=request.user, **payload.validated_data
        )
        context = {"roles": {project.pk: _in_order(access.roles)}}
        return Response(ProjectOutput(project, context=context).data)


MEMBERSHIP_FILTERS = ("role", "user")


class MembershipListCreateApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ADMINS}

    class MembershipCreateInput(StrictInput):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)

    class MembershipFilters(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices, required=False)
        user = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)

    @extend_schema(
        parameters=[
            *ARRAY_PAGE_PARAMETERS,
            OpenApiParameter("role", str, enum=Role.values, required=False),
            OpenApiParameter("user", int, required=False, description="A user's id."),
        ],
        responses=MembershipOutput(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        """One row per role a person holds in the project, in the order they were given."""
        access = self.access
        filters = self.MembershipFilters(data=strict_query(request, MEMBERSHIP_FILTERS))
        filters.is_valid(raise_exception=True)
        members = selectors.membership_list_for_project(
            project=access.project, **filters.validated_data
        )
        return array_page(
            members, request, self, lambda page: MembershipOutput(page, many=True).data
        )

    @extend_schema(request=MembershipCreateInput, responses={201: MembershipOutput})
    def post(self, request: Request, project_id: int) -> Response:
        """Give a person (by username) a role in the project; a role they hold already is
        answered with its row, unchanged."""
        access = self.access
        payload = self.MembershipCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        user = selectors.user_addable_get(
            username=payload.validated_data["username"], by=request.user
        )
        if user is None:
            raise serializers.ValidationError({"username": "No active account has that username."})
        membership = services.membership_add(
            project=access.project,
            user=user,
            role=payload.validated_data["role"],
            added_by=request.user,
        )
        return Response(MembershipOutput(membership).data, status=status.HTTP_201_CREATED)


class MembershipDetailApi(ProjectApiView):
    parser_classes = JSON_ONLY
    roles = RoleSet.ADMINS

    class MembershipChangeInput(StrictInput):
        role = serializers.ChoiceField(choices=Role.choices)

    def _membership(self, membership_id: int) -> Membership:
        return get_object_or_404(
            Membership.objects.select_related("user"),
            pk=membership_id,
            project=self.access.project,
        )

    @extend_schema(responses=MembershipOutput)
    def get(self, request: Request, project_id: int, membership_id: int) -> Response:
        return Response(MembershipOutput(self._membership(membership_id)).data)

    @extend_schema(request=MembershipChangeInput, responses=MembershipOutput)
    def patch(self, request: Request, project_id: int, membership_id: int) -> Response:
        """Change this row's role. If the person holds the new role already, this row goes
        and their other row is answered. The project's last admin stays admin (400)."""
        membership = self._membership(membership_id)
        payload = self.MembershipChangeInput(data=request.data)
        payload.is_valid(raise_exception=True)
        changed = services.membership_role_change(
            membership=membership, role=payload.validated_data["role"], changed_by=request.user
        )
        return Response(MembershipOutput(changed).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int, membership_id: int) -> Response:
        """Take the role away; the project's last admin cannot be removed (400)."""
        services.membership_remove(
            membership=self._membership(membership_id), removed_by=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret; shown this once, never stored.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class ApiKeyListCreateApi(APIView):
    """The caller's own API keys: list them (never their secrets) or make one."""

    parser_classes = JSON_ONLY

    class ApiKeyCreateInput(StrictInput):
        name = serializers.CharField(max_length=services.API_KEY_NAME_MAX)
        expires_in_days = serializers.IntegerField(min_value=1, required=False)

    @extend_schema(parameters=ARRAY_PAGE_PARAMETERS, responses=ApiKeyOutput(many=True))
    def get(self, request: Request) -> Response:
        """Newest first, revoked and expired keys too; each by its prefix, never its secret."""
        strict_query(request, [])
        keys = selectors.api_key_list_for_user(user=request.user)
        return array_page(
            keys, request, self, lambda page: ApiKeyOutput(page, many=True).data, ordering="-id"
        )

    @extend_schema(request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput})
    def post(self, request: Request) -> Response:
        if request.auth is not None:
            # A leaked key must not be able to outlive its expiry by minting successors.
            raise PermissionDenied("Create API keys from a signed-in session, not with a key.")
        payload = self.ApiKeyCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        key, raw = services.api_key_create(user=request.user, **payload.validated_data)
        return Response(
            # ApiKeyCreatedOutput's shape; the secret is never a field of the model.
            {**ApiKeyOutput(key).data, "key": raw},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class ApiKeyDetailApi(APIView):
    @extend_schema(responses=ApiKeyOutput)
    def get(self, request: Request, key_id: int) -> Response:
        key = selectors.api_key_get_for_user(user=request.user, key_id=key_id)
        return Response(ApiKeyOutput(key).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: int) -> Response:
        key = selectors.api_key_get_for_user(user=request.user, key_id=key_id)
        services.api_key_revoke(key=key, revoked_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- accounts (portal administrators) ----------------------------------------------------


class IsPortalAdmin(BasePermission):
    """As the people page: only portal administrators (staff) manage accounts."""

    message = "Only portal administrators manage accounts."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_staff)


class UserOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_staff",
            "is_active",
            "date_joined",
            "last_login",
        ]


USER_FILTERS = ("is_active", "is_staff")


class UserListCreateApi(APIView):
    """Every account of the portal (wrapped, cursor-paged), and new accounts."""

    parser_classes = JSON_ONLY

    permission_classes = [*APIView.permission_classes, IsPortalAdmin]

    class UserCreateInput(StrictInput):
        username = serializers.CharField(max_length=150)
        email = serializers.EmailField(required=False, allow_blank=True, default="")
        first_name = serializers.CharField(
            max_length=150, required=False, allow_blank=True, default=""
        )
        last_name = serializers.CharField(
            max_length=150, required=False, allow_blank=True, default=""
        )
        password = serializers.CharField(
            max_length=128, write_only=True, help_text="Checked by the portal's password rules."
        )
        is_staff = serializers.BooleanField(
            default=False, help_text="Portal administrator: creates projects and accounts."
        )

    @extend_schema(
        parameters=[
            *CURSOR_PARAMETERS,
            _flag_parameter("is_active", "Only active (true) or deactivated (false) accounts."),
            _flag_parameter("is_staff", "Only portal administrators (true) or others (false)."),
        ],
        responses=page_of(UserOutput),
        operation_id="v1_users_list",
    )
    def get(self, request: Request) -> Response:
        params = strict_query(request, USER_FILTERS)
        users = selectors.user_list(
            is_active=_flag(params, "is_active"), is_staff=_flag(params, "is_staff")
        )
        return cursor_page(users, request, self, lambda page: UserOutput(page, many=True).data)

    @extend_schema(request=UserCreateInput, responses={201: UserOutput})
    def post(self, request: Request) -> Response:
        payload = self.UserCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        user = services.user_create(created_by=request.user, **payload.validated_data)
        return Response(UserOutput(user).data, status=status.HTTP_201_CREATED)


class UserDetailApi(APIView):
    parser_classes = JSON_ONLY
    permission_classes = [*APIView.permission_classes, IsPortalAdmin]

    class UserUpdateInput(StrictInput):
        email = serializers.EmailField(required=False, allow_blank=True)
        first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
        last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
        is_staff = serializers.BooleanField(required=False)
        is_active = serializers.BooleanField(
            required=False, help_text="false deactivates the account and revokes its API keys."
        )

    @extend_schema(responses=UserOutput)
    def get(self, request: Request, user_id: int) -> Response:
        return Response(UserOutput(selectors.user_get(user_id=user_id)).data)

    @extend_schema(request=UserUpdateInput, responses=UserOutput)
    def patch(self, request: Request, user_id: int) -> Response:
        user = selectors.user_get(user_id=user_id)
        payload = self.UserUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        user = services.user_update(user=user, changed_by=request.user, **payload.validated_data)
        return Response(UserOutput(user).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, user_id: int) -> Response:
        """Deactivate the account (accounts are never deleted: the audit log names them)."""
        user = selectors.user_get(user_id=user_id)
        services.user_set_active(user=user, active=False, changed_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
