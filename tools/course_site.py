"""Build the course site: static HTML pages from executed notebooks (MyST-NB on Sphinx, sphinx-book-theme).

    make site                                   # from the smoke runs of `make test` (build/executed/notebooks)
    make site EXECUTED=/tmp/xai-class-mode      # from class-mode runs (tools/time_class_mode.py --out DIR)
    python -m tools.course_site DIR --out build/site [--allow-solutions]

``DIR`` holds executed notebooks named like the course's (``NN_slug.ipynb``); every notebook of the course must be
there. The site has a home page with the schedule (each notebook's title, its ``**Time:**`` line and the run time of
the executed copy), one page per notebook with its outputs and figures, and the assignments. Each page says how its
notebook was run: an offline run (``XAI_OFFLINE=1``) is labelled on every page, since its pretrained ImageNet models
have random weights, and a smoke run (``XAI_SMOKE=1``) says that its data and numbers are not a class run's.

Solutions never go on a public page: a notebook holding a solution region (``### BEGIN SOLUTION``) is refused
unless ``--allow-solutions`` is given (an instructors' site kept private). The student release's site is built
from the student notebooks.

The build fails (exit status 1) on any Sphinx warning (``-W``: a broken cross-reference, a missing page, a bad
image) and on any link of a written page that points to a local file that is not there. Offline and registry-only:
MyST-NB, Sphinx and the theme are installed from ``requirements-site.txt`` into their own light environment
(``make site`` creates ``.venv-site``; no torch needed).
"""

from __future__ import annotations

import argparse
import copy
import html.parser
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nbformat

from helpers import convention
from helpers import course as course_constants

ROOT = Path(__file__).resolve().parent.parent
_MODES = re.compile(r"modes: ([A-Z, ]+|normal);")
_TIME = re.compile(r"\*\*Time:\*\*\s*(~?\s*\d+(?:\s*[-–]\s*\d+)?\s*(?:min|minutes|h|hours)\b)")
_LINK = re.compile(r"(!?\[[^\]]*\])\((?!https?:|mailto:|#|data:)([^)\s]+)\)")
_REPO_FILE_TOP = ("data/", "docs/", "helpers/", "notebooks/", "assignments.md", "README.md", "LICENSE", "requirements")


class SiteError(Exception):
    """The executed notebooks cannot make a site (missing, solutions, broken links)."""


@dataclass
class Page:
    name: str  # NN_slug.ipynb
    number: int
    title: str
    time: str  # the **Time:** line, e.g. "~150 min"
    modes: list[str]  # e.g. ["SMOKE", "OFFLINE"]; [] for a class-mode run
    run_seconds: float | None  # summed cell run times recorded by the kernel client, None when not recorded
    random_weights: bool  # an output says a pretrained model got RANDOM weights
    simulated: bool = False  # run with XAI_DEVICE=sim (the setup cell says "SIMULATED GPU")


def course_notebooks(root: Path = ROOT) -> list[str]:
    """The course's notebook names, in order (from ``solutions/``)."""
    return sorted(p.name for p in (root / "solutions").glob("*.ipynb") if convention.NOTEBOOK_NAME.match(p.name))


def _outputs_text(nb) -> str:
    parts: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def _run_seconds(nb) -> float | None:
    """Summed cell run times from nbclient's ``metadata.execution`` timestamps (None when they are absent)."""
    total, seen = 0.0, False
    for cell in nb.cells:
        ex = cell.get("metadata", {}).get("execution", {})
        start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        if start and end:
            t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
            t1 = datetime.fromisoformat(end.replace("Z", "+00:00"))
            total += (t1 - t0).total_seconds()
            seen = True
    return total if seen else None


def has_solution(nb) -> bool:
    """True when any cell holds a solution region (a solution notebook, not a student copy)."""
    return any(convention.BEGIN in cell.source for cell in nb.cells)


def describe(nb, name: str) -> Page:
    """What the site says about one executed notebook."""
    m = convention.NOTEBOOK_NAME.match(name)
    if not m:
        raise SiteError(f"{name}: not a course notebook name (NN_slug.ipynb)")
    first = nb.cells[0].source if nb.cells else ""
    _, title = convention.split_title(first.splitlines()[0][2:] if first.startswith("# ") else name)
    head = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
    tm = _TIME.search(head)
    text = _outputs_text(nb)
    mm = _MODES.search(text)
    if mm is None:
        raise SiteError(f"{name}: not executed (the setup cell's 'Running ... modes: ...' line is missing)")
    modes = [] if mm.group(1) == "normal" else [s.strip() for s in mm.group(1).split(",") if s.strip()]
    return Page(name, int(m.group(1)), title, tm.group(1).strip() if tm else "", modes, _run_seconds(nb),
                "RANDOM weights" in text, "SIMULATED GPU" in text)


