from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors, services
from core.access import ProjectApiView
from core.authentication import AuthenticatedRequest as Request
from core.models import ApiKey, Membership, Project, Role, RoleSet


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
    class ProjectCreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request: Request) -> Response:
        projects = selectors.project_list_for_user(user=request.user)
        roles = {p.project.pk: p.roles for p in projects}
        data = ProjectOutput(
            [p.project for p in projects], many=True, context={"roles": roles}
        ).data
        return Response(data)

    @extend_schema(request=ProjectCreateInput, responses={201: ProjectOutput})
    def post(self, request: Request) -> Response:
        payload = self.ProjectCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        project = services.project_create(created_by=request.user, **payload.validated_data)
        return Response(
            ProjectOutput(project, context={"roles": {project.pk: [Role.ADMIN]}}).data,
            status=status.HTTP_201_CREATED,
        )


class ProjectDetailApi(ProjectApiView):
    roles = {"GET": RoleSet.MEMBERS, "PATCH": RoleSet.ADMINS}

    class ProjectUpdateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)
        archived = serializers.BooleanField(required=False)

    @extend_schema(responses=ProjectOutput)
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        context = {"roles": {access.project.pk: sorted(access.roles)}}
        return Response(ProjectOutput(access.project, context=context).data)

    @extend_schema(request=ProjectUpdateInput, responses=ProjectOutput)
    def patch(self, request: Request, project_id: int) -> Response:
        access = self.access
        payload = self.ProjectUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        project = services.project_update(
            project=access.project, updated_by=request.user, **payload.validated_data
        )
        context = {"roles": {project.pk: sorted(access.roles)}}
        return Response(ProjectOutput(project, context=context).data)


class MembershipListCreateApi(ProjectApiView):
    roles = {"GET": RoleSet.OVERSIGHT, "POST": RoleSet.ADMINS}

    class MembershipCreateInput(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)

    @extend_schema(responses=MembershipOutput(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = self.access
        members = selectors.membership_list_for_project(project=access.project)
        return Response(MembershipOutput(members, many=True).data)

    @extend_schema(request=MembershipCreateInput, responses={201: MembershipOutput})
    def post(self, request: Request, project_id: int) -> Response:
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
    roles = RoleSet.ADMINS

    @extend_schema(responses={204: None})
    def delete(self, request: Request, project_id: int, membership_id: int) -> Response:
        access = self.access
        membership = get_object_or_404(Membership, pk=membership_id, project=access.project)
        services.membership_remove(membership=membership, removed_by=request.user)
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

    class ApiKeyCreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=services.API_KEY_NAME_MAX)
        expires_in_days = serializers.IntegerField(min_value=1, required=False)

    @extend_schema(responses=ApiKeyOutput(many=True))
    def get(self, request: Request) -> Response:
        keys = selectors.api_key_list_for_user(user=request.user)
        return Response(ApiKeyOutput(keys, many=True).data)

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
    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: int) -> Response:
        key = selectors.api_key_get_for_user(user=request.user, key_id=key_id)
        services.api_key_revoke(key=key, revoked_by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
