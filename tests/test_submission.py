"""helpers.submission: the student submission PDF (read back with pypdf), export(), batch mode and the CLI."""

from __future__ import annotations

import base64
import csv
import io
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
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402
from pypdf import PdfReader  # noqa: E402

from helpers import submission  # noqa: E402
from helpers.submission import SubmissionError, mathrender, notebook, pdf, reading  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = "Zoë Ærøskøbing"
STEM = "99_fixture"  # notebook number 99: no course notebook has it, so nothing in the repo interferes


def _png(color: str, size: tuple[float, float] = (2.0, 1.5)) -> bytes:
    fig, ax = plt.subplots(figsize=size)
    ax.plot([0, 1], [0, 1], color=color)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()


ANSWER_1 = """My answer uses **bold**, *emphasis* and the function `my_function()`; the gradient is $\\alpha$.

- first item
- second item with $\\frac{a}{b}$
  - a nested item

```python
x = compute(1)
```"""


def make_notebook(folder: Path, name: str = f"{STEM}.ipynb", attach: bool = True) -> Path:
    """A course-like notebook: 4 questions (1 answered with markdown, 2 unanswered, 3 answered + # ATTACH cell,
    4 answered in a solution-style cell), and (``attach``) an attach()-ed figure for 99.1."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# 99 · Fixture notebook\n\n[![Open In Colab](https://example.org/badge.svg)]"
                          "(https://example.org)\n\n- goal one"),
        new_code_cell("SEED = 0"),
        new_markdown_cell("**TOSUBMIT 99.1** *(2 points)* Why is the sky blue? Use $\\lambda$."),
        new_markdown_cell(ANSWER_1),
        new_markdown_cell("**TOSUBMIT 99.2** *(1 point)* A question nobody answers."),
        new_markdown_cell("YOUR ANSWER HERE"),
        new_markdown_cell("**TOSUBMIT 99.3** *(3 points)* Show the curve and describe it."),
        new_markdown_cell("The curve goes up."),
        new_code_cell("# ATTACH 99.3\nplt.plot([0, 1])", outputs=[new_output(
            "display_data", data={"image/png": base64.b64encode(_png("red")).decode(), "text/plain": "<Figure>"})]),
        new_markdown_cell("**TOSUBMIT 99.4** *(2 points)* Last question."),
        new_markdown_cell("### BEGIN SOLUTION\n**Model answer.** Forty-two.\n### END SOLUTION"),
        new_markdown_cell("**TOSUBMIT 99.5** *(1 point)* Empty answer cell."),
        new_markdown_cell("   \n"),
        new_code_cell('submission.export(STUDENT_NAME, STUDENT_ID)'),
    ]
    path = folder / name
    nbformat.write(nb, path)
    if attach:
        fig, ax = plt.subplots(figsize=(2.5, 2))
        ax.bar([1, 2], [3, 4])
        submission.attach("99.1", fig, notebook=path)
        plt.close(fig)
    return path


def pdf_text(path: Path) -> tuple[PdfReader, list[str]]:
    reader = PdfReader(path)
    return reader, [page.extract_text() for page in reader.pages]


def _is_formula(image) -> bool:
    """A formula is drawn by mathtext in black or grey on white: every pixel a shade of grey. The figures of these
    tests are drawn in colour."""
    rgb = image.convert("RGB")
    r, g, b = (band.tobytes() for band in rgb.split())
    return r == g == b


def images(path_or_reader) -> tuple[int, int]:
    """(figures, formulas) drawn in a PDF."""
    reader = path_or_reader if isinstance(path_or_reader, PdfReader) else PdfReader(path_or_reader)
    kinds = [_is_formula(img.image) for page in reader.pages for img in page.images]
    return kinds.count(False), kinds.count(True)


@pytest.fixture(autouse=True)
def _no_front_end(monkeypatch):
    """Tests run outside any notebook front end unless they say otherwise."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(notebook, "_in_colab", lambda: False)
    monkeypatch.setattr(notebook, "_ipython", lambda: None)
    notebook._ATTACH_SESSION.clear()


