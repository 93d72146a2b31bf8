"""The Colab stand-in check: every student and solution notebook, run as a student on Colab would run it.

    python tools/colab_standin.py [--only 02 04] [--rebuild]     # (make colab-standin)

1. A Python 3.13 virtual environment with Colab's preinstalled packages (``tools/colab_versions.txt``), built once
   and cached in ``$XAI_STANDIN_CACHE`` (default ``~/.cache/xai-course/colab-standin``), keyed by a hash of the
   versions file and the interpreter. Every run works on a hard-linked copy, so what the setup cells install never
   reaches the cache: each run starts from "Colab as preinstalled".
2. A stand-in ``google.colab`` module, and the student release (``tools/release.py``) committed to a local git
   repository that the real setup cell clones (``XAI_COURSE_REPO_URL``) into ``content/explaining-vision-models``.
3. Each notebook is copied to ``content/`` (on Colab a notebook opened from GitHub is not inside the clone) and
   executed top to bottom in a kernel of that environment, in smoke + offline mode (solutions also strict) with a
   tiny CIFAR-10. The first notebook's setup cell installs what Colab lacks.
4. Afterwards the preinstalled packages must still have their pinned versions (the setup cell replaced nothing).

Python 3.13 is found from ``$XAI_COLAB_PYTHON``, ``python3.13`` on ``PATH``, then pyenv (``$PYENV_ROOT``, default
``~/.pyenv``); the check fails with what it tried when there is none.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
import course  # noqa: E402
import release  # noqa: E402

VERSIONS = TOOLS / "colab_versions.txt"
PYTHON_VERSION = (3, 13)
KERNEL_NAME = "colab-standin"
SYSTEM_PYTHONS = ["/usr/local/bin/python3.13", "/usr/bin/python3.13"]
#: bumped when the way the environment is built changes, so old caches are not reused
BUILD_RECIPE = "1"
STAND_IN = '''"""Stand-in for Colab's google.colab package (tools/colab_standin.py): the setup cell only imports it."""

