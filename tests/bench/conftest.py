"""Benchmarks: run by `make bench`, never by `make test`. Each figure is printed as
`name: value unit` at the end of the run (and as it is measured)."""

import pytest

FIGURES: list[tuple[str, float, str]] = []


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/bench/" in str(item.fspath):
            item.add_marker(pytest.mark.bench)


@pytest.fixture
def report():
    def record(name: str, value: float, unit: str) -> None:
        FIGURES.append((name, value, unit))

    return record


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("benchmark figures")
    for name, value, unit in FIGURES:
        shown = f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        terminalreporter.write_line(f"{name}: {shown} {unit}")
