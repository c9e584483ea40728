import pytest
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from core.forms import form_errors_from, form_errors_text, form_submit


class NameForm(forms.Form):
    name = forms.CharField()
    seed = forms.IntegerField(required=False)


def _bound(**data):
    form = NameForm({"name": "x", **data})
    assert form.is_valid()
    return form


def test_a_service_error_lands_on_the_field_it_names():
    form = _bound()

    form_errors_from(form, ValidationError({"name": "is taken"}))

    assert form.errors == {"name": ["is taken"]}


def test_a_service_error_for_a_field_the_form_lacks_shows_at_the_top_named():
    form = _bound()

    form_errors_from(form, ValidationError({"split_ratios": ["must sum to 1", "no negatives"]}))

    assert form.non_field_errors() == ["split_ratios: must sum to 1 no negatives"]


def test_an_alias_maps_the_services_name_to_the_forms_field():
    form = _bound()

    form_errors_from(form, ValidationError({"random_seed": "too big"}), {"random_seed": "seed"})

    assert form.errors == {"seed": ["too big"]}


@pytest.mark.parametrize(
    "error",
    [
        ValidationError("Nothing to roll back."),
        ValidationError({NON_FIELD_ERRORS: "Nothing to roll back."}),
    ],
)
def test_an_error_about_no_field_shows_at_the_top_as_it_is(error):
    form = _bound()

    form_errors_from(form, error)

    assert form.non_field_errors() == ["Nothing to roll back."]


def test_submit_hands_the_cleaned_data_to_the_service_and_returns_what_it_made():
    made = form_submit(NameForm({"name": "kept", "seed": "3"}), lambda data: dict(data))

    assert made == {"name": "kept", "seed": 3}


def test_submit_keeps_the_services_refusal_on_the_form():
    form = NameForm({"name": "kept"})

    def refuse(data):
        raise ValidationError({"name": "is taken"})

    assert form_submit(form, refuse) is None
    assert form.errors == {"name": ["is taken"]}


def test_submit_calls_no_service_for_an_invalid_form():
    calls = []
    form = NameForm({"name": "", "seed": "many"})

    assert form_submit(form, calls.append) is None
    assert calls == []
    assert set(form.errors) == {"name", "seed"}


def test_errors_text_names_each_field_and_keeps_the_forms_own_messages():
    form = NameForm({"name": "", "seed": "many"})
    form.is_valid()
    form.add_error(None, "value: is not one of the schema's labels")

    text = form_errors_text(form)

    assert text == (
        "name: This field is required.; seed: Enter a whole number.; "
        "value: is not one of the schema's labels"
    )
    assert form_errors_text(form, by_label=True).startswith("Name: This field is required.")
    assert form_errors_text(_bound()) is None