STAND_IN = True
'''


class StandInError(Exception):
    """The stand-in cannot run (no Python 3.13, an install failed) or a check failed."""


def _python_version(exe: str) -> tuple[int, int] | None:
    try:
        r = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    major, minor = r.stdout.split()
    return int(major), int(minor)


def find_python(env: dict[str, str] | None = None) -> str:
    """The path of a Python 3.13 interpreter: ``$XAI_COLAB_PYTHON``, ``python3.13`` on PATH, then pyenv's."""
    env = dict(os.environ if env is None else env)
    tried = []
    override = env.get("XAI_COLAB_PYTHON")
    if override:
        if _python_version(override) != PYTHON_VERSION:
            raise StandInError(f"XAI_COLAB_PYTHON={override} is not a working Python 3.13")
        return override
    candidates = []
    on_path = shutil.which("python3.13", path=env.get("PATH"))
    if on_path:
        candidates.append(on_path)  # may be a pyenv shim that refuses to run: checked below
    pyenv_root = Path(env.get("PYENV_ROOT", Path(env.get("HOME", str(Path.home()))) / ".pyenv"))
    candidates += [str(p) for p in sorted((pyenv_root / "versions").glob("3.13*/bin/python3.13"), reverse=True)]
    candidates += SYSTEM_PYTHONS
    for exe in candidates:
        tried.append(exe)
        if Path(exe).exists() and _python_version(exe) == PYTHON_VERSION:
            return exe
    raise StandInError(
        "no Python 3.13 found (Colab runs 3.12/3.13; the stand-in uses 3.13). Tried: "
        + (", ".join(tried) or "nothing")
        + ". Install one (e.g. `pyenv install 3.13`) or set XAI_COLAB_PYTHON=/path/to/python3.13."
    )


def cache_root() -> Path:
    return Path(os.environ.get("XAI_STANDIN_CACHE", Path.home() / ".cache" / "xai-course" / "colab-standin"))


def env_key(python: str, versions: Path = VERSIONS) -> str:
    """A hash of what the environment is built from: the versions file, the interpreter, the recipe."""
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True).stdout
    text = versions.read_text(encoding="utf-8") + version + str(Path(python).resolve()) + BUILD_RECIPE
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pinned_versions(versions: Path = VERSIONS) -> dict[str, str]:
    """``tools/colab_versions.txt`` -> {distribution name: version}."""
    out = {}
    for line in versions.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep or not version.strip() or any(c in version for c in "<>=!~,;"):
                raise StandInError(f"{versions.name}: every line pins one version with ==, not {line!r}")
            out[name.strip().lower()] = version.strip()
    return out


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if r.returncode != 0:
        raise StandInError(f"{what} failed ({' '.join(cmd[:6])} ...):\n{(r.stdout + r.stderr)[-3000:]}")
    return r


def build_env(python: str, rebuild: bool = False) -> Path:
    """The cached "Colab as preinstalled" environment (built when missing or when ``rebuild``)."""
    path = cache_root() / env_key(python)
    if (path / ".complete").exists() and not rebuild:
        print(f"stand-in environment: {path} (cached)")
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"building the stand-in environment in {path} (Python 3.13, {VERSIONS.name}) ...", flush=True)
    _run([python, "-m", "venv", str(path)], "creating the virtual environment")
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # ipykernel: the kernel the notebooks run in (Colab has its own); the pins stay as they are (constraints)
    _run([*pip, "-r", str(VERSIONS)], f"installing {VERSIONS.name}", timeout=3600)
    _run([*pip, "ipykernel", "-c", str(VERSIONS)], "installing ipykernel", timeout=1200)
    (path / ".complete").write_text(VERSIONS.read_text(encoding="utf-8"))
    print(f"built in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def installed_versions(python: Path, names: list[str]) -> dict[str, str | None]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    return json.loads(_run([str(python), "-c", code, *names], "reading versions").stdout)


def run_copy(base: Path, work: Path) -> Path:
    """A hard-linked copy of the environment: installs land in the copy (pip replaces files, never edits them)."""
    copy = work / "env"
    _run(["cp", "-al", str(base), str(copy)], "copying the environment")
    return copy


def clone_source(work: Path) -> Path:
    """The student release, committed to a local git repository on the branch the setup cell clones."""
    src = work / "student-repo"
    release.write_release(src, ROOT, require_consistent=False)
    ref = course.constants.GITHUB_REF
    git = ["git", "-c", "user.name=stand-in", "-c", "user.email=stand-in@localhost", "-c", "commit.gpgsign=false"]
    _run([*git, "init", "-q", "-b", ref, str(src)], "git init")
    _run([*git, "-C", str(src), "add", "-A"], "git add")
    _run([*git, "-C", str(src), "commit", "-q", "-m", "student release"], "git commit")
    return src


def notebooks(src: Path, only: list[str] | None) -> list[tuple[str, Path]]:
    """(folder, path) of every released student notebook and of its solution, in course order."""
    out = []
    for student in sorted((src / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if only and student.name[:2] not in only:
            continue
        out += [("notebooks", student), ("solutions", ROOT / "solutions" / student.name)]
    return out


def execute(folder: str, path: Path, content: Path, env: dict[str, str], log: Path) -> tuple[float, str]:
    """Run one notebook from ``content/`` in the stand-in kernel; returns (seconds, its text output). What the
    kernel process itself writes (pip's warnings, for one) goes to ``log``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    target = content / path.name
    shutil.copy(path, target)
    os.environ.update(env, XAI_STRICT="1" if folder == "solutions" else "0")
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=600, startup_timeout=300, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(content)}})
    with log.open("w") as stderr:
        client.execute(stdout=stderr, stderr=stderr)
    seconds = time.perf_counter() - start
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") if out.get("output_type") == "stream" else "")
            text.append(out.get("data", {}).get("text/plain", "") if "data" in out else "")
    return seconds, "\n".join(text)


def check_output(folder: str, name: str, text: str, first: bool) -> list[str]:
    """What must hold in a notebook's output on the stand-in."""
    problems = []
    if "Running Google Colab" not in text:
        problems.append(f"{folder}/{name}: the setup cell did not detect (the stand-in) Colab")
    if "RANDOM" not in text:
        problems.append(f"{folder}/{name}: offline mode must say that pretrained models use random weights")
    installing = [line for line in text.splitlines() if line.startswith("Installing:")]
    if not first and installing:
        problems.append(f"{folder}/{name}: installed again although an earlier notebook installed: {installing}")
    if folder == "solutions" and "⏳ TODO" in text:
        problems.append(f"{folder}/{name}: a solution left an exercise unsolved")
    if folder == "notebooks":
        fails = [line for line in text.splitlines() if line.startswith("❌ FAIL") and "demo:" not in line]
        if fails:
            problems.append(f"{folder}/{name}: an unsolved exercise must say 'not done', not fail: {fails}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", metavar="NN", help="run only these notebook numbers (e.g. 02 04)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached environment")
    p.add_argument("--keep", type=Path, help="keep the work folder here (executed notebooks are not saved)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        python = find_python()
        base = build_env(python, args.rebuild)
        with tempfile.TemporaryDirectory(prefix="colab-standin-") as tmp:
            work = args.keep or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            problems = run_all(base, work, args.only)
    except (StandInError, release.ReleaseError, course.CourseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"colab stand-in: {time.perf_counter() - start:.0f} s in all")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def run_all(base: Path, work: Path, only: list[str] | None) -> list[str]:
    """Everything after the environment exists; returns the problems found."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_cifar import write_fake_cifar10

    env_dir = run_copy(base, work)
    fake = work / "fake-colab"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text(STAND_IN)
    kernels = work / "jupyter" / "kernels" / KERNEL_NAME
    kernels.mkdir(parents=True)
    spec = {"argv": [str(env_dir / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Colab stand-in (Python 3.13)", "language": "python"}
    (kernels / "kernel.json").write_text(json.dumps(spec))
    src = clone_source(work)
    content = work / "content"
    content.mkdir()
    data = work / "data"
    write_fake_cifar10(data)
    env = {
        "JUPYTER_PATH": str(work / "jupyter"),
        "PYTHONPATH": str(fake),
        "XAI_SMOKE": "1",
        "XAI_OFFLINE": "1",
        "XAI_DATA_DIR": str(data),
        "XAI_COURSE_DIR": str(content / Path(course.constants.COLAB_DIR).name),
        "XAI_COURSE_REPO_URL": str(src),
        "PYTHONHASHSEED": "0",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("MPLBACKEND", "VIRTUAL_ENV", "PYTHONHOME"):
        os.environ.pop(name, None)
    problems: list[str] = []
    runs = notebooks(src, only)
    if not runs:
        return ["no notebook to run"]
    for i, (folder, path) in enumerate(runs):
        try:
            log = work / f"kernel-{folder}-{path.stem}.log"
            seconds, text = execute(folder, path, content, env, log)
        except Exception as exc:
            kernel_log = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            problems.append(f"{folder}/{path.name}: {type(exc).__name__}: {str(exc)[-2000:]}\n{kernel_log}")
            print(f"  FAILED  {folder}/{path.name}", flush=True)
            continue
        if i == 0:
            installed = [line for line in text.splitlines() if line.startswith("Installing:")]
            print(f"  setup cell: {installed[0] if installed else 'installed nothing'}")
        problems += check_output(folder, path.name, text, first=i == 0)
        print(f"  {seconds:6.1f} s  {folder}/{path.name}", flush=True)
    pins = pinned_versions()
    after = installed_versions(env_dir / "bin" / "python", list(pins))
    changed = {n: (v, after[n]) for n, v in pins.items() if after[n] is None or after[n].split("+")[0] != v}
    if changed:
        problems.append(f"the setup cell replaced Colab's packages (pinned, now): {changed}")
    else:
        print(f"  Colab's packages unchanged: {', '.join(f'{n} {v}' for n, v in pins.items())}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
