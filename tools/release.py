"""Write the student release of the course: everything students need, nothing that gives the answers away.

    python tools/release.py DIR     # (make release DIR=...)

``DIR`` receives ``notebooks/`` (the student copies), ``helpers/``, ``data/``, ``assignments.md``,
``requirements.txt``, ``LICENSE``, a ``README.md`` for students (``tools/README.student.md`` with the schedule filled
in) and a ``.gitignore``. Never ``solutions/``, the grading guide, ``tools/`` or ``tests/``. An instructor pushes
``DIR`` to the GitHub repository named in ``helpers/course.py`` (``GITHUB_SLUG``): the one the Colab badges open and
the setup cells clone.

* The course must be consistent first (``make check``): the student copies are then current.
* In a git work tree only tracked files are released, so unfinished, never-committed work stays out.
* ``DIR`` may be new, empty, a clone holding only ``.git``, or a previous release (the files that release wrote,
  listed in ``DIR/.course-release``, are replaced). Anything else is refused, so nothing of yours is overwritten.
* The written release is scanned for solution markers, rubrics and links to solutions; any hit is an error.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import course

ROOT = course.ROOT
RELEASE_DIRS = ("notebooks", "helpers", "data")
RELEASE_FILES = ("assignments.md", "requirements.txt", "LICENSE")
IGNORE = ("__pycache__", "*.pyc", ".ipynb_checkpoints", ".DS_Store")
MANIFEST = ".course-release"
TEMPLATE = Path(__file__).resolve().parent / "README.student.md"
GITIGNORE = ".venv/\n__pycache__/\n*.pyc\n.ipynb_checkpoints/\nsubmission_figures/\n*.pdf\n*_submission.ipynb\n"
#: text that must never be in a release's notebooks or Markdown files
FORBIDDEN = (course.BEGIN, course.END, "**Rubric.**", "**Model answer.**", "Grading guide", "solutions/")


class ReleaseError(Exception):
    """The release cannot be written (stale course, a foreign destination, a leak)."""


def _tracked(root: Path) -> set[str] | None:
    """Paths (relative, POSIX) tracked by git in ``root``, or ``None`` when ``root`` is not a git work tree."""
    try:
        r = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    if r.returncode != 0 or not (root / ".git").exists():
        return None
    return {p for p in r.stdout.split("\0") if p}


def release_sources(root: Path = ROOT) -> list[str]:
    """The files of ``root`` (relative, POSIX) that the release copies as they are (README and .gitignore aside)."""
    tracked = _tracked(root)
    out = []
    for name in RELEASE_FILES:
        if not (root / name).is_file():
            raise ReleaseError(f"{name} is missing in {root}")
        out.append(name)
    for folder in RELEASE_DIRS:
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root)
            if not path.is_file() or any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in IGNORE):
                continue
            out.append(rel.as_posix())
    if tracked is not None:
        out = [p for p in out if p in tracked]
    return out


def student_readme(root: Path = ROOT) -> str:
    """The release's README: the template with the course title, slug and the schedule (no solution column)."""
    c = course.constants
    infos = [info for _, _, info in course.read_solutions(root)]
    values = {
        "title": c.COURSE_TITLE,
        "slug": c.GITHUB_SLUG,
        "repo_name": c.GITHUB_SLUG.rsplit("/", 1)[-1],
        "colab_dir": c.COLAB_DIR,
    }
    text = TEMPLATE.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ReleaseError(f"{TEMPLATE.name}: unknown placeholder near {text[text.index('{{') :][:40]!r}")
    if "<!-- schedule -->" not in text:
        raise ReleaseError(f"{TEMPLATE.name} needs a '<!-- schedule -->' line where the schedule goes")
    schedule = "## Schedule\n\n" + course.schedule_table(infos, root, solutions=False)
    return text.replace("<!-- schedule -->", schedule)


def leaks(dest: Path) -> list[str]:
    """Where a release's notebooks or Markdown files hold solution markers, rubrics or links to solutions."""
    found = []
    for path in sorted(dest.rglob("*")):
        if path.suffix in (".ipynb", ".md") and ".git" not in path.relative_to(dest).parts:
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(dest)}: {word!r}" for word in FORBIDDEN if word in text]
    if (dest / "solutions").exists():
        found.append("solutions/ exists")
    return found


def _clear_destination(dest: Path, root: Path) -> None:
    """Make ``dest`` ready: remove what a previous release wrote; refuse (changing nothing) if anything else is there,
    ``.git`` aside."""
    dest_r, root_r = dest.resolve(), root.resolve()
    if dest_r == root_r or root_r.is_relative_to(dest_r):
        raise ReleaseError(f"{dest} is the course itself or a folder above it: choose another folder")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ReleaseError(f"{dest} exists and is not a folder")
    manifest = dest / MANIFEST
    listed = set(manifest.read_text(encoding="utf-8").splitlines()) if manifest.exists() else set()
    files = [p for p in dest.rglob("*") if ".git" not in p.relative_to(dest).parts and not p.is_dir()]
    foreign = sorted(p.relative_to(dest).as_posix() for p in files if p != manifest)
    foreign = [rel for rel in foreign if rel not in listed]
    if foreign:
        raise ReleaseError(
            f"{dest} holds files that no release wrote ({', '.join(foreign[:5])}): give an empty folder, a fresh "
            "clone of the student repository, or a previous release"
        )
    for path in files:
        path.unlink()
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir() and ".git" not in p.relative_to(dest).parts),
                         reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def write_release(dest: Path, root: Path = ROOT, require_consistent: bool = True) -> list[str]:
    """Write the student release of ``root`` into ``dest``; returns the files written (relative, POSIX)."""
    if require_consistent:
        problems = course.check(root)
        if problems:
            raise ReleaseError("the course is not consistent, run `make course` first:\n  " + "\n  ".join(problems))
    sources = release_sources(root)
    readme = student_readme(root)
    _clear_destination(dest, root)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sources:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    assignments = dest / "assignments.md"  # without the maintainers' "generated from solutions/" note
    assignments.write_text(assignments.read_text(encoding="utf-8").replace(course.GENERATED + "\n\n", ""), "utf-8")
    (dest / "README.md").write_text(readme, encoding="utf-8")
    (dest / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    written = sorted([*sources, "README.md", ".gitignore"])
    (dest / MANIFEST).write_text("\n".join(written) + "\n", encoding="utf-8")
    found = leaks(dest)
    if found:
        raise ReleaseError("the release would give answers away:\n  " + "\n  ".join(found))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", type=Path, help="folder to write the release into (e.g. a clone of the student repo)")
    p.add_argument("--root", type=Path, default=ROOT, help="the course (default: this repository)")
    args = p.parse_args(argv)
    try:
        written = write_release(args.dest, args.root)
    except (ReleaseError, course.CourseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    slug = course.constants.GITHUB_SLUG
    print(f"wrote the student release ({len(written)} files) to {args.dest}")
    print(f"next: commit it and push it to https://github.com/{slug} (the repository the badges open)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
