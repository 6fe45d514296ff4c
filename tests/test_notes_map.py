"""docs/notes.md maps the study notes: every citation of them in the repository ("notes §4.8",
"the notes' §7.3", a claim's ``notes: §4.8, §9.2``) names a section that has a heading there,
and nothing points at the notes' own file, which is not part of the repository."""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTES_MAP = ROOT / "docs" / "notes.md"
THIS_FILE = Path(__file__).resolve()
# Where the notes are cited, and where nothing may point outside the repository.
CITING = ("src", "README.md", "docs", "conf", "claims", "sweeps", "tests", "benchmarks")
SELF_CONTAINED = CITING
OUTSIDE = ("../" + "shared", "DESIGN" + ".md")  # split so this file does not match itself
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

SECTION = r"\d+(?:\.\d+)*"
# One reference: §4.8, or a range §7.3-7.4 / §7-8 (the end may repeat the §).
REFERENCE = rf"§(?P<start>{SECTION})(?:\s*[-–]\s*§?(?P<end>{SECTION}))?"
_ANY_REFERENCE = REFERENCE.replace("?P<start>", "?:").replace("?P<end>", "?:")
# "notes §2.5, §3", "Notes §6.4", "the notes' §7.3", "notes: §4.8, §9.2", "notes §2.1 and §7"; a
# list may run on to the next line, also of a comment ("notes §4.8,\n# §9.2").
CITATION = re.compile(
    rf"\bnotes(?:'|:)?\s+{_ANY_REFERENCE}(?:\s*(?:,\s*and|,|and)\s*(?:#\s*)?{_ANY_REFERENCE})*",
    re.IGNORECASE,
)
ONE_REFERENCE = re.compile(REFERENCE)
# A § that cites a paper rather than the notes: an author, a year or "the paper" just before it
# ("Vaswani et al. 2017, §3.2.2", "Ioffe 2017 (Batch Renormalization), §4.3"), or "of the
# paper" just after ("§3.4 of the paper").
PAPER_BEFORE = re.compile(r"(et al\.|\b(?:19|20)\d\d\b|\bpaper\b)[^§]*$", re.DOTALL)
PAPER_AFTER = re.compile(rf"^§{SECTION} of the paper")
HEADING = re.compile(r"^(?P<level>#{1,6})\s+§(?P<number>\S+)\s+(?P<title>.*)$")
ANCHOR = re.compile(r"\s*\{#(?P<anchor>[^}\s]+)\}\s*$")


@dataclass(frozen=True)
class Place:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@functools.cache
def text_files() -> tuple[tuple[str, str], ...]:
    """(path relative to the root, text) of every text file under CITING but this one."""
    files = []
    for name in CITING:
        top = ROOT / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            if SKIPPED_DIRS & set(path.relative_to(ROOT).parts) or path.resolve() == THIS_FILE:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # images and other binary files
            files.append((path.relative_to(ROOT).as_posix(), text))
    return tuple(files)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def expand(start: str, end: str | None) -> list[str]:
    """The sections a reference names: §7.3-7.6 is 7.3, 7.4, 7.5 and 7.6."""
    if end is None:
        return [start]
    first, last = start.split("."), end.split(".")
    if len(first) == len(last) and first[:-1] == last[:-1] and int(first[-1]) <= int(last[-1]):
        prefix = ".".join(first[:-1] + [""]) if len(first) > 1 else ""
        return [f"{prefix}{i}" for i in range(int(first[-1]), int(last[-1]) + 1)]
    return [start, end]


def citations(path: str, text: str) -> tuple[list[tuple[Place, str]], set[int]]:
    """Every (place, section) the file cites, and the offsets of the §s that belong to them."""
    cited, covered = [], set()
    for match in CITATION.finditer(text):
        for ref in ONE_REFERENCE.finditer(match.group(0)):
            offset = match.start() + ref.start()
            covered.add(offset)
            for section in expand(ref["start"], ref["end"]):
                cited.append((Place(path, line_of(text, offset)), section))
    return cited, covered


def mapped_sections() -> dict[str, tuple[str, str | None, int]]:
    """Section number -> (heading level, anchor or None, line) of each § heading of notes.md."""
    sections = {}
    for number, line in enumerate(NOTES_MAP.read_text(encoding="utf-8").splitlines(), start=1):
        heading = HEADING.match(line)
        if heading:
            anchor = ANCHOR.search(heading["title"])
            sections.setdefault(heading["number"], []).append(
                (heading["level"], anchor["anchor"] if anchor else None, number)
            )
    return sections


