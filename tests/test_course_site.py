"""tools/course_site.py: what goes on the course site, checked without Sphinx (``make site`` runs the real build in
CI, from the smoke runs of ``make test``)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import course_site

SETUP_OUT = "Running local on CPU (2 threads); torch 2.14.1; modes: {modes}; seed 0\n"


def _executed(title: str, modes: str = "SMOKE, OFFLINE", extra_md: str = "", solution: bool = False):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\n**Time:** ~40 min\n\n{extra_md}"))
    code = nbformat.v4.new_code_cell("import helpers")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=SETUP_OUT.format(modes=modes))]
    if "OFFLINE" in modes:
        code.outputs.append(
            nbformat.v4.new_output("stream", name="stdout", text="WARNING: 'resnet18' uses RANDOM weights\n")
        )
    code.metadata["execution"] = {
        "iopub.execute_input": "2026-12-06T10:00:00.000000Z",
        "shell.execute_reply": "2026-12-06T10:00:02.500000Z",
    }
    nb.cells.append(code)
    if solution:
        nb.cells.append(nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"))
    return nb


@pytest.fixture
def course(tmp_path: Path) -> tuple[Path, Path]:
    """A course root with two solution notebooks and assignments.md, and a folder of their executed copies."""
    root = tmp_path / "root"
    (root / "solutions").mkdir(parents=True)
    executed = tmp_path / "executed"
    executed.mkdir()
    for name, title in (("00_intro.ipynb", "00 · Intro"), ("01_next.ipynb", "01 · Next")):
        nbformat.write(nbformat.v4.new_notebook(), root / "solutions" / name)
        nbformat.write(_executed(title), executed / name)
    (root / "assignments.md").write_text("# Assignments\n\n[00](notebooks/00_intro.ipynb)\n")
    return root, executed


def test_describe_reads_title_time_modes_and_run_time() -> None:
    page = course_site.describe(_executed("03 · Gradients"), "03_gradients.ipynb")
    assert (page.number, page.title, page.time) == (3, "Gradients", "~40 min")
    assert page.modes == ["SMOKE", "OFFLINE"] and page.random_weights
    assert page.run_seconds == pytest.approx(2.5)
    normal = course_site.describe(_executed("03 · Gradients", modes="normal"), "03_gradients.ipynb")
    assert normal.modes == [] and not normal.random_weights


def test_describe_refuses_an_unexecuted_notebook() -> None:
    nb = _executed("03 · Gradients")
    nb.cells[1].outputs = []
    with pytest.raises(course_site.SiteError, match="not executed"):
        course_site.describe(nb, "03_gradients.ipynb")


def test_offline_pages_are_labelled_and_class_mode_pages_are_not() -> None:
    offline = course_site.banner(course_site.describe(_executed("03 · G"), "03_g.ipynb"))
    assert "random weights" in offline and "Smoke run" in offline
    normal = course_site.banner(course_site.describe(_executed("03 · G", modes="normal"), "03_g.ipynb"))
    assert "random weights" not in normal and "Class-mode run" in normal


def test_rewrite_links() -> None:
    pages = {"00_intro.ipynb", "01_next.ipynb"}
    rw = lambda text, allow=False: course_site.rewrite_links(text, pages, "o/r", "main", "here", allow)  # noqa: E731
    assert rw("see [01](01_next.ipynb#sec)") == "see [01](01_next.ipynb#sec)"
    assert rw("see [01](../notebooks/01_next.ipynb)") == "see [01](01_next.ipynb)"
    assert rw("[b](../docs/benchmarks.md)") == "[b](https://github.com/o/r/blob/main/docs/benchmarks.md)"
    assert rw("[web](https://example.org/x.md) and [a](#anchor)") == "[web](https://example.org/x.md) and [a](#anchor)"
    with pytest.raises(course_site.SiteError, match="solution"):
        rw("[s](../solutions/01_next.ipynb)")
    assert rw("[s](../solutions/01_next.ipynb)", allow=True) == "[s](01_next.ipynb)"
    with pytest.raises(course_site.SiteError, match="points to nothing"):
        rw("[x](nowhere/file.txt)")


def test_prepare_writes_pages_index_and_assignments(course: tuple[Path, Path], tmp_path: Path) -> None:
    root, executed = course
    source = tmp_path / "src"
    pages = course_site.prepare(executed, source, root=root)
    assert [p.name for p in pages] == ["00_intro.ipynb", "01_next.ipynb"]
    index = (source / "index.md").read_text()
    assert "[Intro](00_intro.ipynb) | ~40 min | 2 s" in index and "toctree" in index and "random weights" in index
    assert "(00_intro.ipynb)" in (source / "assignments.md").read_text()
    page = nbformat.read(source / "01_next.ipynb", 4)
    assert "How this page was run" in page.cells[1].source and "random weights" in page.cells[1].source
    assert (source / "conf.py").exists()


def test_prepare_refuses_solutions_and_missing_notebooks(course: tuple[Path, Path], tmp_path: Path) -> None:
    root, executed = course
    nbformat.write(_executed("01 · Next", solution=True), executed / "01_next.ipynb")
    with pytest.raises(course_site.SiteError, match="holds solutions"):
        course_site.prepare(executed, tmp_path / "src", root=root)
    course_site.prepare(executed, tmp_path / "src", allow_solutions=True, root=root)  # the instructors' private site
    (executed / "01_next.ipynb").unlink()
    with pytest.raises(course_site.SiteError, match="missing executed notebooks: 01_next.ipynb"):
        course_site.prepare(executed, tmp_path / "src", root=root)


def test_broken_links_finds_a_missing_local_file(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(
        '<a href="b.html#x">ok</a><img src="_images/gone.png"><a href="https://x.org/y">web</a><a href="#top">t</a>'
    )
    (tmp_path / "b.html").write_text("<p>b</p>")
    assert course_site.broken_links(tmp_path) == ["a.html -> _images/gone.png"]
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "gone.png").write_bytes(b"")
    assert course_site.broken_links(tmp_path) == []


def test_every_course_notebook_is_a_page() -> None:
    names = course_site.course_notebooks()
    assert names and all(n.endswith(".ipynb") for n in names)
    assert names == sorted(p.name for p in (course_site.ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
