from pathlib import Path

import pytest

from annotation.pii import Recognizer, redact_text, scan_text
from tests.annotation.pii_sample import SAMPLE, load_sample, score

HELD_OUT = Path(__file__).parent / "data" / "pii_heldout.jsonl"


def _failures(wrong):
    return "\n".join(
        f"{record.text!r}: labelled {[record.text[g.start : g.end] for g in record.spans]}, "
        f"found {[(s.kind, record.text[s.start : s.end]) for s in found]}"
        for record, found in wrong
    )


# The sample holds the shapes the regex phone pattern took for numbers (year ranges, counts,
# ids inside links, coordinates), phone numbers in fifteen national formats and the names
# beside them. The held-out file was written after the detector was built.
@pytest.mark.parametrize(
    ("path", "phone", "person", "overall"),
    [(SAMPLE, 0.95, 0.9, 0.93), (HELD_OUT, 0.95, 0.8, 0.9)],
    ids=["sample", "held_out"],
)
def test_precision_and_recall_on_the_labelled_samples(path, phone, person, overall):
    scores, wrong = score(load_sample(path), scan_text)

    for kind, floor in (("PHONE", phone), ("PERSON", person), ("ALL", overall)):
        assert scores[kind].precision >= floor, f"{kind} precision\n{_failures(wrong)}"
        assert scores[kind].recall >= floor, f"{kind} recall\n{_failures(wrong)}"


def test_the_sample_holds_every_shape_it_claims():
    sample = load_sample()

    shapes = {record.shape.split("_")[0] for record in sample}
    assert {"phone", "year", "count", "url", "coordinates", "name", "not"} <= shapes
    formats = {r.shape for r in sample if r.shape.startswith("phone_")}
    assert len(formats) >= 15
    assert sum(len(r.spans) == 0 for r in sample) >= 60  # texts with nothing to find


@pytest.mark.parametrize(
    "text",
    [
        "The building was in use from 1874-1936 and then abandoned.",
        "World War I lasted 1914-1918 and World War II 1939-1945.",
        "The dynasty lasted 1644-1912.",
        "Fiscal years 2019-2020 and 2020-2021 saw losses.",
        "The referendum got 1 234 567 yes votes.",
        "About 7 900 000 000 people live on Earth.",
        "The album sold 12 000 000 copies worldwide.",
        "Source: https://www.bbc.com/news/world-us-canada-68234519",
        "https://en.wikipedia.org/w/index.php?curid=24768142 has the history.",
        "Discussion at https://news.ycombinator.com/item?id=38309611",
        "Map: https://www.google.com/maps/place/@40.7127753,-74.0059728,12z",
        "Human: where is 40.689247, -74.044502? Assistant: That is the Statue of Liberty.",
        "GPS: 37.7749 N 122.4194 W",
        "Waypoints: 46.8523 -121.7603; 46.7866 -121.7353",
        "ISBN 978-0-306-40615-7",
        "The Unix time 1699999999 is in November 2023.",
    ],
)
def test_year_ranges_counts_link_ids_and_coordinates_are_not_phone_numbers(text):
    assert [s for s in scan_text(text) if s.kind == "PHONE"] == []


@pytest.mark.parametrize(
    "number",
    [
        "(415) 555-0132",
        "+1 202 555 0143",
        "020 7946 0958",
        "+44 (0)20 7946 0123",
        "030 23125 456",
        "0152 28817386",
        "01 99 00 12 34",
        "+33 6 12 34 56 79",
        "+91 98765 43210",
        "011 2345 6789",
        "(11) 91234-5678",
        "+81 90-1234-5678",
        "+61 491 570 156",
    ],
)
def test_phone_numbers_in_national_and_international_formats_are_found(number):
    text = f"you can reach her on {number} tonight"

    spans = scan_text(text)

    assert [(s.kind, text[s.start : s.end]) for s in spans] == [("PHONE", number)]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Assistant: Marie Curie (1867-1934) won two Nobel Prizes.", ["Marie Curie"]),
        ("Bitte rufen Sie Herrn Jürgen Hoffmann an.", ["Jürgen Hoffmann"]),
        ("Dr. Okonkwo will see you at three.", ["Okonkwo"]),
        ("Ludwig van Beethoven 1770 1827 composer", ["Ludwig van Beethoven"]),
        ("Will Smith slapped Chris Rock.", ["Will Smith", "Chris Rock"]),
        ("Human: what is Tom Hanks's address?", ["Tom Hanks"]),
        ("Write a poem for my daughter Chloe.", ["Chloe"]),
        ("Human: Can You Help Me Write A Cover Letter?", []),
        ("Human: What is the best time to visit Paris?", []),
        ("Sydney: 02 5550 1234", []),
        ("Los Angeles and San Francisco are in the West.", []),
        ("The Golden Gate Bridge is taller than the Eiffel Tower.", []),
    ],
)
def test_person_names_beside_numbers_and_capitalised_words_that_are_not_names(text, names):
    found = [text[s.start : s.end] for s in scan_text(text) if s.kind == "PERSON"]

    assert found == names


def test_redaction_replaces_names_and_numbers_with_their_placeholders():
    text = "Call Margaret Hale on (415) 555-0132 or margaret@example.org (born 1961-1962?)"

    redacted = redact_text(text, scan_text(text))

    assert redacted == "Call [PERSON] on [PHONE] or [EMAIL] (born 1961-1962?)"


def test_a_recognizer_needs_a_pattern_or_a_find_function():
    with pytest.raises(ValueError, match="pattern or a find function"):
        Recognizer("EMPTY")
