"""Offline PII recognizers: regular expressions, each confirmed by a checksum or a parse
where one exists (Luhn for cards, ISO 7064 mod 97 for IBANs, `ipaddress` for IPs), so
that order numbers and version strings are not flagged; phone numbers through
libphonenumber and person names through name lists (see pii_names). Pure functions; no Django.

Precision and recall on a labelled sample: tests/annotation/data/pii_sample.jsonl, figures
from `make bench` (tests/bench/test_pii_bench.py).
"""

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers

from annotation.pii_names import find_person_names


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Recognizer:
    """A regular expression (with an optional check of each match), or a `find` function
    giving (start, end) spans, for recognizers a library does the matching for."""

    kind: str
    pattern: re.Pattern | None = None
    valid: Callable[[str], bool] | None = None
    find: Callable[[str], Iterable[tuple[int, int]]] | None = None

    def __post_init__(self) -> None:
        if (self.pattern is None) == (self.find is None):
            raise ValueError(f"recognizer {self.kind}: give a pattern or a find function")

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        if self.find is not None:
            yield from self.find(text)
        elif self.pattern is not None:
            for match in self.pattern.finditer(text):
                if match.start() == match.end():
                    continue
                if self.valid is not None and not self.valid(match.group()):
                    continue
                yield match.span()


def luhn_valid(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _ipv6_valid(text: str) -> bool:
    if text.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# Presidio's PhoneRecognizer tries these regions (and CA, which shares the US dialling plan):
# a number in national format ("030 23125 456") is only a number in the region whose plan
# it fits; one with a country code ("+81 3-1234-5678") is found from any region.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "BR")
# Digits inside a link are ids (articles, posts, map positions), not numbers to call.
_LINK = re.compile(r"(?<!\w)(?:[a-z][a-z0-9+.-]*://|www\.)\S+", re.IGNORECASE)
_PHONE_MIN_DIGITS = 7
_GROUPED = phonenumbers.Leniency.STRICT_GROUPING


def find_phone_numbers(text: str) -> Iterator[tuple[int, int]]:
    """Spans libphonenumber reads as a valid number of one of PHONE_REGIONS (valid length
    and prefix for the region, not just a run of digits) written in that region's digit
    groups. The grouping rule (its STRICT_GROUPING leniency; Presidio uses the looser VALID)
    is what turns away "1644-1912" and "37.7749" (German numbers if the grouping is
    ignored) and "7 900 000 000" (an Indian one)."""
    if sum(c.isdigit() for c in text) < _PHONE_MIN_DIGITS:
        return  # most texts: nothing for the matcher to do
    links = [m.span() for m in _LINK.finditer(text)]
    taken: list[tuple[int, int]] = []
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, _GROUPED):
            start, end = match.start, match.end
            if any(s < end and start < e for s, e in (*links, *taken)):
                continue
            taken.append((start, end))
            yield start, end


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Earlier recognizers win where spans overlap: a card number is not also a phone number.
BUILTIN: tuple[Recognizer, ...] = (
    Recognizer(
        "EMAIL",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        ),
    ),
    Recognizer("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), iban_valid),
    Recognizer("CREDIT_CARD", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), luhn_valid),
    Recognizer("IP_ADDRESS", re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d.])")),
    Recognizer(
        "IP_ADDRESS",
        re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])"),
        _ipv6_valid,
    ),
    # US social security number and UK national insurance number.
    Recognizer("NATIONAL_ID", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    Recognizer(
        "NATIONAL_ID",
        re.compile(
            r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
    ),
    Recognizer("PHONE", find=find_phone_numbers),
    Recognizer("PERSON", find=find_person_names),
)
PLACEHOLDER_KINDS = sorted({r.kind for r in BUILTIN})
RULE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")


def custom_recognizers(rules: Sequence[tuple[str, str]]) -> list[Recognizer]:
    """Project rules (name, regex) as recognizers; raises re.error for a bad pattern."""
    return [Recognizer(name, re.compile(pattern)) for name, pattern in rules]


def scan_text(text: str, recognizers: Sequence[Recognizer] = BUILTIN) -> list[Span]:
    """Non-overlapping PII spans in `text`, in order; earlier recognizers take precedence."""
    taken: list[Span] = []
    for recognizer in recognizers:
        for start, end in recognizer.spans(text):
            if any(s.start < end and start < s.end for s in taken):
                continue
            taken.append(Span(recognizer.kind, start, end))
    return sorted(taken, key=lambda s: s.start)


def redact_text(text: str, spans: Sequence[Span]) -> str:
    """Each span replaced by its typed placeholder, e.g. "[EMAIL]"."""
    out, last = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[last : span.start])
        out.append(f"[{span.kind}]")
        last = span.end
    out.append(text[last:])
    return "".join(out)


def text_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) for every string inside a JSON value, e.g. ("responses[1]", "...")."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key in sorted(value):
            yield from text_leaves(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, element in enumerate(value):
            yield from text_leaves(element, f"{path}[{index}]")


def scan_payload(
    payload: Any, recognizers: Sequence[Recognizer] = BUILTIN
) -> dict[str, list[Span]]:
    """{path: spans} for the string leaves of a payload that hold PII."""
    found = {}
    for path, text in text_leaves(payload):
        spans = scan_text(text, recognizers)
        if spans:
            found[path] = spans
    return found


def redact_payload(payload: Any, recognizers: Sequence[Recognizer] = BUILTIN) -> Any:
    """A copy of `payload` with every PII span replaced by its placeholder."""
    if isinstance(payload, str):
        return redact_text(payload, scan_text(payload, recognizers))
    if isinstance(payload, Mapping):
        return {k: redact_payload(v, recognizers) for k, v in payload.items()}
    if isinstance(payload, list):
        return [redact_payload(v, recognizers) for v in payload]
    return payload
