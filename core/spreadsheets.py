"""Every CSV the portal writes goes through `csv_writer`, so a cell a spreadsheet would run
as a formula (CSV injection, OWASP) is written as text wherever it comes from: a label, a
reason, a username, an external id."""

import csv
import json
from collections.abc import Iterable
from typing import Any

# Excel, LibreOffice and Google Sheets start a formula at these (the full-width forms too,
# which some of them fold to ASCII); tab, CR and LF are read as cell separators first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def spreadsheet_cell(value: Any) -> Any:
    """A cell as text a spreadsheet shows as written: a leading apostrophe before a formula
    start. Numbers stay numbers; None is empty; lists and dicts are JSON."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else _text(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _text(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class SpreadsheetSafeWriter:
    """csv.writer with every cell passed through `spreadsheet_cell`."""

    def __init__(self, out, **kwargs: Any) -> None:
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([spreadsheet_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(out, **kwargs: Any) -> SpreadsheetSafeWriter:
    """The one way to write CSV here; takes csv.writer's arguments."""
    return SpreadsheetSafeWriter(out, **kwargs)
