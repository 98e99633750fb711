"""docs/CONSENT.md's decision table is the tested list of cases, not typed by hand."""
from __future__ import annotations

from tests.contract.render_consent_table import DOC, END, START, render


def test_the_doc_shows_the_tested_decisions():
    text = DOC.read_text()
    assert START in text and END in text
    current = text[text.index(START):text.index(END) + len(END)]
    assert current == render(), "run: python tests/contract/render_consent_table.py"
