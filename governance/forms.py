"""The compliance screens' forms. They read the values as sent; the approval services
check them (a comment a sign-off needs, a stage that may follow), so the refusals are theirs."""

from typing import Any

from django import forms
from django.conf import settings

from core.forms import OptionalText


class SignOffForm(forms.Form):
    role = OptionalText()
    decision = OptionalText()
    comment = OptionalText()


class PromoteForm(forms.Form):
    stage = OptionalText()
    reason = OptionalText()


class RollbackForm(forms.Form):
    reason = OptionalText()


class UseDeclarationForm(forms.Form):
    intended_use = OptionalText()
    limitations = OptionalText()
    out_of_scope = OptionalText()
    license = OptionalText()
    commercial_use = forms.BooleanField(required=False)


class DossierVerifyForm(forms.Form):
    # An empty file is no zip: verification says so, as for any other broken file.
    dossier = forms.FileField(required=False, allow_empty_file=True)

    def clean_dossier(self) -> Any:
        upload = self.cleaned_data["dossier"]
        if upload is None:
            raise forms.ValidationError("choose the .zip file to verify.")
        limit = settings.PORTAL_MAX_VERIFY_BYTES
        if upload.size > limit:
            raise forms.ValidationError(f"{upload.name} is larger than {limit} bytes.")
        return upload
