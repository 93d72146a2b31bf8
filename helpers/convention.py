"""The course's notebook convention, in one place: read by ``tools/course.py`` (build/check) and by
``helpers.submission`` (the student's PDF), so the two cannot drift apart.

* A question is a markdown cell starting ``**TOSUBMIT N.M** *(P points)*`` or ``*(P points, note)*`` (e.g.
  ``*(5 points, homework)*``); the next cell is its answer cell.
* Solutions sit between the marker lines :data:`BEGIN` and :data:`END`; a student copy shows
  :data:`PLACEHOLDER` (markdown) or :data:`CODE_PLACEHOLDER` (code) instead.
* The title cell's first line is ``# NN · Title``; solution notebooks are named ``NN_slug.ipynb``.
* The time a notebook takes is stated near the top as ``**Time:** ~N min`` (:func:`parse_time`).

Only the standard library: ``tools/course.py`` imports this without the course's heavy dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BEGIN",
    "END",
    "PLACEHOLDER",
    "CODE_PLACEHOLDER",
    "NOTEBOOK_NAME",
    "ConventionError",
    "Header",
    "cell_source",
    "parse_header",
    "looks_like_question",
    "misplaced_headers",
    "asks_for_figure",
    "format_points",
    "split_regions",
    "strip_markers",
    "clean_answer",
    "title_line",
    "split_title",
    "solution_text",
    "TimeLine",
    "parse_time",
]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PLACEHOLDER = "YOUR ANSWER HERE"
CODE_PLACEHOLDER = ("# YOUR CODE HERE", 'raise NotImplementedError("exercise not done yet")')
#: solution notebook file names: ``NN_slug.ipynb`` (lower case, digits, ``_``)
NOTEBOOK_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")

_HEADER = re.compile(
    r"^\s*\*\*TOSUBMIT\s+(\d+)\.(\d+)\*\*[ \t]*"
    r"(?:\*\(\s*(\d+(?:\.\d+)?)\s*points?\s*(?:,\s*([^)]*?))?\s*\)\*)?[ \t]*"
)
# lenient: a student may have kept a marker line with fewer '#' or spaces; such lines never reach the PDF
_MARKER_LINE = re.compile(r"^\s*#{0,3}\s*(BEGIN|END) SOLUTION\s*$", re.MULTILINE)
_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_TITLE_NUMBER = re.compile(r"^(\d+)\s*[·:.-]\s*")
_TIME = re.compile(r"\*\*Time:\*\*\s*(~?\s*(\d+)(?:\s*[-–]\s*\d+)?\s*(min|minutes|h|hours)\b)")


class ConventionError(ValueError):
    """A cell breaks the convention (unbalanced or nested solution markers)."""


@dataclass(frozen=True)
class Header:
    """A parsed ``**TOSUBMIT N.M** *(P points, note)*`` header.

    ``points`` is None when the header has none (``tools/course.py`` rejects that; a student PDF shows no
    points); ``end`` is the index in the cell source where the question text starts."""

    notebook: int  # N
    index: int  # M
    points: float | None
    note: str
    end: int

    @property
    def number(self) -> str:
        """``"N.M"`` (leading zeros dropped)."""
        return f"{self.notebook}.{self.index}"


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (notebook JSON may store it as a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parse_header(source: str) -> Header | None:
    """The question header at the start of a markdown cell's ``source``, or None when it is not a question."""
    m = _HEADER.match(source)
    if not m:
        return None
    points = float(m.group(3)) if m.group(3) else None
    return Header(int(m.group(1)), int(m.group(2)), points, (m.group(4) or "").strip(), m.end())


def looks_like_question(source: str) -> bool:
    """Whether the cell is meant to be a question (so a header :func:`parse_header` rejects is malformed)."""
    return source.lstrip().startswith("**TOSUBMIT")


_ANY_HEADER = re.compile(r"\*\*TOSUBMIT\s+(\d+\.\d+)")


def misplaced_headers(source: str) -> list[str]:
    """The question numbers ``"N.M"`` of every ``**TOSUBMIT N.M`` in ``source`` that does not start the cell.

    Such a question is invisible: only a cell that starts with its header is a question (so a heading above the
    header, in the same cell, hides it from ``assignments.md``, the grading guide and the PDF). A mention without
    a number (``**TOSUBMIT** questions``, ``**TOSUBMIT N.M**``) is not a header and is allowed."""
    start = len(source) - len(source.lstrip())
    return [m.group(1) for m in _ANY_HEADER.finditer(source) if m.start() != start]


