"""Pages post through Django forms; services refuse with `ValidationError`. One adapter
puts the second on the first, so a refusal shows beside the field it is about."""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

Result = TypeVar("Result")


class OptionalText(forms.CharField):
    """A text input handed to a service as it was sent: optional and unstripped, so the
    service, not the form, decides what an empty or padded value means."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)


class WhichForm(forms.Form):
    """The hidden input that says which of a page's forms was posted (`form`, or `action`
    on pages that call it so), read before that form is bound."""

    form = forms.CharField(required=False)
    action = forms.CharField(required=False)

    def chosen(self, name: str = "form") -> str:
        self.is_valid()
        return self.cleaned_data.get(name, "")


def form_errors_from(
    form: forms.Form, error: ValidationError, aliases: Mapping[str, str] | None = None
) -> None:
    """Put a service's `error` on `form`: each message under the field it names where the
    form has that field (`aliases` maps a service's name to the form's), the rest at the
    top of the form, still named so the reader knows what it is about."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for name, messages in error.message_dict.items():
        field = (aliases or {}).get(name, name)
        if field in form.fields:
            form.add_error(field, messages)
        elif name == NON_FIELD_ERRORS:
            form.add_error(None, messages)
        else:
            form.add_error(None, f"{name}: {' '.join(messages)}")


def validation_error_text(error: ValidationError) -> str:
    """A refusal met outside a form (a page's query filters, a download, a button with no
    inputs) as one line: `field: messages` for each field it names."""
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    return "; ".join(
        " ".join(messages) if name == NON_FIELD_ERRORS else f"{name}: {' '.join(messages)}"
        for name, messages in error.message_dict.items()
    )


def form_submit(
    form: forms.Form,
    write: Callable[[dict[str, Any]], Result],
    aliases: Mapping[str, str] | None = None,
) -> Result | None:
    """Validate `form` and hand its cleaned data to `write` (one service call). Returns
    what `write` returned, or None when the form or the service refused; the reasons are
    then on the form. For services that return what they made (never None)."""
    if not form.is_valid():
        return None
    try:
        return write(form.cleaned_data)
    except ValidationError as error:
        form_errors_from(form, error, aliases)
        return None


def form_errors_text(*bound: forms.Form | forms.BaseFormSet, by_label: bool = False) -> str | None:
    """The errors of bound forms as one line for the top of a page: `field: messages`
    for each field (its label with `by_label`, for forms whose fields show labels), the
    form's own messages as they are; a formset's rows named by its prefix and number.
    None when there are none."""

    def name(form: forms.Form, field: str) -> str:
        return str(form[field].label) if by_label and field in form.fields else field

    def of(form: forms.Form, where: str = "") -> list[str]:
        parts: list[str] = []
        for field, messages in form.errors.items():
            if field == NON_FIELD_ERRORS:
                parts.extend(f"{where}{m}" for m in messages)
            else:
                parts.append(f"{where}{name(form, field)}: {' '.join(str(m) for m in messages)}")
        return parts

    parts: list[str] = []
    for form in bound:
        if isinstance(form, forms.BaseFormSet):
            for n, row in enumerate(form.forms, start=1):
                parts.extend(of(row, f"{form.prefix} {n}, "))
            parts.extend(str(m) for m in form.non_form_errors())
        else:
            parts.extend(of(form))
    return "; ".join(parts) or None
