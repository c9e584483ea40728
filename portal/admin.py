"""The Django admin shows portal data read-only: writes go through the portal's own
screens (People, Members), whose services record every change in the audit log."""

from django.contrib import admin

from portal.models import Membership, Project, SiteSettings, User


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
