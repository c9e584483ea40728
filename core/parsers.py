"""The API's JSON parser: DRF's, with the limits imports apply.

DRF's parser accepts 1e400 (infinity, which the database then refuses: a 500) and lets
RecursionError from deep nesting escape (a 500). Here both, NaN/Infinity and integers of
more digits than int() converts, are a 400 naming the field, in the shape of every other
validation error (core.api_errors).
"""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from core import strict_json


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as error:
            raise ParseError(f"JSON parse error - {error}") from None
        try:
            return strict_json.decode(text)
        except json.JSONDecodeError as error:
            raise ParseError(f"JSON parse error - {error}") from None
        except strict_json.JSONLimitError as error:
            raise ValidationError({error.path or "detail": [error.reason]}) from None
