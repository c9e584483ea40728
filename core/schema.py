"""The OpenAPI schema as a generated client needs it: drf-spectacular's, plus
- the errors each operation may answer. Without them a client generated from the schema has
  no type for an error and drops its body, so a caller cannot read which field a 400 names;
- the model fields of an answer marked required, as every answer holds them.
  drf-spectacular marks only required and read-only fields, so a model field with a default
  (a job's `status`) came out in the client as "maybe absent", for every caller to test."""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance
from rest_framework import serializers

# The shapes `core.api_errors.portal_exception_handler` gives every error.
FIELD_ERRORS = {
    "type": "object",
    "description": (
        "What was wrong with the request: each field's messages under its name (nested "
        'fields by path, `hyperparameters.lr`), messages that name no field under "detail".'
    ),
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
ERROR_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}

_WRITES = ("POST", "PUT", "PATCH", "DELETE")


class PortalAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        errors: dict[str, tuple[str, str, dict[str, Any]]] = {}
        # A service's ValidationError on any write, and a query parameter the view does not
        # read or cannot parse, are 400s.
        if self.method in _WRITES or any(p["in"] == "query" for p in parameters):
            errors["400"] = ("FieldErrors", "The request is invalid.", FIELD_ERRORS)
        if operation.get("security"):
            errors["401"] = ("ErrorDetail", "No valid API key or session.", ERROR_DETAIL)
            errors["403"] = ("ErrorDetail", "The caller's role does not allow it.", ERROR_DETAIL)
        # A project the caller is no member of answers as one that does not exist.
        if any(p["in"] == "path" for p in parameters):
            errors["404"] = ("ErrorDetail", "No such object here.", ERROR_DETAIL)
        responses = operation["responses"]
        for code, (name, description, schema) in errors.items():
            if code not in responses:
                responses[code] = {
                    "description": description,
                    "content": {"application/json": {"schema": self._error_ref(name, schema)}},
                }
        return operation

    def _error_ref(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        self.registry.register_on_missing(component)
        return component.ref

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction != "response":
            return schema
        serializer = force_instance(serializer)
        required = set(schema.get("required", []))
        required.update(
            name
            for name, field in serializer.fields.items()
            if name in schema["properties"] and _always_answered(serializer, name, field)
        )
        if required:
            schema["required"] = sorted(required)
        return schema


def _always_answered(serializer: Any, name: str, field: serializers.Field) -> bool:
    """Whether every answer holds the field. DRF leaves out only an optional field whose
    object lacks the attribute, and a model instance lacks none of the fields a
    ModelSerializer builds from the model. (Fields declared on a plain serializer stay as
    drf-spectacular has them: some views answer a dict that the serializer only documents.)
    """
    if field.required:
        return True
    built_from_model = name not in getattr(serializer, "_declared_fields", {})
    return isinstance(serializer, serializers.ModelSerializer) and built_from_model
