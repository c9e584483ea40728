"""JSON decoding that refuses what Python accepts but nothing downstream can hold.

Python's json module turns `1e400` into infinity (PostgreSQL and our encryption refuse it
later, far from the file), raises a bare ValueError for an integer of more digits than
int() converts (sys.get_int_max_str_digits), and RecursionError for deep nesting. Here
each of those is a JSONLimitError naming the field it is in, found by a second, slow
pass over the text that runs only when the fast decode failed.

Pure: the standard library only, so import worker processes use it without Django.
"""

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

# Deeper than any payload we take (a Label Studio task's annotation result is about 7
# levels), and far from Python's recursion limit wherever the decoder is called from.
MAX_DEPTH = 100
_INFINITY = float("inf")


class JSONLimitError(ValueError):
    """`reason` why a JSON text was refused; `path` the field (`messages[2].content`), or
    None for the document itself."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason, self.path = reason, path
        super().__init__(f"{path}: {reason}" if path else reason)


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Refused(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value == _INFINITY or value == -_INFINITY:
        raise _Refused(text)
    return value


_decode = json.JSONDecoder(parse_float=_finite_float, parse_constant=_refuse_constant).decode


def decode(text: str) -> Any:
    """The value of JSON `text`. Raises json.JSONDecodeError for malformed text and
    JSONLimitError for NaN/Infinity, numbers out of range and nesting past MAX_DEPTH."""
    try:
        value = _decode(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as error:
        raise locate(text) or JSONLimitError(f"cannot be decoded ({error})") from None
    # Only text with that many brackets can be nested that deep; counting is cheap.
    if text.count("[") + text.count("{") > MAX_DEPTH:
        problem = locate(text)
        if problem is not None:
            raise problem
    return value


def decode_number(text: str, path: str | None) -> int | float:
    """A JSON number token as json.loads would give it, refused as `decode` refuses."""
    problem = _number_problem(text)
    if problem is not None:
        raise JSONLimitError(problem, path)
    return int(text) if _INTEGER.fullmatch(text) else float(text)


_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([{}\[\],:])|([^\s{}\[\],:"]+))', re.DOTALL)
_INTEGER = re.compile(r"-?\d+")
_CONSTANTS = ("NaN", "Infinity", "-Infinity")


def _number_problem(word: str) -> str | None:
    if word in _CONSTANTS:
        return f"{word} is not a JSON value; use null or a string"
    if _INTEGER.fullmatch(word):
        limit = sys.get_int_max_str_digits()
        digits = len(word.lstrip("-"))
        if limit and digits > limit:
            return f"an integer of {digits} digits; at most {limit} digits are accepted"
        return None
    try:
        value = float(word)
    except ValueError:
        return None  # not a number: the decoder's own error says what is wrong
    if value == _INFINITY or value == -_INFINITY:
        shown = word if len(word) <= 24 else word[:20] + "…"
        return f"the number {shown} is out of range (it would be infinite)"
    return None


def path_text(parts: list[str | int]) -> str | None:
    """`["messages", 2, "content"]` as `messages[2].content`; very deep paths shortened."""
    if not parts:
        return None
    shown = parts if len(parts) <= 8 else parts[:8]
    text = ""
    for part in shown:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text + ("…" if len(parts) > 8 else "")


def _tokens(text: str) -> Iterator[tuple[str | None, str | None, str | None]]:
    position = 0
    while (match := _TOKEN.match(text, position)) is not None and match.end() > position:
        position = match.end()
        yield match.group(1), match.group(2), match.group(3)


def locate(text: str) -> JSONLimitError | None:
    """The first thing `decode` refuses in `text` with the path to it, or None."""
    # One frame per open container: [key or index, expecting a key (objects only)].
    frames: list[list] = []
    for string, punctuation, word in _tokens(text):
        if punctuation in ("{", "["):
            if len(frames) >= MAX_DEPTH:
                where = path_text([f[0] for f in frames if f[0] is not None])
                return JSONLimitError(f"nested more than {MAX_DEPTH} levels deep", where)
            frames.append([None, True] if punctuation == "{" else [0, False])
        elif punctuation in ("}", "]"):
            if frames:
                frames.pop()
        elif punctuation == ",":
            if frames and isinstance(frames[-1][0], int):
                frames[-1][0] += 1
            elif frames:
                frames[-1][1] = True
        elif string is not None and frames and frames[-1][1]:
            try:
                frames[-1][0] = json.loads(string)
            except ValueError:
                frames[-1][0] = string[1:-1]
            frames[-1][1] = False
        elif word is not None:
            problem = _number_problem(word)
            if problem is not None:
                return JSONLimitError(
                    problem, path_text([f[0] for f in frames if f[0] is not None])
                )
    return None