def asks_for_figure(text: str, number: str) -> bool:
    """Whether question ``number`` ("N.M") asks for a figure: its ``text`` says ``submission.attach("N.M", ...)``
    (or ``attach('N.M', ...)``), as every course question that wants one does."""
    a, b = (int(part) for part in str(number).split("."))
    pattern = rf"""attach\(\s*["']0*{a}\.0*{b}["']"""
    return re.search(pattern, text) is not None


def format_points(points: float, note: str = "") -> str:
    """``"5 points"``, ``"1 point"``, ``"2.5 points, homework"``."""
    return f"{points:g} point{'' if points == 1 else 's'}" + (f", {note}" if note else "")


def split_regions(source: str, where: str = "cell") -> list[tuple[bool, list[str]]]:
    """A cell's lines as ``(is_solution, lines)`` runs; a solution run keeps its marker lines.

    Raises :class:`ConventionError` on a nested marker or one without its partner."""
    runs: list[tuple[bool, list[str]]] = [(False, [])]
    inside = False
    for line in source.splitlines():
        s = line.strip()
        if s == BEGIN:
            if inside:
                raise ConventionError(f"{where}: nested {BEGIN}")
            inside = True
            runs.append((True, [line]))
        elif s == END:
            if not inside:
                raise ConventionError(f"{where}: {END} without {BEGIN}")
            runs[-1][1].append(line)
            inside = False
            runs.append((False, []))
        else:
            runs[-1][1].append(line)
    if inside:
        raise ConventionError(f"{where}: {BEGIN} without {END}")
    return [r for r in runs if r[1]]


def strip_markers(text: str) -> str:
    """``text`` without its solution marker lines (the answer between them stays)."""
    return _MARKER_LINE.sub("", text)


def clean_answer(text: str) -> str:
    """A markdown answer cell as the student's answer: marker lines and the placeholder (also decorated, e.g.
    ``**YOUR ANSWER HERE**``) removed; "" when nothing else is left."""
    lines = []
    for line in strip_markers(text).splitlines():
        if re.sub(r"[\s*_#>`]", "", line).upper() == PLACEHOLDER.replace(" ", ""):
            continue
        lines.append(re.sub(re.escape(PLACEHOLDER), "", line, flags=re.IGNORECASE))
    return "\n".join(lines).strip("\n")


def title_line(cells: Iterable[Mapping[str, Any]]) -> str | None:
    """The text of the ``# ...`` heading of the first markdown cell (badge lines skipped), or None."""
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        for line in cell_source(cell).splitlines():
            if line.startswith("[!["):
                continue  # Colab badges
            m = _TITLE.match(line)
            if m:
                return m.group(1)
        return None
    return None


def split_title(heading: str) -> tuple[int | None, str]:
    """``"03 · Gradient attribution"`` -> ``(3, "Gradient attribution")``; no leading number -> ``(None, heading)``."""
    m = _TITLE_NUMBER.match(heading)
    if not m:
        return None, heading.strip()
    return int(m.group(1)), heading[m.end() :].strip()


def solution_text(source: str, where: str = "cell") -> str | None:
    """The text between a cell's solution markers (several solution runs joined by newlines), or None when the cell
    has no solution. Raises :class:`ConventionError` on unbalanced markers, like :func:`split_regions`."""
    runs = [lines[1:-1] for inside, lines in split_regions(source, where) if inside]
    return "\n".join("\n".join(r) for r in runs) if runs else None


@dataclass(frozen=True)
class TimeLine:
    """A parsed ``**Time:** ~N min`` statement: ``text`` as written (``"~150 min"``, ``"2-3 h"``) and ``minutes``,
    its first number in minutes (hours converted)."""

    text: str
    minutes: int


def parse_time(text: str) -> TimeLine | None:
    """The first ``**Time:** ~N min`` (also ``N-M min``, ``N h``) in ``text`` (a notebook's first cells), or None."""
    m = _TIME.search(text)
    if not m:
        return None
    n = int(m.group(2))
    return TimeLine(m.group(1).strip(), n * 60 if m.group(3).startswith("h") else n)
