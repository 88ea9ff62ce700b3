"""Citations of the project's own documents resolve, and none points at a document outside the repository.

Code, tests, tools, the Makefile and the docs cite docs/MODEL.md (model facts), docs/ARCHITECTURE.md (design) and
docs/VERIFY.md (verify's checks and bounds) by section number: the file name, a section sign, then a number such
as 4 or 4.9, a range (5.2 to 5.3, written with an en dash) or a list (3.1 then another section sign and 3.3,
comma-separated). Every number must be the
leading number of a heading of that document. Inside these documents a bare section sign cites the document
itself. The architecture spec and design notes the code was first written against live outside the repository;
citing them by section is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "\u00a7"
OWN_DOCS = ("docs/MODEL.md", "docs/ARCHITECTURE.md", "docs/VERIFY.md", "docs/LORA.md", "docs/TINY_MODEL.md")
# The old citations: the model spec (research/ideogram4.md) and the design notes (DESIGN.md), both outside the repo.
EXTERNAL = re.compile(rf"\b(?:spec|DESIGN\.md)\s*{SECTION}", re.IGNORECASE)
# Files the external-citation check skips, each with why (none today).
EXTERNAL_EXEMPT: dict[str, str] = {}

_NUMBER = r"\d+(?:\.\d+)*"
_GAP = r"[\s#]*"  # spaces, line breaks and the comment leaders of a wrapped comment
_CITATION = re.compile(
    rf"(?:(?P<file>[\w./-]*\.md)[`)]*\s+)?{SECTION}\s?(?P<first>{_NUMBER})"
    rf"(?P<rest>(?:{_GAP}[\u2013\u2014-]{_GAP}{SECTION}?\s?{_NUMBER}"
    rf"|{_GAP}(?:,|and|or){_GAP}{SECTION}\s?{_NUMBER})*)"
)
_HEADING = re.compile(rf"^#{{1,6}}\s+(?P<number>{_NUMBER})\.?(?=\s|$)")


def scanned_files() -> list[Path]:
    """The files whose citations are checked: package, tests, tools, Makefile, README and docs."""
    files = [
        *ROOT.glob("ideogram_trt/**/*.py"),
        *ROOT.glob("tests/**/*.py"),
        *(p for p in ROOT.glob("tools/**/*") if p.is_file()),
        ROOT / "Makefile",
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
    ]
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # a binary file under tools/ cites nothing
        return None


def heading_numbers(text: str) -> dict[str, int]:
    """Leading number of every Markdown heading outside fenced code → its line."""
    numbers: dict[str, int] = {}
    fenced = False
    for line_number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            numbers.setdefault(match["number"], line_number)
    return numbers


def cited_document(source: str, file: str | None) -> str | None:
    """Which of our documents a citation names: by file name, or itself for a bare one inside a document."""
    if file is None:
        return source if source in OWN_DOCS else None
    for doc in OWN_DOCS:
        if file in (doc, Path(doc).name, f"./{doc}"):
            return doc
    return None  # another document (BENCHMARKS.md, research notes): not checked here


def citations(source: str, text: str) -> list[tuple[int, str, str, list[str]]]:
    """(line, cited document, citation text, section numbers) for every citation of our documents in ``text``."""
    found = []
    for match in _CITATION.finditer(text):
        doc = cited_document(source, match["file"])
        if doc is None:
            continue
        numbers = [match["first"], *re.findall(_NUMBER, match["rest"])]
        line = text.count("\n", 0, match.start("first")) + 1
        found.append((line, doc, " ".join(match[0].split()), numbers))
    return found


def citation_problems(source: str, text: str, headings: dict[str, dict[str, int]]) -> list[str]:
    """One line per cited section that is not a heading: ``FILE:LINE: CITATION: no heading N in DOC``."""
    problems = []
    for line, doc, cited, numbers in citations(source, text):
        for number in numbers:
            if number not in headings[doc]:
                problems.append(f"{source}:{line}: {cited!r}: {doc} has no heading numbered {number}")
    return problems


@pytest.fixture(scope="module")
def doc_headings() -> dict[str, dict[str, int]]:
    return {doc: heading_numbers((ROOT / doc).read_text(encoding="utf-8")) for doc in OWN_DOCS}


@pytest.mark.parametrize("doc", OWN_DOCS)
def test_documents_number_each_section_once(doc: str) -> None:
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    seen: dict[str, int] = {}
    duplicates = []
    for line_number, line in enumerate(lines, 1):
        match = _HEADING.match(line)
        if match and match["number"] in seen:
            first = seen[match["number"]]
            duplicates.append(f"{doc}:{line_number}: section {match['number']} again (first at line {first})")
        elif match:
            seen[match["number"]] = line_number
    assert seen, f"{doc} has no numbered headings"
    assert not duplicates, "\n".join(duplicates)


def test_every_citation_of_our_documents_resolves(doc_headings: dict[str, dict[str, int]]) -> None:
    problems: list[str] = []
    total = 0
    for path in scanned_files():
        text = read_text(path)
        if text is None:
            continue
        source = path.relative_to(ROOT).as_posix()
        total += len(citations(source, text))
        problems += citation_problems(source, text, doc_headings)
    assert total > 0, "no citations found: the scan is broken"
    assert not problems, "citations of sections that do not exist:\n" + "\n".join(problems)


def test_no_citations_of_documents_outside_the_repository() -> None:
    found = []
    for path in scanned_files():
        source = path.relative_to(ROOT).as_posix()
        text = read_text(path)
        if text is None or source in EXTERNAL_EXEMPT:
            continue
        for match in EXTERNAL.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{source}:{line}: {text.splitlines()[line - 1].strip()}")
    assert not found, (
        "these cite the model spec or DESIGN.md, which are not in this repository; cite docs/MODEL.md or "
        "docs/ARCHITECTURE.md instead:\n" + "\n".join(found)
    )


def test_the_check_names_file_line_and_missing_section() -> None:
    """The checker itself: lists, ranges, wrapped comments and bare citations inside a document."""
    s = SECTION
    headings = {"docs/MODEL.md": {"3": 1, "3.1": 2, "5.2": 3, "5.3": 4}, "docs/ARCHITECTURE.md": {"4": 1}}
    text = (
        f"# docs/MODEL.md {s}3.1, {s}3.3 and docs/ARCHITECTURE.md {s}4\n"
        f'"""docs/MODEL.md {s}5.2\u20135.3, docs/MODEL.md {s}5.2\u20135.4"""\n'
        f"# see docs/MODEL.md {s}3.1,\n# {s}9.9; research/notes.md {s}7 is not ours\n"
    )
    assert citation_problems("pkg/mod.py", text, headings) == [
        f"pkg/mod.py:1: 'docs/MODEL.md {s}3.1, {s}3.3': docs/MODEL.md has no heading numbered 3.3",
        f"pkg/mod.py:2: 'docs/MODEL.md {s}5.2\u20135.4': docs/MODEL.md has no heading numbered 5.4",
        f"pkg/mod.py:3: 'docs/MODEL.md {s}3.1, # {s}9.9': docs/MODEL.md has no heading numbered 9.9",
    ]
    # Bare citations inside a document cite that document; in code they cite nothing.
    assert citation_problems("docs/ARCHITECTURE.md", f"see ({s}4) and ({s}12)", headings) == [
        f"docs/ARCHITECTURE.md:1: '{s}12': docs/ARCHITECTURE.md has no heading numbered 12"
    ]
    assert citation_problems("pkg/mod.py", f"difference ({s}12)", headings) == []
    assert heading_numbers("# Title\n## 4. Four\n```\n# 5 not a heading\n```\n### 4.9 Sub\n") == {"4": 2, "4.9": 6}
    assert EXTERNAL.search(f"(Spec {s}8.4)") and EXTERNAL.search(f"DESIGN.md {s}5")
    assert not EXTERNAL.search(f"docs/MODEL.md {s}8.4")
