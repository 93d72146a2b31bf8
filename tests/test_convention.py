"""helpers.convention: the one parser of the notebook convention, shared by tools/course.py and helpers.submission."""

from __future__ import annotations

import re
import sys

import nbformat
import pytest

from helpers import convention, submission
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import course  # noqa: E402

SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**TOSUBMIT 2.4** *(5 points, homework)* Do it.", ("2.4", 5.0, "homework", "Do it.")),
        ("**TOSUBMIT 3.1** *(1 point)* Why?", ("3.1", 1.0, "", "Why?")),
        ("  **TOSUBMIT 03.02** *( 2.5 points ,  optional  )*\nText", ("3.2", 2.5, "optional", "Text")),
        ("**TOSUBMIT 7.1** Why?", ("7.1", None, "", "Why?")),
    ],
)
def test_parse_header(source: str, expected: tuple) -> None:
    h = convention.parse_header(source)
    assert h is not None
    assert (h.number, h.points, h.note, source[h.end :].strip()) == expected


def test_not_a_header() -> None:
    for source in ("TOSUBMIT 1.1", "**TOSUBMIT 1**", "Some text **TOSUBMIT 1.1**", "**TOSUBMIT one.two**"):
        assert convention.parse_header(source) is None, source
    assert convention.looks_like_question("**TOSUBMIT 1** *(2 points)*")  # malformed, but meant as a question
    assert not convention.looks_like_question("A **TOSUBMIT** mention")


def test_format_points_and_title() -> None:
    assert convention.format_points(1.0) == "1 point"
    assert convention.format_points(5.0, "homework") == "5 points, homework"
    assert convention.format_points(2.5) == "2.5 points"
    cells = [{"cell_type": "markdown", "source": ["[![Open In Colab](x)](y)\n", "# 03 · Gradient attribution\n"]}]
    assert convention.title_line(cells) == "03 · Gradient attribution"
    assert convention.split_title("03 · Gradient attribution") == (3, "Gradient attribution")
    assert convention.split_title("No number") == (None, "No number")
    assert convention.title_line([{"cell_type": "code", "source": "# 1 · x"}]) is None


def test_regions_and_answers() -> None:
    src = f"a\n{convention.BEGIN}\nb\n{convention.END}\nc"
    assert convention.split_regions(src) == [(False, ["a"]), (True, [convention.BEGIN, "b", convention.END]),
                                             (False, ["c"])]
    for bad, message in ((f"{convention.BEGIN}\nx", "without"), (f"x\n{convention.END}", "without"),
                         (f"{convention.BEGIN}\n{convention.BEGIN}\n{convention.END}", "nested")):
        with pytest.raises(convention.ConventionError, match=message):
            convention.split_regions(bad)
    answer = f"{convention.BEGIN}\n**Model answer.** 42\n{convention.END}"
    assert convention.clean_answer(answer) == "**Model answer.** 42"
    assert convention.clean_answer("**YOUR ANSWER HERE**") == ""
    assert convention.clean_answer("My answer. YOUR ANSWER HERE") == "My answer. "


def test_both_tools_use_the_one_convention() -> None:
    """No second copy of the header pattern or the markers in tools/course.py or the helpers.submission package."""
    package = sorted((ROOT / "helpers" / "submission").glob("*.py"))
    assert "convention" in (ROOT / "helpers" / "submission" / "reading.py").read_text(encoding="utf-8")
    tools = [ROOT / "tools" / f"{name}.py" for name in ("course", "answer_numbers", "time_estimate")]
    for path in (*tools, *package):
        text = path.read_text(encoding="utf-8")
        assert path.parent.name == "submission" or "convention" in text, path.name
        assert not re.search(r"re\.compile\([^)]*TOSUBMIT", text), f"{path.name} parses question headers itself"
        assert not re.search(r"=\s*\"### BEGIN SOLUTION\"", text), f"{path.name} defines the markers itself"
        assert not re.search(r"re\.\w+\([^)]*Time:", text), f"{path.name} parses the **Time:** line itself"


def test_time_line_and_solution_text() -> None:
    assert convention.parse_time("intro\n**Time:** ~150 min (estimated)") == convention.TimeLine("~150 min", 150)
    assert convention.parse_time("**Time:** 2-3 h") == convention.TimeLine("2-3 h", 120)
    assert convention.parse_time("**Time:** about an hour") is None
    assert convention.parse_time("no time line") is None
    cell = f"**Model answer.**\n{convention.BEGIN}\n3.5 points\n{convention.END}\ntail"
    assert convention.solution_text(cell) == "3.5 points"
    assert convention.solution_text("plain text") is None
    with pytest.raises(convention.ConventionError):
        convention.solution_text(convention.BEGIN)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_solution_question_parsed_with_points(path) -> None:
    """Each question of each solution notebook: the same number, points and note for the course tool and the PDF,
    and the notebook's total is the one assignments.md states."""
    info = course.parse(nbformat.read(path, as_version=4), path)
    ours = submission.read_questions(path)
    assert info.questions and len(ours) == len(info.questions)
    assert [(q.number, q.points, q.note) for q in ours] == [(q.number, q.points, q.note) for q in info.questions]
    assert all(isinstance(q.points, float) and q.points > 0 for q in ours)
    total = sum(q.points for q in ours)
    assignments = (ROOT / "assignments.md").read_text(encoding="utf-8")
    m = re.search(rf"^## {info.number:02d} · .* \((\d+(?:\.\d+)?) points\)$", assignments, re.MULTILINE)
    assert m, f"assignments.md has no heading for notebook {info.number:02d}"
    assert float(m.group(1)) == total


def test_homework_question_has_its_points() -> None:
    """The drift of issue 26: 2.4 is '*(5 points, homework)*' and had points=None in the PDF."""
    two = {q.number: q for q in submission.read_questions(ROOT / "solutions" / "02_attention.ipynb")}
    assert (two["2.4"].points, two["2.4"].note) == (5.0, "homework")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**TOSUBMIT 7.5** *(3 points)* Design a test.", []),
        ("  \n**TOSUBMIT 7.5** *(3 points)* Design a test.", []),
        ("## 5. Designing a test\n\n**TOSUBMIT 7.5** *(3 points)* Design a test.", ["7.5"]),
        ("**TOSUBMIT 7.4** *(3 points)* A.\n\n**TOSUBMIT 7.5** *(3 points)* B.", ["7.5"]),
        ("Questions are marked **TOSUBMIT N.M**; answer every **TOSUBMIT** question.", []),
        ("See **TOSUBMIT 3.2** above.", ["3.2"]),
    ],
)
def test_misplaced_headers(source: str, expected: list[str]) -> None:
    assert convention.misplaced_headers(source) == expected
