from django import forms
from django.contrib.auth.forms import PasswordChangeForm

from core.models import Role


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="Shown to every member.")
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="What the project is for; Markdown is not rendered.",
    )


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="An existing account's username.")
    roles = forms.MultipleChoiceField(
        choices=Role.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="A person may hold several roles in one project.",
    )


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(widget=forms.PasswordInput, help_text="At least 8 characters.")
    is_staff = forms.BooleanField(
        required=False,
        label="Portal administrator",
        help_text="May create projects, create accounts and open sign-up.",
    )


class SignupForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput)


class SignupToggleForm(forms.Form):
    # The button sends the state it switches to: "1" opens sign-up, anything else closes it.
    open = forms.CharField(required=False)


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What or who will use it.")
    expires_in_days = forms.IntegerField(
        min_value=1,
        required=False,
        label="Expires after (days)",
        help_text="Default 90.",
    )


class PortalPasswordChangeForm(PasswordChangeForm):
    """Django's form for validation only; the write goes through user_password_change."""

    def save(self, commit: bool = True):  # pragma: no cover - never called
        raise NotImplementedError("Use core.services.user_password_change.")
