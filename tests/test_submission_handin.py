"""helpers.submission's hand-in paths (issue 35): a headless run (nbconvert, nbclient) finds its notebook and the
hint names the right one, ``export(out="new_dir/")`` creates the folder, batch grading flags a missing figure."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook  # noqa: E402

from helpers import convention, submission  # noqa: E402
from helpers.submission import SubmissionError, notebook, reading  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

STEM = "98_handin"  # no course notebook has number 98
SETUP = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom helpers import submission"
PARAMS = 'STUDENT_NAME, STUDENT_ID = "Ada Lovelace", "4242"'
EXPORT = ("if STUDENT_NAME and STUDENT_ID:\n    submission.export(STUDENT_NAME, STUDENT_ID)\nelse:\n"
          "    print('Fill in STUDENT_NAME and STUDENT_ID')")


def _notebook(folder: Path, name: str = f"{STEM}.ipynb", marker: str = "x = 1") -> Path:
    """A course-like notebook: question 98.1 asks for a figure, 98.2 does not; the last cell hands in."""
    nb = new_notebook(cells=[
        new_markdown_cell("# 98 · Hand-in fixture"),
        new_code_cell(SETUP),
        new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        new_code_cell(marker),
        new_markdown_cell('**TOSUBMIT 98.1** *(2 points)* Plot it and attach the figure with '
                          '`submission.attach("98.1", fig)`.'),
        new_markdown_cell("It goes up."),
        new_markdown_cell("**TOSUBMIT 98.2** *(1 point)* Why?"),
        new_markdown_cell("Because."),
        new_code_cell(EXPORT),
    ])
    path = folder / name
    nbformat.write(nb, path)
    return path


@pytest.fixture(autouse=True)
def _no_front_end(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(notebook, "_in_colab", lambda: False)
    monkeypatch.setattr(notebook, "_ipython", lambda: None)
    monkeypatch.setattr(reading, "_canonical_stem", lambda n: {98: STEM, 5: "05_lime"}.get(n))
    notebook._ATTACH_SESSION.clear()


def _kernel(*inputs: str):
    """A stand-in for IPython without a front end's hints: only its raw input history."""
    return types.SimpleNamespace(execution_count=len(inputs) + 1, user_ns={},
                                 history_manager=types.SimpleNamespace(input_hist_raw=["", *inputs]))


def test_headless_kernel_finds_its_notebook_by_the_cells_it_ran(tmp_path, monkeypatch):
    mine = _notebook(tmp_path, marker="x = 1  # mine")
    _notebook(tmp_path, name="98_other.ipynb", marker="x = 2  # another notebook")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(notebook, "_ipython", lambda: _kernel(SETUP, PARAMS, "x = 1  # mine", EXPORT))
    pdf = submission.export("Ada Lovelace", "4242")
    assert pdf == tmp_path / f"{STEM}_4242.pdf" and pdf.exists()
    # export's submission copy has the same code cells: it is never taken for the running notebook
    assert (tmp_path / f"{STEM}_4242.ipynb").exists()
    assert notebook._running_notebook_path() == mine.resolve()


def test_headless_hint_names_this_notebook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # no notebook file here: the hint names the course notebook of the questions attached to (not notebook 00)
    monkeypatch.setattr(notebook, "_ipython", lambda: _kernel(SETUP, 'submission.attach("5.5", fig_cmp)', EXPORT))
    with pytest.raises(SubmissionError, match="cannot tell which notebook") as err:
        submission.export("Ada Lovelace", "4242")
    assert "notebook='05_lime.ipynb'" in str(err.value) and "00_getting_started" not in str(err.value)
    # two equally good candidates: both are named, none is guessed
    for name in ("98_a.ipynb", "98_b.ipynb"):
        _notebook(tmp_path, name=name)
    monkeypatch.setattr(notebook, "_ipython", lambda: _kernel(SETUP, PARAMS, "x = 1", EXPORT))
    with pytest.raises(SubmissionError, match=r"one of: 98_a\.ipynb, 98_b\.ipynb"):
        submission.export("Ada Lovelace", "4242")
    # nothing to go by: a placeholder, not another notebook's name
    monkeypatch.setattr(notebook, "_ipython", lambda: None)
    with pytest.raises(SubmissionError, match=r"notebook='NN_slug\.ipynb'"):
        submission.export("Ada Lovelace", "4242")


