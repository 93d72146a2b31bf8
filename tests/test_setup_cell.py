"""The generated setup cell, run as Colab would run it (a stand-in google.colab module, a local clone source) and
locally. Also helpers.install, which installs only what Colab lacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import install
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import course  # noqa: E402


@pytest.fixture(scope="module")
def colab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("colab")
    # a stand-in google.colab module
    (base / "fake" / "google" / "colab").mkdir(parents=True)
    (base / "fake" / "google" / "__init__.py").write_text("")
    (base / "fake" / "google" / "colab" / "__init__.py").write_text("STAND_IN = True\n")
    # a local clone source holding the course's helpers and requirements
    src = base / "source"
    src.mkdir()
    shutil.copytree(ROOT / "helpers", src / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "requirements.txt", src / "requirements.txt")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(src)], check=True)
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-q", "-m", "course"], check=True)
    work = base / "content"
    work.mkdir()
    return {"base": base, "fake": base / "fake", "src": src, "work": work, "clone": work / "course"}


def _run_setup(colab: dict, cwd: Path, colab_mode: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XAI_")}
    env.update(XAI_OFFLINE="1", XAI_COURSE_DIR=str(colab["clone"]), XAI_COURSE_REPO_URL=str(colab["src"]))
    env["PYTHONPATH"] = str(colab["fake"]) if colab_mode else ""
    code = course.setup_source(ROOT) + "\nprint('ROOT=' + str(ROOT))\n"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_colab_first_run_clones_and_imports(colab: dict) -> None:
    r = _run_setup(colab, colab["work"])
    assert r.returncode == 0, r.stderr
    assert (colab["clone"] / "helpers" / "course.py").exists()
    assert "Running Google Colab" in r.stdout and "RANDOM weights" in r.stdout
    assert f"ROOT={colab['clone']}" in r.stdout
    assert "Installing:" not in r.stdout, "everything is installed here: nothing should be pip-installed"


def test_colab_rerun_is_safe_and_keeps_student_files(colab: dict) -> None:
    _run_setup(colab, colab["work"])
    head = subprocess.run(
        ["git", "-C", str(colab["clone"]), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    (colab["clone"] / "my_notes.txt").write_text("mine")
    (colab["clone"] / "helpers" / "course.py").write_text((colab["clone"] / "helpers" / "course.py").read_text() + "#")
    start = time.perf_counter()
    r = _run_setup(colab, colab["work"])
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - start < 60
    assert (colab["clone"] / "my_notes.txt").read_text() == "mine"
    assert (colab["clone"] / "helpers" / "course.py").read_text().endswith("#"), "an existing clone was overwritten"
    head2 = subprocess.run(
        ["git", "-C", str(colab["clone"]), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    assert head == head2


def test_colab_refuses_a_foreign_folder(colab: dict, tmp_path: Path) -> None:
    foreign = tmp_path / "taken"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    env_colab = dict(colab, clone=foreign)
    r = _run_setup(env_colab, colab["work"])
    assert r.returncode != 0 and "exists but is not the course" in r.stderr
    assert [p.name for p in foreign.iterdir()] == ["thesis.docx"]


def test_local_run_finds_the_repository() -> None:
    r = _run_setup(
        {"clone": Path("/nonexistent"), "src": Path("/nonexistent"), "fake": Path("/nonexistent")},
        ROOT / "notebooks",
        colab_mode=False,
    )
    assert r.returncode == 0, r.stderr
    assert f"ROOT={ROOT}" in r.stdout and "Running local" in r.stdout


def test_local_run_outside_the_repository_fails_clearly(tmp_path: Path) -> None:
    r = _run_setup({"clone": Path("/x"), "src": Path("/x"), "fake": Path("/x")}, tmp_path, colab_mode=False)
    assert r.returncode != 0 and "Course folder not found" in r.stderr


def test_install_detects_missing_and_never_touches_torch(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# comment\ntorch>=99\nnumpy>=99\nno-such-package-xyz>=1.0  # trailing comment\n"
        "captum>=0.9\ncaptum-too-new>=1\ngrad-cam>=999\n-r other.txt\n"
    )
    missing = install.missing_requirements(req)
    assert "no-such-package-xyz>=1.0" in missing and "grad-cam>=999" in missing
    assert not any(m.startswith(("torch", "numpy", "captum>=")) for m in missing)


def test_course_requirements_are_all_satisfied_here() -> None:
    assert install.missing_requirements(ROOT / "requirements.txt") == []


@pytest.mark.parametrize(
    ("requirement", "installed", "expected"),
    [
        ("captum>=0.9", "0.9.0", True),
        ("captum>=0.9", "0.8.9", False),
        ("x~=1.5", "1.9.3", True),  # ~=1.5 means >=1.5, ==1.*
        ("x~=1.5", "2.0", False),
        ("x~=1.5", "1.4.9", False),
        ("x~=1.5.2", "1.5.9", True),  # ~=1.5.2 means >=1.5.2, ==1.5.*
        ("x~=1.5.2", "1.6.0", False),
        ("x==1.5", "1.5.0", True),
        ("x==1.5", "1.5.1", False),  # not a prefix match
        ("x==1.5.*", "1.5.1", True),
        ("x==1.5.*", "1.50", False),
        ("x!=1.5", "1.5.0", False),
        ("x!=1.5", "1.5.1", True),
        ("x!=1.5.*", "1.5.7", False),
        ("kornia>=0.4.1,<0.5", "0.4.1", True),  # several clauses: all must hold
        ("kornia>=0.4.1,<0.5", "0.5.0", False),
        ("kornia>=0.4.1,<0.5", "0.4.0", False),
        ("x>=1.0", "2.0.0rc1", True),  # an installed pre-release in the range counts
        ("x>=2.0", "2.0.0rc1", False),  # ... but 2.0.0rc1 < 2.0
        ("torch>=2.2", "2.10.0+cu126", True),  # Colab's local build labels
        ("x>=1.0", "not-a-version", False),
        ("x", "not-a-version", True),
        ("x>=1.0", None, False),
        ("x", None, False),
    ],
)
def test_install_decision_follows_pep_440(requirement: str, installed: str | None, expected: bool) -> None:
    assert install.requirement_satisfied(requirement, installed) is expected


def test_install_normalises_names_and_skips_markers(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(
        "Scikit_Image>=0.1\nNumPy>=99\nTorchVision>=99\nIPyWidgets>=7.7\nPillow>=1\n"
        'never-here-xyz>=1; python_version < "3"\nGRAD_CAM>=1.0\nGrad.Cam>=999\n'
    )
    assert install.missing_requirements(req) == ["Grad.Cam>=999"]  # found (as pytorch_grad_cam), but too old


def test_install_rejects_a_malformed_line(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("captum>=0.9\ncaptum >>= 1\n")
    with pytest.raises(ValueError, match=r"line 2: not a requirement"):
        install.read_requirements(req)


def test_install_without_packaging_says_what_to_do(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['packaging'] = None\n"  # makes `import packaging` fail
        "from helpers import install\n"
        f"install.missing_requirements({str(ROOT / 'requirements.txt')!r})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "needs the Python package 'packaging'" in r.stderr and "pip install packaging" in r.stderr
