"""tools/course.py: student copies, setup cells, badges, assignments and the checks that catch stale or broken files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import course  # noqa: E402


def _notebook(number: int = 7, questions: tuple[int, ...] = (1, 2), answer: bool = True, params_tag: bool = True):
    cells = [
        new_markdown_cell(f"# {number:02d} · Tiny notebook\n\n**Time:** ~5 min"),
        new_code_cell("# setup placeholder"),
        new_code_cell("N = 3", metadata={"tags": ["parameters"]} if params_tag else {}),
        new_markdown_cell("## 1. A section"),
        new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\nprint(f(1))"),
    ]
    for m in questions:
        cells.append(new_markdown_cell(f"**TOSUBMIT {number}.{m}** *(2 points)* Why {m}?"))
        if answer:
            cells.append(
                new_markdown_cell(
                    "### BEGIN SOLUTION\n**Model answer.** Because.\n**Rubric.** 2 pts: says because.\n### END SOLUTION"
                )
            )
        else:
            cells.append(new_markdown_cell("no markers here"))
    return new_notebook(cells=cells)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "helpers").mkdir()
    shutil.copy(ROOT / "helpers" / "course.py", tmp_path / "helpers" / "course.py")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "README.md").write_text("# T\n\n<!-- schedule:start -->\n<!-- schedule:end -->\n")
    nbformat.write(_notebook(), tmp_path / "solutions" / "07_tiny.ipynb")
    assert course.main(["build", "--root", str(tmp_path)]) == 0
    return tmp_path


def _edit(path: Path, fn) -> None:
    nb = nbformat.read(path, as_version=4)
    fn(nb)
    nbformat.write(nb, path)


def test_build_then_check_is_clean_and_idempotent(tree: Path) -> None:
    assert course.check(tree) == []
    assert course.build(tree) == []  # a second build writes nothing


def test_student_copy_replaces_solutions(tree: Path) -> None:
    student = nbformat.read(tree / "notebooks" / "07_tiny.ipynb", as_version=4)
    code = student.cells[4].source
    assert "return x + 1" not in code and "BEGIN SOLUTION" not in code
    assert '    # YOUR CODE HERE\n    raise NotImplementedError("exercise not done yet")' in code
    assert code.endswith("print(f(1))")
    answers = [c.source for c in student.cells if c.source == "YOUR ANSWER HERE"]
    assert len(answers) == 2
    assert not any("Because" in c.source for c in student.cells)


def test_setup_cell_and_badges_written(tree: Path) -> None:
    for folder in ("solutions", "notebooks"):
        nb = nbformat.read(tree / folder / "07_tiny.ipynb", as_version=4)
        assert nb.cells[1].source == course.setup_source(tree)
        assert "colab.research.google.com/github/" in nb.cells[0].source
        assert "blob/main/notebooks/07_tiny.ipynb" in nb.cells[0].source


def test_student_copy_links_no_solution(tree: Path) -> None:
    student = nbformat.read(tree / "notebooks" / "07_tiny.ipynb", as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "solutions/" not in text and "solution]" not in text and course.SOLUTION_NOTE not in text
    solution = nbformat.read(tree / "solutions" / "07_tiny.ipynb", as_version=4)
    assert course.SOLUTION_NOTE in solution.cells[0].source
    readme = (tree / "README.md").read_text()
    assert "[solution](solutions/07_tiny.ipynb)" in readme, "the instructors' README links the solution"
    assert "blob/main/solutions" not in readme, "solutions are not in the repository the badges open"


def test_assignments_grading_and_schedule(tree: Path) -> None:
    text = (tree / "assignments.md").read_text()
    assert "**7.1** (2 points; section *1. A section*)" in text and "> Why 2?" in text
    assert "Total: 4 points in 2 questions." in text
    guide = (tree / "solutions" / "README.md").read_text()
    assert "**Rubric.** 2 pts" in guide
    readme = (tree / "README.md").read_text()
    assert "| 07 | [Tiny notebook](notebooks/07_tiny.ipynb) | ~5 min |" in readme


def test_check_catches_stale_student_copy(tree: Path) -> None:
    _edit(
        tree / "solutions" / "07_tiny.ipynb", lambda nb: setattr(nb.cells[4], "source", nb.cells[4].source + "\n# new")
    )
    problems = course.check(tree)
    assert any("notebooks/07_tiny.ipynb is stale" in p for p in problems)


def test_check_catches_stale_setup_cell(tree: Path) -> None:
    _edit(tree / "notebooks" / "07_tiny.ipynb", lambda nb: setattr(nb.cells[1], "source", "print('edited by hand')"))
    assert any("notebooks/07_tiny.ipynb is stale" in p for p in course.check(tree))


def test_check_catches_outputs(tree: Path) -> None:
    def add_output(nb):
        nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="2\n")]
        nb.cells[4].execution_count = 1

    _edit(tree / "notebooks" / "07_tiny.ipynb", add_output)
    assert any("has outputs" in p for p in course.check(tree))


def test_check_catches_stale_assignments(tree: Path) -> None:
    (tree / "assignments.md").write_text("old\n")
    assert any("assignments.md is stale" in p for p in course.check(tree))


def test_check_catches_orphan_student_copy(tree: Path) -> None:
    shutil.copy(tree / "notebooks" / "07_tiny.ipynb", tree / "notebooks" / "08_orphan.ipynb")
    assert any("08_orphan.ipynb has no solution" in p for p in course.check(tree))


@pytest.mark.parametrize(
    ("nb_kwargs", "source_edit", "message"),
    [
        ({"questions": (1, 1)}, None, "repeats"),
        ({"questions": (1, 3)}, None, "skips"),
        ({"number": 8}, None, "the first number must be 7"),
        ({"answer": False}, None, "must be followed by a markdown answer cell"),
        ({"params_tag": False}, None, "parameters"),
        ({}, "def f(x):\n    ### BEGIN SOLUTION\n    return x", "without ### END SOLUTION"),
        ({}, "def f(x):\n    return x\n    ### END SOLUTION", "without ### BEGIN SOLUTION"),
        ({}, "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ],
)
def test_check_catches_malformed_notebooks(tree: Path, nb_kwargs: dict, source_edit: str | None, message: str) -> None:
    nb = _notebook(**nb_kwargs)
    if source_edit is not None:
        nb.cells[4].source = source_edit
    nbformat.write(nb, tree / "solutions" / "07_tiny.ipynb")
    problems = course.check(tree)
    assert any(message in p for p in problems), problems
    assert course.main(["build", "--root", str(tree)]) == 1


def test_missing_rubric_and_points_rejected(tree: Path) -> None:
    nb = _notebook()
    nb.cells[6].source = "### BEGIN SOLUTION\nJust an answer.\n### END SOLUTION"
    nbformat.write(nb, tree / "solutions" / "07_tiny.ipynb")
    assert any("Rubric" in p for p in course.check(tree))
    nb = _notebook()
    nb.cells[5].source = "**TOSUBMIT 7.1** Why?"
    nbformat.write(nb, tree / "solutions" / "07_tiny.ipynb")
    assert any("has no points" in p for p in course.check(tree))


def test_cli_exit_codes(tree: Path) -> None:
    ok = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "course.py"), "check", "--root", str(tree)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    (tree / "assignments.md").write_text("stale\n")
    bad = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "course.py"), "check", "--root", str(tree)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "assignments.md is stale" in bad.stderr


def test_repository_is_consistent() -> None:
    """The committed course itself: generated files current, no outputs, questions well formed."""
    assert course.check(ROOT) == []


def test_every_notebook_follows_the_template() -> None:
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        sources = ["".join(c["source"]) for c in nb["cells"]]
        text = "\n".join(sources)
        for heading in ("## Summary", "## References", "**Time:**"):
            assert heading in text, f"{path.name} lacks {heading}"
        assert "TOSUBMIT" in text, f"{path.name} has no question"
        assert "submission.export(" in sources[-1], f"{path.name}: the last cell must build the PDF"


def test_points_with_a_note(tree: Path) -> None:
    nb = _notebook()
    nb.cells[5].source = "**TOSUBMIT 7.1** *(5 points, homework)* Why?"
    nbformat.write(nb, tree / "solutions" / "07_tiny.ipynb")
    assert course.main(["build", "--root", str(tree)]) == 0
    assert "**7.1** (5 points, homework; section *1. A section*)" in (tree / "assignments.md").read_text()


@pytest.mark.parametrize(
    "source",
    [
        "## 5. Designing a test\n\n**TOSUBMIT 7.2** *(2 points)* Why 2?",  # a heading above the header (07, 7.5)
        "Some text first. **TOSUBMIT 7.2** *(2 points)* Why 2?",
        "**TOSUBMIT 7.1** *(2 points)* Why 1?\n\n**TOSUBMIT 7.2** *(2 points)* Why 2?",  # two in one cell
    ],
)
def test_check_catches_a_question_that_does_not_start_its_cell(tree: Path, source: str) -> None:
    nb = _notebook()
    nb.cells[7].source = source  # the cell of TOSUBMIT 7.2 (cells 5-6: 7.1 and its answer)
    nbformat.write(nb, tree / "solutions" / "07_tiny.ipynb")
    problems = course.check(tree)
    assert any("07_tiny.ipynb cell 7: **TOSUBMIT 7.2 does not start the cell" in p for p in problems), problems
    assert course.main(["check", "--root", str(tree)]) == 1
    assert course.main(["build", "--root", str(tree)]) == 1


def test_mentions_of_tosubmit_without_a_number_are_allowed(tree: Path) -> None:
    nb = _notebook()
    nb.cells[3].source = "## 1. A section\n\nQuestions are marked **TOSUBMIT N.M**; answer every **TOSUBMIT** question."
    nbformat.write(nb, tree / "solutions" / "07_tiny.ipynb")
    assert course.main(["build", "--root", str(tree)]) == 0
    assert course.check(tree) == []


def test_check_catches_notebook_07s_hidden_question(tree: Path) -> None:
    """A copy of notebook 07 whose '## 5. Designing a test' heading shares the cell of TOSUBMIT 7.5 (as on main
    when this test was written; if 07 has the heading in its own cell by now, the copy puts it back)."""
    nb = nbformat.read(ROOT / "solutions" / "07_evaluating_explanations.ipynb", as_version=4)
    i = next(k for k, c in enumerate(nb.cells) if "**TOSUBMIT 7.5**" in c.source)
    if nb.cells[i].source.lstrip().startswith("**TOSUBMIT 7.5**"):
        heading = nb.cells[i - 1]
        assert heading.cell_type == "markdown" and heading.source.startswith("## 5."), heading.source[:80]
        nb.cells[i].source = heading.source + "\n\n" + nb.cells[i].source
        del nb.cells[i - 1]
        i -= 1
    (tree / "solutions" / "07_tiny.ipynb").unlink()
    nbformat.write(nb, tree / "solutions" / "07_evaluating_explanations.ipynb")
    problems = course.check(tree)
    assert any(f"07_evaluating_explanations.ipynb cell {i}: **TOSUBMIT 7.5 does not start the cell" in p
               for p in problems), problems
