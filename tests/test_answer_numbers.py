"""tools/answer_numbers.py: a model answer's numbers must be printed by the executed solution."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import answer_numbers  # noqa: E402


def _notebook(answer: str, printed: str = "accuracy 0.934, share 0.12\n") -> nbformat.NotebookNode:
    code = new_code_cell("THRESHOLD = 0.5\nprint(...)")
    code.outputs = [new_output("stream", name="stdout", text=printed)]
    return new_notebook(cells=[
        new_markdown_cell("# 09 test\nTheory: a ratio of 0.25."), code,
        new_markdown_cell("**TOSUBMIT 9.1** *(3 points)* What is the accuracy?"),
        new_markdown_cell(f"### BEGIN SOLUTION\n{answer}\n### END SOLUTION"),
    ])


def test_only_unprinted_decimals_and_percentages_are_flagged() -> None:
    nb = _notebook("Accuracy 0.934 (Selvaraju et al. 2017, arXiv 1610.02391, torch 2.9.1), 12 % in the mask, "
                   "threshold 0.5, ratio 0.25, 224 px; but 0.55 and 40 % were never printed, nor -1.5.")
    flagged = [u.text for u in answer_numbers.unprinted_numbers(nb, "09_test.ipynb")]
    assert flagged == ["0.55", "40 %", "-1.5"]
    assert {u.question for u in answer_numbers.unprinted_numbers(nb)} == {"9.1"}


def test_a_rounded_claim_is_flagged_and_a_percentage_matches_its_fraction() -> None:
    assert [u.text for u in answer_numbers.unprinted_numbers(_notebook("about 0.9"))] == ["0.9"]
    assert not answer_numbers.unprinted_numbers(_notebook("93.4 %", printed="acc 0.934\n"))
    assert not answer_numbers.unprinted_numbers(_notebook("0.934", printed="acc 93.4 %\n"))


def test_main_exit_status(tmp_path: Path, capsys) -> None:
    good, bad, empty = tmp_path / "good.ipynb", tmp_path / "bad.ipynb", tmp_path / "empty.ipynb"
    nbformat.write(_notebook("accuracy 0.934"), good)
    nbformat.write(_notebook("accuracy 0.95"), bad)
    nb = _notebook("accuracy 0.934")
    nb.cells[1].outputs = []
    nbformat.write(nb, empty)
    assert answer_numbers.main([str(good)]) == 0
    assert answer_numbers.main([str(good), str(bad)]) == 1
    assert "9.1: 0.95" in capsys.readouterr().out
    assert answer_numbers.main([str(empty)]) == 1
    assert "no outputs" in capsys.readouterr().err
    edited = tmp_path / "edited"
    edited.mkdir()
    nbformat.write(_notebook("accuracy 0.934"), edited / "bad.ipynb")  # the answer fixed, the old outputs kept
    assert answer_numbers.main([str(bad), "--answers", str(edited)]) == 0
