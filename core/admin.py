"""The Django admin shows portal data read-only: writes go through the portal's own
screens (People, Members, the account page), whose services record every change in the
audit log. It shows no content either: staff are not members of every project, so
encrypted fields (and free text that may carry personal data) are left out of every page.
There is no page for API keys or groups: keys are made and revoked by their owners, and
roles are per-project memberships, not groups."""

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group

from core.fields import EncryptedJSONField
from core.models import Membership, Project, SiteSettings, User

admin.site.unregister(Group)


class ReadOnlyAdmin(admin.ModelAdmin):
    # Plain fields whose text may carry content (answers, reasons); encrypted fields are
    # always left out.
    content_fields: tuple[str, ...] = ()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_exclude(self, request, obj=None):
        encrypted = [f.name for f in self.model._meta.fields if isinstance(f, EncryptedJSONField)]
        return [*(super().get_exclude(request, obj) or ()), *self.content_fields, *encrypted]


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["username", "email", "is_active", "is_staff", "last_login", "date_joined"]
    search_fields = ["username", "email"]
    list_filter = ["is_active", "is_staff"]
    exclude = ["password"]


@admin.register(Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "archived", "created_by", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "project", "role", "added_by", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]


@admin.register(SiteSettings)
class SiteSettingsAdmin(ReadOnlyAdmin):
    list_display = ["signup_open", "updated_at"]


# django-axes registers its lockout pages with delete rights (an unaudited unlock); they
# stay, read-only. Unlock with `manage.py axes_reset_username`.
for _model in (AccessAttempt, AccessLog, AccessFailureLog):
    if admin.site.is_registered(_model):
        _axes_admin = type(admin.site._registry[_model])
        admin.site.unregister(_model)
        admin.site.register(
            _model, type(f"ReadOnly{_axes_admin.__name__}", (ReadOnlyAdmin, _axes_admin), {})
        )