def banner(page: Page) -> str:
    """The MyST admonition at the top of a page saying how its notebook was run."""
    lines = []
    if "OFFLINE" in page.modes or page.random_weights:
        lines.append(
            "**Offline run** (`XAI_OFFLINE=1`): nothing was downloaded, so every pretrained ImageNet model on this "
            "page has **random weights**. Its predictions and explanations are meaningless: look at them for the "
            "layout only. Run the notebook on Colab (or with internet) to see the real ones."
        )
    if "SMOKE" in page.modes:
        lines.append(
            "**Smoke run** (`XAI_SMOKE=1`): tiny data and few steps, so the numbers and figures are not those of a "
            "class run; the text and the model answers refer to a class run."
        )
    if page.simulated:
        lines.append(
            "**Simulated GPU** (`XAI_DEVICE=sim`): the notebook ran under the course's simulated accelerator, which "
            "checks CUDA's device rules while computing on the CPU; the results equal a CPU run's."
        )
    if not lines:
        lines.append("Class-mode run: the settings a student runs in class.")
    kind = "note" if lines[0].startswith("Class-mode") else "warning"
    return f":::{{admonition}} How this page was run\n:class: {kind}\n\n" + "\n\n".join(lines) + "\n:::"


def rewrite_links(text: str, pages: set[str], slug: str, ref: str, where: str, allow_solutions: bool) -> str:
    """Relative links in Markdown: to another notebook of the site -> that page; to another file of the
    repository -> its page on GitHub; to a solution (unless allowed) or to nothing known -> SiteError."""

    def sub(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        path, _, frag = target.partition("#")
        clean = path
        while clean.startswith("../") or clean.startswith("./"):
            clean = clean.split("/", 1)[1]
        name = Path(clean).name
        if name in pages and clean in (name, f"notebooks/{name}", f"solutions/{name}"):
            if clean.startswith("solutions/") and not allow_solutions:
                raise SiteError(f"{where}: links a solution notebook ({target}); the site is public")
            return f"{label}({name}{'#' + frag if frag else ''})"
        if clean.startswith("solutions/") and not allow_solutions:
            raise SiteError(f"{where}: links {target}, which the student release does not have")
        if clean.startswith(_REPO_FILE_TOP) or clean in ("CONTRIBUTING.md",):
            return f"{label}(https://github.com/{slug}/blob/{ref}/{clean}{'#' + frag if frag else ''})"
        raise SiteError(f"{where}: relative link {target!r} points to nothing the site or the repository has")

    return _LINK.sub(sub, text)


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def index_md(pages: list[Page], built: str) -> str:
    """The home page: what the course is, how the pages were run, the schedule."""
    modes = sorted({m for p in pages for m in p.modes})
    run = ", ".join(modes) if modes else "class mode"
    rows = ["| # | Notebook | Time | Run time of this build |", "| --- | --- | --- | --- |"]
    for p in pages:
        stem = Path(p.name).stem
        rows.append(f"| {p.number:02d} | [{p.title}]({stem}.ipynb) | {p.time or '-'} | {_fmt_seconds(p.run_seconds)} |")
    offline = any("OFFLINE" in p.modes or p.random_weights for p in pages)
    note = (
        "\n\n:::{admonition} Offline build\n:class: warning\n\nThese pages were executed offline: every "
        "pretrained ImageNet model has **random weights**, so its explanations are meaningless. Each page says so "
        "at its top.\n:::"
        if offline
        else ""
    )
    toc = "\n".join(Path(p.name).stem for p in pages)
    return (
        f"# {course_constants.COURSE_TITLE}\n\n"
        "A hands-on workshop course on explaining image classifiers (CNNs and Vision Transformers) with PyTorch. "
        "Each notebook below is shown as it ran, with its outputs and figures; open it in Google Colab from its "
        f"page to work through it. Source: [github.com/{course_constants.GITHUB_SLUG}]"
        f"(https://github.com/{course_constants.GITHUB_SLUG}).\n\n"
        f"Built {built} from notebooks executed in {run}.{note}\n\n"
        "## Schedule\n\n"
        "*Time* is the workload estimate of each notebook (reading, exercises, questions); *run time* is the summed "
        "cell run time of the executed copy shown here.\n\n" + "\n".join(rows) + "\n\n"
        "The graded questions of all notebooks: [Assignments](assignments.md).\n\n"
        f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\nassignments\n```\n"
    )


CONF_PY = '''\
# Generated by tools/course_site.py
project = {title!r}
author = "the course authors"
extensions = ["myst_nb"]
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]
exclude_patterns = ["_build"]
html_theme = "sphinx_book_theme"
html_title = {short!r}
html_copy_source = False  # the executed notebooks are not offered for download from the site
html_show_sourcelink = False
html_theme_options = {{
    "repository_url": "https://github.com/{slug}",
    "repository_branch": {ref!r},
    "path_to_docs": "notebooks",
    "use_repository_button": True,
    "launch_buttons": {{"colab_url": "https://colab.research.google.com"}},
}}
'''


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        for key, value in attrs:
            if key in ("href", "src") and value:
                self.targets.append(value)


def broken_links(site: Path) -> list[str]:
    """Every ``href``/``src`` of the written HTML pages that names a local file that does not exist."""
    bad = []
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.relative_to(site).parts:  # the theme's template fragments, not pages
            continue
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for target in parser.targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "//")):
                continue
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not path:
                continue
            resolved = (page.parent / path).resolve()
            if not resolved.exists():
                bad.append(f"{page.relative_to(site)} -> {target}")
    return bad


def prepare(executed: Path, source: Path, allow_solutions: bool = False, root: Path = ROOT) -> list[Page]:
    """Write the Sphinx source folder ``source`` from the executed notebooks in ``executed``; return the pages."""
    names = course_notebooks(root)
    missing = [n for n in names if not (executed / n).exists()]
    if missing:
        raise SiteError(f"{executed}: missing executed notebooks: {', '.join(missing)} (every notebook is needed)")
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    slug, ref = course_constants.GITHUB_SLUG, course_constants.GITHUB_REF
    pages: list[Page] = []
    page_names = set(names)
    for name in names:
        nb = nbformat.read(executed / name, as_version=4)
        if has_solution(nb) and not allow_solutions:
            raise SiteError(
                f"{executed / name}: holds solutions ({convention.BEGIN}); a public site is built from the student "
                "notebooks (pass --allow-solutions only for a private instructors' site)"
            )
        page = describe(nb, name)
        out = copy.deepcopy(nb)
        for i, cell in enumerate(out.cells):
            if cell.cell_type == "markdown":
                cell.source = rewrite_links(cell.source, page_names, slug, ref, f"{name} cell {i}", allow_solutions)
        setup = next((c for c in out.cells if c.cell_type == "code"), None)
        if setup is not None:  # the generated setup cell: folded on the page, its output (device, modes) shown
            setup.metadata.setdefault("tags", []).append("hide-input")
        out.cells.insert(1, nbformat.v4.new_markdown_cell(banner(page)))
        nbformat.write(out, source / name)
        pages.append(page)
    assignments = (root / "assignments.md").read_text(encoding="utf-8")
    (source / "assignments.md").write_text(
        rewrite_links(assignments, page_names, slug, ref, "assignments.md", allow_solutions), encoding="utf-8"
    )
    built = datetime.now(UTC).strftime("%Y-%m-%d")
    (source / "index.md").write_text(index_md(pages, built), encoding="utf-8")
    short = "Explaining Vision Models"
    conf = CONF_PY.format(title=course_constants.COURSE_TITLE, short=short, slug=slug, ref=ref)
    (source / "conf.py").write_text(conf, encoding="utf-8")
    (source / "pages.json").write_text(json.dumps([p.__dict__ for p in pages], indent=1))
    return pages


def build(executed: Path, out: Path, allow_solutions: bool = False, root: Path = ROOT) -> list[Page]:
    """Prepare the source next to ``out`` (``out``.src), run Sphinx into ``out``, check the links."""
    source = out.parent / (out.name + ".src")
    pages = prepare(executed, source, allow_solutions, root)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", "auto"]
    cmd += [str(source), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SiteError(f"Sphinx failed ({' '.join(cmd)}):\n{result.stdout}\n{result.stderr}")
    bad = broken_links(out)
    if bad:
        raise SiteError("broken local links:\n  " + "\n  ".join(bad))
    missing = [p.name for p in pages if not (out / (Path(p.name).stem + ".html")).exists()]
    if missing:
        raise SiteError(f"pages not written: {', '.join(missing)}")
    return pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("executed", type=Path, help="folder of executed notebooks (NN_slug.ipynb)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where the HTML goes (replaced)")
    ap.add_argument("--allow-solutions", action="store_true", help="allow solution notebooks (private site only)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        pages = build(args.executed, args.out, args.allow_solutions)
    except SiteError as exc:
        print(f"course_site: {exc}", file=sys.stderr)
        return 1
    print(f"course_site: {len(pages)} notebook pages + home + assignments in {args.out} "
          f"({time.perf_counter() - start:.1f} s); open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