@pytest.mark.notebook
def test_hand_in_cell_passes_in_a_headless_run(tmp_path, monkeypatch):
    """The course's hand-in cell, run by nbclient (as ``jupyter nbconvert --execute``): the PDF is written."""
    path = _notebook(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, startup_timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"Reading {path.resolve()}" in out, out
    assert (tmp_path / f"{STEM}_4242.pdf").exists()
    assert "question 98.1 asks for a figure and none is attached" in out


def test_export_to_a_new_folder_creates_it(tmp_path, monkeypatch):
    path = _notebook(tmp_path)
    monkeypatch.chdir(tmp_path)
    pdf = submission.export("Ada Lovelace", "4242", notebook=path, out="new_dir/")
    assert pdf == Path("new_dir") / f"{STEM}_4242.pdf" and (tmp_path / pdf).exists()
    assert (tmp_path / "new_dir" / f"{STEM}_4242.ipynb").exists()
    nested = submission.export("Ada Lovelace", "4242", notebook=path, out=tmp_path / "a" / "b")  # a Path: no "/"
    assert nested == tmp_path / "a" / "b" / f"{STEM}_4242.pdf" and nested.exists()
    with pytest.raises(SubmissionError, match="must be a .pdf file"):
        submission.export("Ada Lovelace", "4242", notebook=path, out=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_cli_out_to_a_new_folder_creates_it(tmp_path):
    path = _notebook(tmp_path)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "helpers.submission", *a], cwd=tmp_path, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    r = run(str(path), "--name", "Ada", "--id", "1", "--out", "pdfs/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pdfs" / f"{STEM}_1.pdf").exists()
    r = run(str(tmp_path / "missing.ipynb"), "--name", "Ada", "--id", "1", "--out", "never/")
    assert r.returncode == 1 and not (tmp_path / "never").exists()  # nothing written, not even the folder


@pytest.mark.parametrize(("text", "number", "expected"), [
    ('Attach it with `submission.attach("5.5", fig_cmp)`.', "5.5", True),
    ("attach it: submission.attach('5.5', fig)", "5.5", True),
    ('`submission.attach("5.5", fig_cmp)`', "5.4", False),
    ('`submission.attach("15.5", fig)`', "5.5", False),
    ("Which figure shows it best?", "5.5", False),
])
def test_asks_for_figure(text: str, number: str, expected: bool) -> None:
    assert convention.asks_for_figure(text, number) is expected


def test_batch_flags_a_missing_figure(tmp_path, capsys):
    folder = tmp_path / "inbox"
    folder.mkdir()
    without = _notebook(folder, name=f"{STEM}_1.ipynb")
    with_fig = _notebook(folder, name=f"{STEM}_2.ipynb")
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1])
    submission.attach("98.1", fig, notebook=with_fig)
    plt.close(fig)
    rows = {r["file"]: r for r in csv.DictReader(open(submission.batch(folder), encoding="utf-8"))}
    bad, good = rows[without.name], rows[with_fig.name]
    assert (bad["figures"], bad["figures_missing"], bad["status"]) == ("0", "98.1", "figure missing: 98.1")
    assert (good["figures"], good["figures_missing"], good["status"]) == ("1", "", "ok")
    summary = (folder / "summary.md").read_text(encoding="utf-8")
    assert "figure missing" in summary and "| 98.1 |" in summary
    assert json.loads(without.read_text())["cells"]  # the submitted notebooks are left as they were
