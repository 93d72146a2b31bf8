"""tools/time_estimate.py: the workload counts on a known notebook, and the notebooks' stated times against it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("time_estimate", ROOT / "tools" / "time_estimate.py")
te = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(te)


def _nb(cells: list[tuple[str, str]]) -> dict:
    return {"cells": [{"cell_type": t, "metadata": {}, "source": s} for t, s in cells], "metadata": {},
            "nbformat": 4, "nbformat_minor": 5}


def test_workload_counts_a_known_notebook(tmp_path):
    student = _nb([
        ("markdown", "# 09 · Toy\n\n**Time:** ~25 min\n\nOne two three [link](https://example.org/x)."),
        ("markdown", "$$a = b$$ and more words"),
        ("code", "x = 1\ny = 2\n"),
        ("code", "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError(\"exercise not done yet\")\n"),
        ("markdown", "**TOSUBMIT 9.1** *(2 points)* Why?"),
        ("markdown", "YOUR ANSWER HERE"),
        ("markdown", "**TOSUBMIT 9.2** *(4 points, homework)* Why not?"),
        ("markdown", "YOUR ANSWER HERE"),
    ])
    solution = _nb([
        ("code", "def f():\n    ### BEGIN SOLUTION\n    a = 1\n    # a comment\n    return a\n    ### END SOLUTION\n"),
    ])
    (tmp_path / "s.ipynb").write_text(json.dumps(student))
    (tmp_path / "t.ipynb").write_text(json.dumps(solution))
    w = te.workload(tmp_path / "s.ipynb", tmp_path / "t.ipynb")
    assert w["exercises"] == 1 and w["solution_lines"] == 2
    assert w["questions"] == 2 and w["points"] == 2 and w["homework_points"] == 4
    assert w["formulas"] == 1 and w["code_lines"] == 3  # two given lines + the def line of the exercise
    assert w["words"] == 6 + 5 + 4 + 6 + 8 - 1  # link target not counted; "link" is
    e = te.estimate_minutes(w)
    assert e["questions"] == pytest.approx(2 * te.MIN_PER_POINT)
    assert e["exercises"] == pytest.approx(te.MIN_PER_EXERCISE + 2 * te.MIN_PER_SOLUTION_LINE)
    assert te.stated_minutes(tmp_path / "s.ipynb") == 25


@pytest.mark.parametrize("student", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_stated_time_follows_the_estimate(student):
    """Each notebook's **Time:** line is the estimate (run time excluded here, so up to 20 min above it)."""
    stated = te.stated_minutes(student)
    assert stated is not None, f"{student.name}: no **Time:** ~N min line"
    estimate = te.estimate_minutes(te.workload(student, ROOT / "solutions" / student.name))["total"]
    assert estimate - 10 <= stated <= estimate + 20, (
        f"{student.name} states ~{stated} min, the workload estimate is {estimate:.0f} min (+ run time): "
        "update the **Time:** line (python tools/time_estimate.py) or the notebook"
    )
