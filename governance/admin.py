from django.contrib import admin

from core.admin import ReadOnlyAdmin
from core.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "actor_username", "action", "target_type", "target_id"]
    list_filter = ["action"]
    search_fields = ["actor_username", "action", "target_id"]
    # Event data may quote content; the audit screens show it to the project's members.
    content_fields = ("data",)
