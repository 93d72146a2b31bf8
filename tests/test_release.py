"""tools/release.py: the student release holds no solution text, refuses to overwrite, and its notebooks run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import course  # noqa: E402
import release  # noqa: E402

MIN_LINE = 12  # shorter solution lines ("return x", "b, c = x.shape") may legitimately appear elsewhere


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("release") / "student-repo"
    # the repository's own consistency is test_course_tool.test_repository_is_consistent; here: what is released
    release.write_release(dest, ROOT, require_consistent=False)
    return dest


def _solution_text(path: Path) -> tuple[set[str], set[str]]:
    """(code lines, answer lines) found only between the solution markers of a solution notebook."""
    nb = nbformat.read(path, as_version=4)
    inside: dict[str, set[str]] = {"code": set(), "markdown": set()}
    outside: set[str] = set()
    for cell in nb.cells:
        for is_solution, lines in course._split_regions(cell.source, path.name):
            for line in lines:
                s = line.strip()
                if s in (course.BEGIN, course.END):
                    continue
                (inside[cell.cell_type] if is_solution else outside).add(s)
    keep = lambda lines: {s for s in lines - outside if len(s) >= MIN_LINE}  # noqa: E731
    return keep(inside["code"]), keep(inside["markdown"])


def _text_files(dest: Path) -> dict[str, str]:
    return {
        p.relative_to(dest).as_posix(): p.read_text(encoding="utf-8")
        for p in dest.rglob("*")
        if p.is_file() and p.suffix in (".ipynb", ".md", ".py", ".txt", ".json")
    }


def test_release_has_the_student_files_only(released: Path) -> None:
    top = sorted(p.name for p in released.iterdir())
    assert top == sorted(
        [".course-release", ".gitignore", "LICENSE", "README.md", "assignments.md", "data", "helpers", "notebooks",
         "requirements.txt"]
    )
    tracked = release._tracked(ROOT)
    expected = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb") if tracked is None
                      or f"notebooks/{p.name}" in tracked)
    assert sorted(p.name for p in (released / "notebooks").glob("*.ipynb")) == expected
    assert (released / "helpers" / "course.py").exists() and (released / "data" / "checkpoints").is_dir()
    assert not list(released.rglob("__pycache__"))
    assert not (released / "solutions").exists() and not (released / "tools").exists()


def test_release_holds_no_solution_text(released: Path) -> None:
    files = _text_files(released)
    notebooks = {k: v for k, v in files.items() if k.endswith(".ipynb")}
    sources = {k: "\n".join(c.source for c in nbformat.reads(v, as_version=4).cells) for k, v in notebooks.items()}
    n_code = n_answer = 0
    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        code, answers = _solution_text(path)
        n_code, n_answer = n_code + len(code), n_answer + len(answers)
        # its own student copy (helpers hold reference implementations, and idioms recur across notebooks)
        shown = [s for s in code if s in sources.get(f"notebooks/{path.name}", "")]
        assert not shown, f"notebooks/{path.name} holds its solution code: {shown[:3]}"
        for name, text in files.items():
            shown = [s for s in answers if s in text]
            assert not shown, f"{name} holds model answers of {path.name}: {shown[:3]}"
    assert n_code > 50 and n_answer > 50, "the solution notebooks' text was not found: the test would prove nothing"
    for name, text in files.items():
        for word in ("Grading guide", "**Rubric.**", "**Model answer.**", course.BEGIN, course.END):
            if name != "helpers/convention.py":  # it defines the markers (the PDF drops them)
                assert word not in text, f"{name} contains {word!r}"


def test_release_links_no_solution(released: Path) -> None:
    for name, text in _text_files(released).items():
        if name.endswith((".md", ".ipynb")):
            assert "solutions/" not in text and "[solution]" not in text, name


def test_student_readme(released: Path) -> None:
    text = (released / "README.md").read_text()
    c = course.constants
    assert text.startswith(f"# {c.COURSE_TITLE}\n") and "{{" not in text
    assert f"https://github.com/{c.GITHUB_SLUG}.git" in text
    for path in sorted((released / "notebooks").glob("*.ipynb")):
        assert f"github/{c.GITHUB_SLUG}/blob/{c.GITHUB_REF}/notebooks/{path.name}" in text
    assert "| # | Notebook | Time | Open in Colab |\n" in text


def test_release_leak_scan_can_fail(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "x.md").write_text(f"{course.BEGIN}\nanswer\n{course.END}\n")
    assert release.leaks(tmp_path) == [f"notebooks/x.md: {course.BEGIN!r}", f"notebooks/x.md: {course.END!r}"]


def test_release_refuses_a_foreign_folder_and_replaces_its_own(tmp_path: Path) -> None:
    dest = tmp_path / "repo"
    (dest / ".git").mkdir(parents=True)  # a fresh clone: allowed
    release.write_release(dest, ROOT, require_consistent=False)
    (dest / "notebooks" / "99_stale.ipynb").write_text("{}")  # not in the manifest: a file of someone else's
    with pytest.raises(release.ReleaseError, match="no release wrote"):
        release.write_release(dest, ROOT, require_consistent=False)
    (dest / "notebooks" / "99_stale.ipynb").unlink()
    manifest = (dest / release.MANIFEST).read_text()
    (dest / release.MANIFEST).write_text(manifest + "notebooks/98_old.ipynb\n")
    (dest / "notebooks" / "98_old.ipynb").write_text("{}")  # written by an earlier release: replaced
    release.write_release(dest, ROOT, require_consistent=False)
    assert not (dest / "notebooks" / "98_old.ipynb").exists() and (dest / ".git").is_dir()
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "thesis.docx").write_text("precious")
    with pytest.raises(release.ReleaseError, match="no release wrote"):
        release.write_release(other, ROOT, require_consistent=False)
    assert [p.name for p in other.iterdir()] == ["thesis.docx"]
    with pytest.raises(release.ReleaseError, match="the course itself"):
        release.write_release(ROOT, ROOT, require_consistent=False)


def test_release_refuses_a_stale_course(tmp_path: Path) -> None:
    root = tmp_path / "course"
    for name in ("helpers", "solutions", "notebooks"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*05*"))
    for name in ("README.md", "LICENSE", "requirements.txt", "assignments.md"):
        shutil.copy(ROOT / name, root / name)
    (root / "data").mkdir()
    (root / "assignments.md").write_text("stale\n")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), str(tmp_path / "out"), "--root",
                        str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not consistent" in r.stderr and "assignments.md is stale" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.notebook
def test_released_notebook_runs_from_the_release(released: Path, fake_data_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Notebook 00 executes in smoke + offline mode from the release folder, with the release's helpers."""
    path = released / "notebooks" / "00_getting_started.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import helpers\nprint('ROOT=' + str(ROOT), helpers.__file__)"))
    for key, value in {"XAI_SMOKE": "1", "XAI_OFFLINE": "1", "XAI_STRICT": "0", "XAI_DATA_DIR": str(fake_data_dir),
                       "PYTHONHASHSEED": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=600, startup_timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"ROOT={released}" in last and str(released / "helpers") in last
    text = json.dumps([c.get("outputs", []) for c in nb.cells], ensure_ascii=False)
    assert "⏳ TODO" in text and "RANDOM" in text


@pytest.mark.notebook
def test_release_smoke_runs_without_cifar10(released: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's promise: smoke + offline runs need no download. Without CIFAR-10 on disk (an empty
    XAI_DATA_DIR; the test suite's fake data is not in the release), notebook 05 loads its data, the generated
    stand-in of helpers.data, and says so. Its cells up to the first use of the data are run."""
    path = released / "notebooks" / "05_lime.ipynb"
    nb = nbformat.read(path, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "data.cifar10_tensors(" in c.source)
    nb.cells = nb.cells[: first + 1]
    nb.cells.append(nbformat.v4.new_code_cell("print('loaded', tuple(images_u8.shape), data.__file__)"))
    empty = tmp_path / "no-data"
    empty.mkdir()
    for key, value in {"XAI_SMOKE": "1", "XAI_OFFLINE": "1", "XAI_STRICT": "0", "XAI_DATA_DIR": str(empty),
                       "PYTHONHASHSEED": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=600, startup_timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "SMOKE + OFFLINE mode uses a generated STAND-IN" in text, text[-2000:]
    assert "loaded (" in text and str(released / "helpers" / "data.py") in text
    assert not any(empty.iterdir()), "the stand-in is generated in memory, never written into the data folder"