def test_pdf_contents(tmp_path):
    nb = make_notebook(tmp_path)
    out = submission.build_pdf(nb, NAME, "s1234567")
    assert out == tmp_path / f"{STEM}_s1234567.pdf"
    reader, pages = pdf_text(out)
    text = "\n".join(pages)
    # header
    assert "Explaining Vision Models" in text and "99 · Fixture notebook" in text
    assert NAME in text and "s1234567" in text and "Date:" in text
    assert reader.metadata.author == NAME
    # every question, in order
    positions = [text.index(f"Question 99.{m}") for m in range(1, 6)]
    assert positions == sorted(positions)
    assert "Why is the sky blue? Use" in text
    # answers: markdown rendered (no markup left); the formulas $\lambda$, $\alpha$, $\frac{a}{b}$ drawn by mathtext
    for snippet in ("My answer uses bold, emphasis and the function my_function()", "first item",
                    "a nested item", "x = compute(1)", "the gradient is", "second item with", "The curve goes up.",
                    "Model answer. Forty-two."):
        assert snippet in text, snippet
    assert "alpha" not in text and "frac" not in text and "lambda" not in text
    assert "**" not in text and "`" not in text and "$" not in text and "SOLUTION" not in text
    assert "YOUR ANSWER HERE" not in text
    # 99.2 and 99.5 flagged, 99.1/3/4 not
    assert text.count("NOT ANSWERED") == 2
    section = {m: text[positions[m - 1]:(positions[m] if m < 5 else len(text))] for m in range(1, 6)}
    assert "NOT ANSWERED" in section[2] and "NOT ANSWERED" in section[5]
    assert all("NOT ANSWERED" not in section[m] for m in (1, 3, 4))
    assert "3 of 5 questions" in text
    # figures: one attach()-ed (99.1) + one from the # ATTACH cell (99.3); three inline formulas
    assert images(reader) == (2, 3)
    assert "Figure 1 of 1 for question 99.1" in section[1] and "Figure 1 of 1 for question 99.3" in section[3]
    # page numbers
    n = len(reader.pages)
    for i, page in enumerate(pages, 1):
        assert f"page {i} / {n}" in page


def test_unicode_names_do_not_crash(tmp_path):
    nb = make_notebook(tmp_path, attach=False)
    out = submission.build_pdf(nb, "李雷 Zoë", "42", out=tmp_path / "cjk.pdf")
    reader, pages = pdf_text(out)
    assert reader.metadata.author == "李雷 Zoë"  # exact name in the document properties
    first = pages[0]
    assert "Zoë" in first and ("李雷" in first or "??" in first)  # drawn, or replaced when no font has the glyphs


def test_question_parsing_and_answer_states(tmp_path):
    qs = submission.read_questions(make_notebook(tmp_path, attach=False))
    assert [q.number for q in qs] == ["99.1", "99.2", "99.3", "99.4", "99.5"]
    assert [q.points for q in qs] == [2, 1, 3, 2, 1]
    assert [q.answered for q in qs] == [True, False, True, True, False]
    assert qs[3].answer.startswith("**Model answer.**") and "BEGIN" not in qs[3].answer


def test_latex_to_text():
    L = submission.latex_to_text
    assert L(r"\alpha") == "α"
    assert L("x^2") == "x²"
    assert L(r"\frac{a}{b}") == "a/b"
    assert L(r"\frac{x+1}{2}") == "(x+1)/2"
    assert L(r"\sum_{i=1}^{n} x_i") == "∑ᵢ₌₁ⁿ xᵢ"
    assert L(r"\mathbb{R}^{3}") == "ℝ³"
    assert L(r"\unknowncommand{x") == "unknowncommandx"  # unbalanced braces: readable, no crash
    assert L("}{\\") == ""


def test_no_overwrite(tmp_path):
    nb = make_notebook(tmp_path, attach=False)
    out = submission.build_pdf(nb, NAME, "1")
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        submission.build_pdf(nb, NAME, "1")
    assert out.read_bytes() == before
    again = submission.build_pdf(nb, "Other Name", "1", overwrite=True)
    assert again == out and "Other Name" in PdfReader(out).pages[0].extract_text()


@pytest.mark.parametrize("case", ["corrupt", "no_questions", "missing", "not_ipynb", "missing_image", "bad_marker",
                                  "empty_name"])
def test_bad_input_writes_nothing(tmp_path, case):
    path = tmp_path / "99_bad.ipynb"
    name, error = NAME, SubmissionError
    if case == "corrupt":
        path.write_text('{"cells": [', encoding="utf-8")
    elif case == "no_questions":
        nb = new_notebook()
        nb.cells = [new_markdown_cell("# 99 · Not a course notebook"), new_code_cell("print(1)")]
        nbformat.write(nb, path)
    elif case == "missing":
        error = FileNotFoundError
    elif case == "not_ipynb":
        path = tmp_path / "answers.txt"
        path.write_text("hello", encoding="utf-8")
    elif case == "missing_image":
        nb = new_notebook()
        nb.cells = [new_markdown_cell("**TOSUBMIT 99.1** *(1 point)* Q?"),
                    new_markdown_cell("See ![my plot](plots/missing.png)")]
        nbformat.write(nb, path)
    elif case == "bad_marker":
        nb = new_notebook()
        nb.cells = [new_markdown_cell("**TOSUBMIT 99.1** *(1 point)* Q?"), new_markdown_cell("A."),
                    new_code_cell("# ATTACH 99.7\nx = 1")]
        nbformat.write(nb, path)
    elif case == "empty_name":
        path = make_notebook(tmp_path, attach=False)
        name = "  "
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(error):
        submission.build_pdf(path, name, "123")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert issubclass(SubmissionError, ValueError)


