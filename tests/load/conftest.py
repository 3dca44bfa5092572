"""The load tests' figures in the terminal summary, where a CI log shows them without `-s`.

A load test records what it measured with `record_property(FIGURES, "one line")` (which also
lands in a JUnit XML report); this hook prints those lines in a section of their own at the end
of the run, for passed and failed tests alike.
"""

from __future__ import annotations

import pytest

#: The `record_property` name whose value is printed in the terminal summary.
FIGURES = "load_figures"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        f"{report.nodeid}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == FIGURES
    ]
    if lines:
        terminalreporter.write_sep("-", "load figures")
        for line in lines:
            terminalreporter.write_line(line)