def test_every_citation_of_the_notes_names_a_section_of_the_map():
    sections = mapped_sections()
    missing = []
    for path, text in text_files():
        if path == "docs/notes.md":
            continue
        for place, section in citations(path, text)[0]:
            if section not in sections:
                missing.append(f"{place}: notes §{section}")
    assert not missing, (
        "sections of the notes cited but without a heading '§N.M ... {#sN-M}' on docs/notes.md "
        "(add the section there, or correct the citation):\n" + "\n".join(missing)
    )


def test_the_repository_cites_the_notes():
    """The citation pattern still finds the known forms (so the test above checks something)."""
    found = {
        path for path, text in text_files() if path != "docs/notes.md" and citations(path, text)[0]
    }
    assert {"src/attnlab/models/positional.py", "claims/position.yaml"} <= found
    cited = citations("x", "(notes §7.3-7.4)\nnotes: §4.8, §9.2\nthe notes' §2.1 and §7")[0]
    assert [s for _, s in cited] == ["7.3", "7.4", "4.8", "9.2", "2.1", "7"]
    assert [p.line for p, _ in citations("x", "notes §4.8,\n# §9.2 and more")[0]] == [1, 2]


def test_every_section_sign_cites_the_notes_or_a_paper():
    """A bare "(§4.8)" is ambiguous: write "notes §4.8", or name the paper the section is of."""
    bare = []
    for path, text in text_files():
        if path == "docs/notes.md":
            continue
        covered = citations(path, text)[1]
        for sign in re.finditer(rf"§(?={SECTION})", text):
            offset = sign.start()
            if offset in covered:
                continue
            if PAPER_BEFORE.search(text[max(0, offset - 60) : offset]):
                continue
            if PAPER_AFTER.match(text[offset : offset + 40]):
                continue
            end = text.find("\n", offset)
            snippet = text[offset : end if end >= 0 else len(text)][:40]
            bare.append(f"{Place(path, line_of(text, offset))}: {snippet}")
    assert not bare, (
        "section signs that are neither 'notes §N' nor a paper's section "
        "('Author et al. YEAR, §N'):\n" + "\n".join(bare)
    )


def test_every_heading_has_its_own_anchor_made_of_its_number():
    sections = mapped_sections()
    assert sections, "docs/notes.md has no '§N' headings"
    problems = []
    for number, headings in sections.items():
        if not re.fullmatch(SECTION, number):
            problems.append(f"heading number §{number} is not N or N.M[.K]")
            continue
        if len(headings) > 1:
            lines = ", ".join(str(line) for _, _, line in headings)
            problems.append(f"§{number} has {len(headings)} headings (lines {lines})")
        for level, anchor, line in headings:
            expected = "s" + number.replace(".", "-")
            if anchor != expected:
                problems.append(f"line {line}: §{number} needs the anchor {{#{expected}}}")
            depth = number.count(".") + 2  # §4 is ##, §4.8 ###, §5.5.2 ####
            if len(level) != depth:
                problems.append(f"line {line}: §{number} should be a level-{depth} heading")
    anchors = Counter(a for headings in sections.values() for _, a, _ in headings if a)
    problems += [f"anchor #{a} is used {n} times" for a, n in anchors.items() if n > 1]
    top_level = {str(n) for n in range(1, 13)}  # the notes' sections 一 to 十二
    problems += [f"no heading for §{n}" for n in sorted(top_level - set(sections), key=int)]
    for parent in {n.rpartition(".")[0] for n in sections if "." in n} - set(sections):
        problems.append(f"§{parent} has subsections on the page but no heading of its own")
    assert not problems, "docs/notes.md:\n" + "\n".join(problems)


def test_links_within_the_map_reach_an_anchor():
    text = NOTES_MAP.read_text(encoding="utf-8")
    anchors = {a for headings in mapped_sections().values() for _, a, _ in headings}
    broken = sorted(set(re.findall(r"\]\(#([^)]+)\)", text)) - anchors)
    assert not broken, f"docs/notes.md links to missing anchors: {broken}"


def test_nothing_points_outside_the_repository():
    found = [
        f"{Place(path, line_of(text, match.start()))}: {match.group(0)}"
        for path, text in text_files()
        if path.split("/")[0] in SELF_CONTAINED
        for match in re.finditer("|".join(map(re.escape, OUTSIDE)), text)
    ]
    assert not found, (
        "references to files outside the repository (say what they meant instead):\n"
        + "\n".join(found)
    )