def test_attach_replaces_on_rerun(tmp_path, monkeypatch):
    nb = make_notebook(tmp_path, attach=False)
    folder = tmp_path / submission.FIGURES_DIR / STEM
    ip = types.SimpleNamespace(execution_count=1, user_ns={})
    monkeypatch.setattr(notebook, "_ipython", lambda: ip)
    fig, ax = plt.subplots(figsize=(1, 1))
    submission.attach("99.1", fig, notebook=nb)
    submission.attach("99.1", ax, notebook=nb)  # same cell run: a second figure (an Axes works too)
    assert sorted(p.name for p in folder.glob("*.png")) == ["99.1_1.png", "99.1_2.png"]
    ip.execution_count = 2  # the cell runs again: its figures are replaced
    submission.attach("99.1", fig, notebook=nb)
    assert sorted(p.name for p in folder.glob("*.png")) == ["99.1_1.png"]
    ip.execution_count = 3
    submission.attach("99.1", fig, notebook=nb, keep=True)
    assert sorted(p.name for p in folder.glob("*.png")) == ["99.1_1.png", "99.1_2.png"]
    assert submission.clear("99.1", notebook=nb) == 2
    # where the front end sends the cell id (JupyterLab), re-running a cell replaces only that cell's figures
    cell = {"id": "A"}
    ip.kernel = types.SimpleNamespace(get_parent=lambda channel: {"metadata": {"cellId": cell["id"]}})
    submission.attach("99.1", fig, notebook=nb)
    submission.attach("99.1", fig, notebook=nb)
    cell["id"], ip.execution_count = "B", 4
    submission.attach("99.1", fig, notebook=nb)
    cell["id"], ip.execution_count = "A", 5
    submission.attach("99.1", fig, notebook=nb)
    assert sorted(p.name for p in folder.glob("*.png")) == ["99.1_3.png", "99.1_4.png"]
    with pytest.raises(ValueError):
        submission.attach("3", fig, notebook=nb)
    with pytest.raises(TypeError):
        submission.attach("99.1", "not a figure", notebook=nb)
    plt.close(fig)


def test_export_local_and_submission_copy(tmp_path, monkeypatch, capsys):
    nb = make_notebook(tmp_path)
    # found through VS Code's global
    monkeypatch.setattr(notebook, "_ipython", lambda: types.SimpleNamespace(
        execution_count=1, user_ns={"__vsc_ipynb_file__": str(nb)}))
    pdf = submission.export(NAME, "s99")
    out = capsys.readouterr().out
    assert pdf == tmp_path / f"{STEM}_s99.pdf" and pdf.exists()
    assert "save the notebook" in out.lower() and "NOT answered: 99.2, 99.5" in out
    copy = tmp_path / f"{STEM}_s99.ipynb"
    meta = json.loads(copy.read_text(encoding="utf-8"))["metadata"][submission.METADATA_KEY]
    assert meta["name"] == NAME and meta["student_id"] == "s99" and list(meta["figures"]) == ["99.1"]
    with pytest.raises(FileExistsError):
        submission.export(NAME, "s99")
    # the copy is self-contained: rebuilt elsewhere (no figures folder) it has the same figures
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = other / copy.name
    moved.write_bytes(copy.read_bytes())
    rebuilt = submission.build_pdf(moved, NAME, "s99", out=other / "rebuilt.pdf")
    assert images(rebuilt) == (2, 3)  # 99.1 embedded, 99.3 from the # ATTACH cell; the three formulas


def test_export_jupyterlab_session_and_not_found(tmp_path, monkeypatch):
    nb = make_notebook(tmp_path, attach=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", f"some/server/path/{nb.name}")
    assert submission.export(NAME, "7", save_copy=False) == tmp_path / f"{STEM}_7.pdf"
    monkeypatch.delenv("JPY_SESSION_NAME")
    with pytest.raises(SubmissionError, match="notebook="):
        submission.export(NAME, "8")


def test_export_colab(tmp_path, monkeypatch):
    source = make_notebook(tmp_path, attach=False)
    nb_json = json.loads(source.read_text(encoding="utf-8"))
    nb_json["metadata"]["colab"] = {"name": f"Copy of {STEM}.ipynb"}
    downloads = []
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab._message = types.SimpleNamespace(blocking_request=lambda *a, **k: {"ipynb": nb_json})
    colab.files = types.SimpleNamespace(download=downloads.append)
    google.colab = colab
    for mod, obj in (("google", google), ("google.colab", colab), ("google.colab._message", colab._message),
                     ("google.colab.files", colab.files)):
        monkeypatch.setitem(sys.modules, mod, obj)
    monkeypatch.setattr(notebook, "_in_colab", lambda: True)
    colab_dir = tmp_path / "content"
    colab_dir.mkdir()
    monkeypatch.chdir(colab_dir)
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0], color="purple")  # in colour, as every figure of these tests (formulas are grey)
    submission.attach("99.3", fig)  # on Colab: saved under the working directory
    plt.close(fig)
    pdf = submission.export(NAME, "c1")
    assert pdf == colab_dir / f"{STEM}_c1.pdf" and downloads == [str(pdf)]
    assert "Copy of 99_fixture.ipynb" in PdfReader(pdf).pages[0].extract_text()
    assert images(pdf) == (2, 3)


def test_images_in_answers(tmp_path):
    nb = new_notebook()
    pasted = new_markdown_cell("Pasted: ![pasted](attachment:img.png) and a web one ![logo](https://example.org/a.png)")
    pasted["attachments"] = {"img.png": {"image/png": base64.b64encode(_png("green")).decode()}}
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "mine.png").write_bytes(_png("blue"))
    nb.cells = [new_markdown_cell("**TOSUBMIT 99.1** *(1 point)* Q1?"), pasted,
                new_markdown_cell("**TOSUBMIT 99.2** *(1 point)* Q2?"), new_markdown_cell("![my plot](plots/mine.png)")]
    path = tmp_path / "99_images.ipynb"
    nbformat.write(nb, path)
    reader, pages = pdf_text(submission.build_pdf(path, NAME, "5"))
    assert images(reader) == (2, 0)
    assert "NOT ANSWERED" not in "".join(pages) and "logo" in "".join(pages)


def _batch_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    make_notebook(folder, name=f"{STEM}_1001.ipynb", attach=False)  # ID from the file name
    nb = json.loads(make_notebook(tmp_path, name="tmp.ipynb", attach=False).read_text(encoding="utf-8"))
    nb["metadata"][submission.METADATA_KEY] = {"name": "Ada Lovelace", "student_id": "1002"}
    nb["cells"][7]["source"] = "YOUR ANSWER HERE"  # 99.3 unanswered in this one
    (folder / "ada.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    nb = json.loads((folder / f"{STEM}_1001.ipynb").read_text(encoding="utf-8"))
    nb["cells"][1]["source"] = 'STUDENT_NAME = "Grace Hopper"\nSTUDENT_ID = "1003"'  # read from the export() call
    (folder / "grace.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (folder / "broken.ipynb").write_text("{not json", encoding="utf-8")
    return folder


def test_batch_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "_canonical_stem", lambda n: STEM if n == 99 else None)  # as in the course
    folder = _batch_folder(tmp_path)
    out = tmp_path / "graded"
    csv_path = submission.batch(folder, out)
    rows = {r["file"]: r for r in csv.DictReader(open(csv_path, encoding="utf-8"))}
    assert set(rows) == {f"{STEM}_1001.ipynb", "ada.ipynb", "grace.ipynb", "broken.ipynb"}
    assert rows["broken.ipynb"]["status"].startswith("error")
    assert (rows["ada.ipynb"]["name"], rows["ada.ipynb"]["student_id"]) == ("Ada Lovelace", "1002")
    assert (rows["grace.ipynb"]["name"], rows["grace.ipynb"]["student_id"]) == ("Grace Hopper", "1003")
    assert rows[f"{STEM}_1001.ipynb"]["student_id"] == "1001"
    assert [rows["ada.ipynb"][f"99.{m}"] for m in range(1, 6)] == ["1", "0", "0", "1", "0"]
    assert [rows["grace.ipynb"][f"99.{m}"] for m in range(1, 6)] == ["1", "0", "1", "1", "0"]
    assert sorted(p.name for p in out.glob("*.pdf")) == [f"{STEM}_{i}.pdf" for i in (1001, 1002, 1003)]
    # a second run does not overwrite: it says so in the CSV
    rows = list(csv.DictReader(open(submission.batch(folder, out), encoding="utf-8")))
    assert all(r["status"].startswith(("exists", "error")) for r in rows)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "helpers.submission", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli(tmp_path):
    nb = make_notebook(tmp_path)
    r = _cli(str(nb), "--name", NAME, "--id", "77", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pdf = tmp_path / f"{STEM}_77.pdf"
    assert images(pdf) == (2, 3)
    r = _cli(str(nb), "--name", NAME, "--id", "77", cwd=tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert _cli(str(nb), "--name", NAME, "--id", "77", "--overwrite", "--out", "x.pdf", cwd=tmp_path).returncode == 0
    assert (tmp_path / "x.pdf").exists()
    folder = _batch_folder(tmp_path)
    r = _cli("--batch", str(folder), "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert r.returncode == 1  # broken.ipynb failed; the others were built
    assert (tmp_path / "b" / "answers.csv").exists() and len(list((tmp_path / "b").glob("*.pdf"))) == 3


def test_every_solution_question_has_the_points_and_note_of_tools_course() -> None:
    """helpers.submission parses each question header like tools/course.py (2.4 is '*(5 points, homework)*': its
    points were None and missing from the PDF's total)."""
    import importlib.util

    import nbformat

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("_course_tool", root / "tools" / "course.py")
    course = importlib.util.module_from_spec(spec)
    sys.modules["_course_tool"] = course
    spec.loader.exec_module(course)
    from helpers import submission

    paths = sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert paths
    for path in paths:
        ours = submission.read_questions(path)
        theirs = course.parse(nbformat.read(path, as_version=4), path).questions
        assert [(q.number, q.points, q.note) for q in ours] == [(q.number, float(q.points), q.note) for q in theirs]
        assert all(q.points is not None for q in ours), path.name
    two = {q.number: q for q in submission.read_questions(root / "solutions" / "02_attention.ipynb")}
    assert (two["2.4"].points, two["2.4"].note) == (5.0, "homework")
    assert pdf._points(5.0, "homework") == " (5 points, homework)"


def test_words_wrap_whole_across_styled_runs(tmp_path) -> None:
    """fpdf's write() broke a word that did not fit at the end of a line in the middle ("sensit / ivity") when a
    styled run (bold, italic, code) started on that line; words must wrap whole."""
    words = ["sensitivity", "completeness", "forward", "attribution", "gradient", "saliency", "baseline"]
    parts = []
    for i in range(60):
        w = words[i % len(words)]
        parts.append(f"**{w}**" if i % 5 == 0 else f"`{w}`" if i % 7 == 0 else f"*{w}*" if i % 3 == 0 else w)
    nb = new_notebook()
    nb.cells = [new_markdown_cell("# 99 · Wrapping"), new_markdown_cell("**TOSUBMIT 99.1** *(1 point)* Wrap."),
                new_markdown_cell(" ".join(parts) + ".")]
    path = tmp_path / f"{STEM}.ipynb"
    nbformat.write(nb, path)
    _, pages = pdf_text(submission.build_pdf(path, NAME, "s1"))
    text = "\n".join(pages)
    body = text[text.index("Wrap.") + len("Wrap."):]
    tokens = [t.strip(".") for t in body.split() if t.strip(".")]
    broken = [t for t in tokens if t.isalpha() and t.islower() and t not in words + ["page"]]  # body: lower-case
    assert not broken, f"words broken at line ends: {broken[:6]}"
    assert sum(t in words for t in tokens) == 60


def test_batch_points_sheet_and_summary(tmp_path, monkeypatch):
    """Batch mode also writes the grader's sheet (max points, 0 where not answered, empty where to grade) and a
    summary of who answered what."""
    monkeypatch.setattr(reading, "_canonical_stem", lambda n: STEM if n == 99 else None)
    folder = _batch_folder(tmp_path)
    out = tmp_path / "graded"
    submission.batch(folder, out)
    with open(out / "points.csv", encoding="utf-8") as f:
        sheet = list(csv.DictReader(f))
    assert list(sheet[0]) == ["file", "name", "student_id", "notebook"] + [f"99.{m}" for m in range(1, 6)] + ["total"]
    top, students = sheet[0], {r["student_id"]: r for r in sheet[1:]}
    assert top["file"] == "(max points)" and [top[f"99.{m}"] for m in range(1, 6)] == ["2", "1", "3", "2", "1"]
    assert top["total"] == "9"
    assert set(students) == {"1001", "1002", "1003"}  # broken.ipynb has no row to grade
    assert [students["1002"][f"99.{m}"] for m in range(1, 6)] == ["", "0", "0", "", "0"]  # Ada left 99.3 empty
    assert [students["1003"][f"99.{m}"] for m in range(1, 6)] == ["", "0", "", "", "0"]
    assert all(r["total"] == "" for r in students.values())
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "3 of 4 notebooks read." in summary
    assert "| 99.3 | 2 of 3 | Ada Lovelace (1002) |" in summary
    assert "| 99.1 | 3 of 3 | - |" in summary
    assert "| Ada Lovelace (1002) | ada.ipynb | 2 of 5 | 99.2, 99.3, 99.5 |" in summary
    assert "broken.ipynb: error" in summary


def test_table_and_formulas_in_an_answer(tmp_path):
    """A Markdown table and display math in an answer reach the PDF: the table's cells as text, a formula that
    mathtext can draw as an image, one it cannot (an environment) as readable text."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("**TOSUBMIT 99.1** *(2 points)* Compare the methods."),
        new_markdown_cell("| method | deletion AUC |\n| --- | --- |\n| Grad-CAM | 0.31 |\n| IG | 0.27 |\n\n"
                          "Completeness:\n\n$$\\sum_i \\phi_i = f(x) - f(x^\\prime)$$\n\n"
                          "$$\\begin{aligned} a &= \\alpha \\end{aligned}$$\n\nDone."),
    ]
    path = tmp_path / "99_formula.ipynb"
    nbformat.write(nb, path)
    reader, pages = pdf_text(submission.build_pdf(path, NAME, "5"))
    text = "\n".join(pages)
    for cell in ("method", "deletion AUC", "Grad-CAM", "0.31", "IG", "0.27"):
        assert cell in text, cell
    assert images(reader) == (0, 1)  # the drawn formula
    assert "∑" not in text  # drawn, not written as text
    assert "a = α" in text and "aligned" not in text and "$" not in text  # the fallback: readable text
    assert mathrender.render(r"\frac{a}{b}") is not None
    assert mathrender.render(r"\begin{aligned} a \end{aligned}") is None


# -- read-back checks of tables, formulas and line breaking, each shown to reject a known-wrong rendering ----------

TABLE = [["method", "deletion", "seconds"], ["gradcam", "0.31", "1.5"], ["saliency", "0.44", "0.2"],
         ["occlusion", "0.27", "40"]]
FORMULAS = ("Inline $\\alpha_i = \\frac{\\partial f}{\\partial x_i}$ and $x^2$ in a line, one mathtext cannot draw: "
            "$\\begin{cases} z \\end{cases}$.\n\n$$\\sum_i \\phi_i = f(x) - f(x^\\prime)$$\n\n"
            "$$\\begin{aligned} b &= \\beta \\end{aligned}$$\n\nEnd.")


def _answer_pdf(tmp_path: Path, answer: str, name: str = "answer") -> Path:
    nb = new_notebook()
    nb.cells = [new_markdown_cell("# 99 · Read-back"), new_markdown_cell("**TOSUBMIT 99.1** *(1 point)* Q."),
                new_markdown_cell(answer)]
    path = tmp_path / f"99_{name}.ipynb"
    nbformat.write(nb, path)
    return submission.build_pdf(path, NAME, "s1", out=tmp_path / f"{name}.pdf", overwrite=True)


def _table_problems(pdf_path: Path) -> list[str]:
    """What is wrong with TABLE in the PDF: a cell missing, the cells out of row-major order, Markdown left."""
    text = "\n".join(pdf_text(pdf_path)[1])
    body = text[text.index("Answer"):]
    problems = [f"markup left: {m!r}" for m in ("|", "---") if m in body]
    tokens = body.split()
    cells = [c for row in TABLE for c in row]
    missing = [c for c in cells if c not in tokens]
    if missing:
        return problems + [f"cells missing: {missing}"]
    order = [tokens.index(c) for c in cells]
    if order != sorted(order):
        problems.append(f"cells out of order: {[tokens[i] for i in sorted(order)]}")
    return problems


def _table_md() -> str:
    rows = ["| " + " | ".join(r) + " |" for r in TABLE]
    return "\n".join([rows[0], "| --- | :-: | ---: |", *rows[1:]])


def test_table_cells_read_back_in_order(tmp_path, monkeypatch):
    assert _table_problems(_answer_pdf(tmp_path, "Before.\n\n" + _table_md() + "\n\nAfter.")) == []
    # known-wrong renderings fail the check: a parser without tables (the Markdown printed as text) ...
    import mistune

    from helpers.submission import markdown, writer

    monkeypatch.setattr(markdown, "_parser", lambda: mistune.create_markdown(renderer=None, plugins=["math"]))
    assert any("markup" in p for p in _table_problems(_answer_pdf(tmp_path, _table_md(), "raw")))
    monkeypatch.undo()
    # ... and a table written column by column
    original = writer.Writer._table

    def transposed(self, tok, color):
        head, body = tok["children"][0], tok["children"][1]
        rows = [head["children"]] + [r["children"] for r in body["children"]]
        columns = [list(col) for col in zip(*rows, strict=True)]
        body = [{"type": "table_row", "children": c} for c in columns[1:]]
        tok = {"type": "table", "children": [{"type": "table_head", "children": columns[0]},
                                             {"type": "table_body", "children": body}]}
        original(self, tok, color)

    monkeypatch.setattr(writer.Writer, "_table", transposed)
    assert any("order" in p for p in _table_problems(_answer_pdf(tmp_path, _table_md(), "transposed")))


def _formula_problems(pdf_path: Path) -> list[str]:
    """What is wrong with FORMULAS in the PDF: the three drawable formulas must be images (inline ones too), the
    two that mathtext cannot draw readable text, and no TeX source left."""
    reader, pages = pdf_text(pdf_path)
    text = "\n".join(pages)
    problems = []
    if images(reader) != (0, 3):
        problems.append(f"(figures, formulas) drawn: {images(reader)}, expected (0, 3)")
    for fallback in ("z", "b = β"):
        if fallback not in text.split("cannot draw:")[-1]:
            problems.append(f"fallback text {fallback!r} missing")
    for tex in ("\\", "$", "begin", "cases", "aligned", "∑", "α"):
        if tex in text:
            problems.append(f"TeX or text instead of a drawing: {tex!r}")
    return problems


def test_inline_and_display_formulas_drawn_with_text_fallback(tmp_path, monkeypatch):
    assert _formula_problems(_answer_pdf(tmp_path, FORMULAS)) == []
    from helpers.submission import writer

    # known-wrong renderings fail the check: every formula written as text (no mathtext) ...
    monkeypatch.setattr(writer, "render", lambda *a, **k: None)
    assert any("drawn" in p for p in _formula_problems(_answer_pdf(tmp_path, FORMULAS, "text")))
    monkeypatch.undo()
    # ... and formulas mathtext cannot draw silently dropped
    monkeypatch.setattr(writer, "latex_to_text", lambda tex: "")
    assert any("fallback" in p for p in _formula_problems(_answer_pdf(tmp_path, FORMULAS, "dropped")))


def test_inline_formula_sits_on_the_baseline():
    """An inline formula's image stands ``ascent`` above the baseline and ``depth`` below it, as mathtext laid it
    out: x (no depth) ends on the baseline, x_i reaches below it, and a tall fraction makes its line taller."""
    from helpers.submission import markdown, mathrender, writer

    x, xi, frac = (mathrender.render(t, writer.BODY_SIZE) for t in ("x", "x_i", "\\frac{a}{b}"))
    assert x.depth == pytest.approx(0, abs=0.05) and xi.depth > 0.2 and frac.ascent > x.ascent
    w = writer.Writer("footer")
    w.pdf.add_page()
    placed = []
    w.pdf.image = lambda data, x, y, w, h, link="": placed.append((y, h))  # where the line puts the images
    heights = []
    top0 = w.pdf.get_y()
    for tex in ("x", "x_i", "\\frac{a}{b}"):
        top = w.pdf.get_y()
        w.text(markdown.spans(markdown.parse(f"word ${tex}$ word")[0]["children"]), after=0)
        heights.append(w.pdf.get_y() - top)
    bottoms = [y + h for y, h in placed]
    depths = [f.depth for f in (x, xi, frac)]
    baselines = [b - d - sum(heights[:k]) for k, (b, d) in enumerate(zip(bottoms, depths, strict=True))]
    text_baseline = 0.5 * writer.LINE + 0.3 * writer.BODY_SIZE * 25.4 / 72  # where fpdf puts the words' baseline
    assert baselines[0] - top0 == pytest.approx(text_baseline, abs=0.01)  # x on the words' baseline
    assert baselines[0] == pytest.approx(baselines[1], abs=0.01)  # x_i too, its subscript below it
    assert heights[0] == pytest.approx(heights[1], abs=0.01) and heights[2] > heights[0]  # the fraction: taller


def _broken_words(pdf_path: Path, words: list[str]) -> list[str]:
    text = "\n".join(pdf_text(pdf_path)[1])
    body = text[text.index("Wrap.") + len("Wrap."):]
    tokens = [t.strip(".") for t in body.split() if t.strip(".")]
    return [t for t in tokens if t.isalpha() and t.islower() and t not in words + ["page"]]


def test_word_wrap_check_rejects_words_broken_at_line_ends(tmp_path, monkeypatch):
    """The check of test_words_wrap_whole_across_styled_runs fails on a layout that fills every line to the last
    character, as fpdf's write() did."""
    from helpers.submission import writer

    words = ["sensitivity", "completeness", "forward", "attribution"]
    nb = new_notebook()
    nb.cells = [new_markdown_cell("# 99 · Wrapping"), new_markdown_cell("**TOSUBMIT 99.1** *(1 point)* Wrap."),
                new_markdown_cell(" ".join(f"**{w}**" if i % 5 == 0 else w for i, w in enumerate(words * 15)))]
    path = tmp_path / f"{STEM}.ipynb"
    nbformat.write(nb, path)
    assert _broken_words(submission.build_pdf(path, NAME, "s1"), words) == []

    def fill_to_the_last_character(self, pieces, width):
        lines, used = [[]], 0.0
        for p in self._cut(pieces, 0.01):  # single characters
            if used + p.width > width:
                lines.append([])
                used = 0.0
            lines[-1].append(p)
            used += p.width
        return lines

    monkeypatch.setattr(writer.Writer, "_lines", fill_to_the_last_character)
    assert _broken_words(submission.build_pdf(path, NAME, "s1", overwrite=True), words)


BLOCKS = """## Heading of the answer

3. third point
4. fourth point
   1. nested one
   2. nested two

> quoted reasoning

Text with a [course link](https://example.org/course), ~~struck~~ text, a hard break\\
next line<br>after br, &amp; an entity.

<div>html block text</div>

---
Last words."""


def _block_problems(pdf_path: Path) -> list[str]:
    """What is wrong with BLOCKS in the PDF: each piece of text, in order, without markup; the ordered list numbered
    from its start; the link clickable."""
    reader, pages = pdf_text(pdf_path)
    text = "\n".join(pages)
    body = text[text.index("Answer"):]
    expected = ["Heading of the answer", "3.", "third point", "4.", "fourth point", "1.", "nested one", "2.",
                "nested two", "quoted reasoning", "Text with a course link,", "struck", "a hard break", "next line",
                "after br, & an entity.", "html block text", "Last words."]
    problems = [f"missing: {e!r}" for e in expected if e not in body]
    if not problems:
        positions = [body.index(e, body.index(expected[k - 1]) if k else 0) for k, e in enumerate(expected)]
        if positions != sorted(positions):
            problems.append("out of order")
    problems += [f"markup left: {m!r}" for m in ("##", ">", "~~", "<", "&amp;", "](", "---") if m in body]
    lines = body.splitlines()
    if not any(line.strip().endswith("a hard break") for line in lines):
        problems.append("no line break after 'a hard break'")
    uris = [a.get_object().get("/A", {}).get("/URI") for page in reader.pages for a in page.get("/Annots", [])]
    if "https://example.org/course" not in uris:
        problems.append(f"link not clickable: {uris}")
    return problems


def test_blocks_read_back(tmp_path, monkeypatch):
    """Headings, ordered and nested lists (numbered from their start), quotes, links, strikethrough, hard breaks,
    entities and HTML reach the PDF as text; a renderer that drops the list numbers fails the check."""
    assert _block_problems(_answer_pdf(tmp_path, BLOCKS)) == []
    from helpers.submission import writer

    def no_numbers(self, tok, images, color):
        tok = {**tok, "attrs": {**tok.get("attrs", {}), "ordered": False}}
        original(self, tok, images, color)

    original = writer.Writer._list
    monkeypatch.setattr(writer.Writer, "_list", no_numbers)
    assert any("missing: '3.'" in p for p in _block_problems(_answer_pdf(tmp_path, BLOCKS, "bullets")))


def test_inline_sums_keep_their_limits_beside():
    """In a line of text the limits of a sum or a max go beside the operator (LaTeX's text style), so the line does
    not grow as for a display formula; mathtext itself would set them below and above."""
    from helpers.submission import mathrender

    for tex in ("\\sum_{i=1}^{n} x_i", "\\prod_i p_i", "\\max_i x_i"):
        inline, display = (mathrender.render(tex, 10.5, inline=flag) for flag in (True, False))
        assert inline is not None and display is not None
        assert inline.height < 0.75 * display.height, tex
    assert mathrender.render("\\summa", 10.5, inline=True) is None  # a longer command name is not \sum


def test_inline_formula_wider_than_the_line_is_shrunk_to_it():
    from helpers.submission import markdown, writer

    w = writer.Writer("footer")
    w.pdf.add_page()
    placed = []
    w.pdf.image = lambda data, x, y, w, h, link="": placed.append((x, w))
    tex = " + ".join(f"x_{{{i}}}^2" for i in range(60))
    w.text(markdown.spans(markdown.parse(f"long ${tex}$ end")[0]["children"]))
    (x, width), = placed
    left = w.pdf.l_margin + w.pdf.c_margin
    assert x == pytest.approx(left) and width == pytest.approx(w.pdf.w - w.pdf.r_margin - w.pdf.c_margin - left)


def test_pdf_to_png_tool(tmp_path):
    """tools/pdf_to_png.py renders a submission PDF's pages (A4: about 1.41 times as tall as wide)."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.spec_from_file_location("_pdf_to_png", ROOT / "tools" / "pdf_to_png.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    pdf = _answer_pdf(tmp_path, FORMULAS)
    (png,) = tool.render_pages(pdf, tmp_path / "png", dpi=50)
    with Image.open(png) as img:
        assert img.height / img.width == pytest.approx(297 / 210, rel=0.01)
        assert img.convert("L").getextrema()[0] < 100  # something dark is drawn
    with pytest.raises(ValueError, match="no page 2"):
        tool.render_pages(pdf, tmp_path / "png", pages=[2])


def test_old_or_missing_mistune_says_what_to_install(monkeypatch):
    from helpers.submission import markdown

    markdown._parser.cache_clear()
    monkeypatch.setitem(sys.modules, "mistune", types.SimpleNamespace(__version__="2.0.5"))
    with pytest.raises(ImportError, match=r"mistune>=3.*found mistune 2\.0\.5"):
        markdown.parse("text")
    monkeypatch.setitem(sys.modules, "mistune", None)  # not installed
    markdown._parser.cache_clear()
    with pytest.raises(ImportError, match="pip install 'mistune>=3'"):
        markdown.parse("text")
    monkeypatch.undo()
    markdown._parser.cache_clear()
    assert markdown.parse("text")[0]["type"] == "paragraph"
