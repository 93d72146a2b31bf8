"""In the notebook: :func:`attach` / :func:`clear` figures and :func:`export` the PDF (Colab, Jupyter, VS Code)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from .. import convention
from . import reading
from .pdf import _build, _Built, _refuse_existing, _resolve_out, _write
from .reading import (
    _FIGURE_FILE,
    _QUESTION_NUMBER,
    FIGURES_DIR,
    METADATA_KEY,
    SubmissionError,
    _check_identity,
    _folder_figures,
    _load_notebook,
    _safe_id,
    _validate_notebook,
)

_ATTACH_SESSION: dict[tuple[str, str], tuple[int, Any]] = {}


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _cell_id(ip: Any) -> str | None:
    """The id of the cell being run, when the front end sends it (JupyterLab, VS Code, nbclient)."""
    kernel = getattr(ip, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:  # an old ipykernel or another kernel implementation
        return None
    meta = (parent or {}).get("metadata") or {}
    cid = meta.get("cellId") or meta.get("cell_id")
    return str(cid) if cid else None


_MANIFEST = "attached.json"


def _executed_inputs(ip: Any) -> list[str]:
    """The sources of the cells this kernel has run (IPython's raw input history), stripped, empty ones left out."""
    hist = getattr(getattr(ip, "history_manager", None), "input_hist_raw", None)
    if hist is None:
        hist = (getattr(ip, "user_ns", {}) or {}).get("In") or []
    return [str(src).strip() for src in hist if str(src).strip()]


def _code_sources(path: Path) -> tuple[set[str], bool] | None:
    """(the stripped code cell sources, whether it is a submission copy written by export()) of a notebook file."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    sources = {convention.cell_source(c).strip() for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"}
    is_copy = METADATA_KEY in (nb.get("metadata") or {}) or path.stem.endswith("_submission")
    return sources - {""}, is_copy


def _notebook_from_history(ip: Any, folder: Path | None = None) -> tuple[Path | None, list[Path]]:
    """The notebook in ``folder`` (default: the working directory) whose code cells this kernel ran, for a
    front end that does not tell (``jupyter nbconvert --execute``, papermill, nbclient): the ``.ipynb`` file
    holding the most of the executed cells, a submission copy (``export()``'s) only where nothing else matches.
    Returns (the notebook or None when no file or a tie, the candidates that matched best)."""
    executed = set(_executed_inputs(ip))
    if not executed:
        return None, []
    scored = []
    for cand in sorted((folder or Path.cwd()).glob("*.ipynb")):
        read = _code_sources(cand)
        if read is None:
            continue
        hits = len(executed & read[0])
        if hits:
            scored.append((hits, not read[1], cand))
    if not scored:
        return None, []
    best = max((hits, original) for hits, original, _ in scored)
    top = [c for hits, original, c in scored if (hits, original) == best]
    return (top[0].resolve() if len(top) == 1 else None), top


def _running_notebook_path() -> Path | None:
    """The notebook file this kernel runs: told by the front end (VS Code, JupyterLab / Notebook 7), else the
    notebook in the working directory whose code cells this kernel ran (a headless run, e.g. nbconvert)."""
    ip = _ipython()
    ns = getattr(ip, "user_ns", {}) or {}
    for cand in (ns.get("__vsc_ipynb_file__"), ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if not cand or not str(cand).endswith(".ipynb"):
            continue
        p = Path(str(cand))
        if p.is_absolute() and p.is_file():
            return p
        for parent in [Path.cwd(), *Path.cwd().parents]:
            if (parent / p).is_file():
                return (parent / p).resolve()
        if (Path.cwd() / p.name).is_file():
            return (Path.cwd() / p.name).resolve()
    if ip is not None:
        return _notebook_from_history(ip)[0]
    return None


def _in_colab() -> bool:
    from .. import env

    return env.in_colab()


def _attach_target(question: str, notebook: str | Path | None) -> tuple[Path, str]:
    """(base_dir, stem) that attach() saves under."""
    if notebook is not None:
        p = Path(notebook).expanduser().resolve()
        return p.parent, p.stem
    p = None if _in_colab() else _running_notebook_path()
    if p is not None:
        return p.parent, p.stem
    return Path.cwd(), reading._default_stem(int(question.split(".")[0]))


def _check_question(question: Any) -> str:
    question = str(question).strip()
    if not _QUESTION_NUMBER.match(question):
        raise ValueError(f"question must look like 'N.M' (e.g. '3.2'), got {question!r}")
    a, b = question.split(".")
    return f"{int(a)}.{int(b)}"


def attach(question: str, fig: Any, notebook: str | Path | None = None, *, keep: bool = False) -> Path:
    """Attach a matplotlib figure to question ``"N.M"``: it goes into the PDF made by :func:`export`.

    Saves ``submission_figures/<notebook-stem>/N.M_<k>.png`` next to the notebook (or in the working directory
    when the notebook file is unknown, e.g. on Colab) and prints where. Call it several times (in one cell or
    in several) for several figures. Re-running a cell replaces the figures it attached before (where the front
    end does not say which cell runs, the latest cell run that attaches to the question replaces all of that
    question's figures); ``keep=True`` always adds.
    ``fig`` may also be a matplotlib Axes (its figure is used). ``notebook``: the notebook's path, when it
    cannot be found automatically. Returns the PNG's path.
    """
    question = _check_question(question)
    if hasattr(fig, "figure") and not hasattr(fig, "savefig"):
        fig = fig.figure  # an Axes
    if not hasattr(fig, "savefig"):
        raise TypeError(f"attach() needs a matplotlib figure (e.g. fig from plt.subplots()), got {type(fig).__name__}")
    base_dir, stem = _attach_target(question, notebook)
    folder = base_dir / FIGURES_DIR / stem
    folder.mkdir(parents=True, exist_ok=True)
    ip = _ipython()
    run_key = [os.getpid(), getattr(ip, "execution_count", None)]
    cell = _cell_id(ip)
    manifest_path = folder / _MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    existing = _folder_figures(folder).get(question, [])
    stale: list[Path] = []
    if not keep and cell is not None:  # replace what an earlier run of THIS cell attached to the question
        stale = [p for p in existing if (manifest.get(p.name) or {}).get("cell") == cell
                 and manifest[p.name].get("run") != run_key]
    elif not keep and _ATTACH_SESSION.get((str(folder), question)) != tuple(run_key):
        stale = existing  # cell unknown: the latest cell run that attaches to the question replaces the rest
    for p in stale:
        p.unlink()
        manifest.pop(p.name, None)
    existing = [p for p in existing if p not in stale]
    _ATTACH_SESSION[(str(folder), question)] = tuple(run_key)
    k = 1 + max((int(_FIGURE_FILE.match(p.name).group(2)) for p in existing), default=0)
    path = folder / f"{question}_{k}.png"
    fig.savefig(path, format="png", dpi=150, bbox_inches="tight", facecolor="white")
    manifest[path.name] = {"question": question, "cell": cell, "run": run_key}
    manifest_path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    replaced = ""
    if stale:
        replaced = (f"; replaces {len(stale)} figure(s) this cell attached before" if cell is not None else
                    f"; replaces the {len(stale)} figure(s) attached to {question} before: keep=True adds instead")
    print(f"Attached figure {k} to question {question}: {shown} (it goes into the PDF made by "
          f"submission.export{replaced})")
    return path


def clear(question: str | None = None, notebook: str | Path | None = None) -> int:
    """Remove the attached figures of ``question`` ("N.M"; all questions when None). Returns how many."""
    q = _check_question(question) if question is not None else None
    base_dir, stem = _attach_target(q or "0.0", notebook)
    folder = base_dir / FIGURES_DIR / stem
    removed = 0
    if folder.is_dir():
        for number, paths in _folder_figures(folder).items():
            if q is None or number == q:
                for p in paths:
                    p.unlink()
                    removed += 1
    print(f"Removed {removed} attached figure(s){' of question ' + q if q else ''} from {folder}")
    return removed


_COLAB_HELP = ("On Colab: File > Download > Download .ipynb, upload it with the Files panel on the left (into "
               "/content), then run submission.export(name, student_id, notebook='/content/<file>.ipynb').")
_ATTACH_CALL = re.compile(r"""attach\(\s*["'](\d+)\.\d+["']""")


def _local_help(ip: Any) -> str:
    """What to do when the notebook file is unknown, naming this notebook where it can be told: the files that
    matched the executed cells equally well, else the course notebook of the questions attached to."""
    _, tied = _notebook_from_history(ip) if ip is not None else (None, [])
    names = [p.name for p in tied]
    if not names:
        numbers = {int(m.group(1)) for src in (_executed_inputs(ip) if ip is not None else [])
                   for m in _ATTACH_CALL.finditer(src)}
        stem = reading._canonical_stem(numbers.pop()) if len(numbers) == 1 else None
        names = [f"{stem}.ipynb"] if stem else []
    name = names[0] if names else "NN_slug.ipynb"
    which = f" (one of: {', '.join(names)})" if len(names) > 1 else ""
    return (f"Pass the notebook's path{which}: submission.export(name, student_id, notebook='{name}'), or from a "
            f"terminal: python -m helpers.submission notebooks/{name} --name '...' --id ...")


def missing_figures(questions: list[reading.Question]) -> list[str]:
    """The numbers of the questions that ask for a figure (``submission.attach("N.M", ...)`` in their text) and
    have none (``Question.figures`` filled, as by ``pdf._build``)."""
    return [q.number for q in questions if convention.asks_for_figure(q.text, q.number) and not q.figures]


def _colab_notebook() -> dict:
    try:
        from google.colab import _message  # type: ignore[import-not-found]
    except ImportError as err:
        raise SubmissionError("cannot reach Colab's notebook. " + _COLAB_HELP) from err
    try:
        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=120)
    except Exception as err:  # a timeout or a front-end error
        raise SubmissionError(f"Colab did not send the notebook ({err}). " + _COLAB_HELP) from err
    if not isinstance(reply, dict) or not isinstance(reply.get("ipynb"), dict):
        raise SubmissionError("Colab did not send the notebook. " + _COLAB_HELP)
    nb = reply["ipynb"]
    _validate_notebook(nb, "the Colab notebook")
    return nb


def _submission_copy(nb: dict, built: _Built, name: str, student_id: str) -> bytes:
    copy = json.loads(json.dumps(nb))
    figures = {q.number: [base64.b64encode(f).decode("ascii") for f in q.attached] for q in built.questions
               if q.attached}
    copy.setdefault("metadata", {})[METADATA_KEY] = {
        "name": name, "student_id": student_id, "exported": dt.datetime.now().isoformat(timespec="seconds"),
        "figures": figures,
    }
    return (json.dumps(copy, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def export(name: str, student_id: str, notebook: str | Path | None = None, *, out: str | Path | None = None,
           overwrite: bool = False, save_copy: bool = True) -> Path:
    """The last cell of a notebook: build your submission PDF (and offer it for download on Colab).

    SAVE THE NOTEBOOK FIRST when running locally: the file on disk is what is read. The notebook is found on
    Colab (the open notebook), in VS Code and in JupyterLab; elsewhere pass ``notebook=`` (its path). Writes
    ``<NN_slug>_<student_id>.pdf`` next to the notebook (on Colab in ``/content``) and, with ``save_copy``, the
    submission copy ``<NN_slug>_<student_id>.ipynb`` (your notebook with your name, ID and figures in its
    metadata). ``out``: a ``.pdf`` file or a folder (created if new: ``out="pdfs/"``). An existing PDF is not
    replaced unless ``overwrite=True``. Returns the PDF's path.
    """
    name, student_id = _check_identity(name, student_id)
    colab = notebook is None and _in_colab()
    if notebook is not None:
        path = Path(notebook).expanduser().resolve()
        nb, base_dir, stem, label = _load_notebook(path), path.parent, path.stem, path.name
    elif colab:
        nb = _colab_notebook()
        colab_name = str((nb.get("metadata", {}).get("colab") or {}).get("name") or "notebook.ipynb")
        path, base_dir, stem, label = None, Path.cwd(), Path(colab_name).stem, colab_name + " (Colab)"
    else:
        path = _running_notebook_path()
        if path is None:
            raise SubmissionError("cannot tell which notebook is running. " + _local_help(_ipython()))
        nb, base_dir, stem, label = _load_notebook(path), path.parent, path.stem, path.name
    if path is not None:
        age = dt.datetime.now().timestamp() - path.stat().st_mtime
        when = f"{age / 60:.0f} min ago" if age >= 60 else "just now"
        print(f"Reading {path} (last saved {when}). Unsaved changes are NOT in the PDF: save the notebook "
              "(Ctrl+S / File > Save) and run this cell again if you changed anything since.")
    built = _build(nb, name, student_id, base_dir, stem, label)
    default_name = f"{built.slug}_{_safe_id(student_id)}.pdf"
    if out is not None and (str(out).endswith(("/", os.sep)) or not (Path(out).suffix or Path(out).exists())):
        target = Path(out).expanduser() / default_name  # a new folder ("new_dir/"), created when writing
    else:
        target = _resolve_out(out, base_dir, default_name)
    copy_path = target.with_suffix(".ipynb")
    if path is not None and copy_path.resolve() == path.resolve():
        copy_path = target.with_name(target.stem + "_submission.ipynb")
    _refuse_existing([target] + ([copy_path] if save_copy else []), overwrite)
    for msg in built.warnings:
        print("Warning:", msg)
    for number in missing_figures(built.questions):
        print(f"Warning: question {number} asks for a figure and none is attached: run its "
              f"submission.attach(\"{number}\", ...) cell, then this cell again.")
    _write(target, built.pdf, overwrite)
    if save_copy:
        _write(copy_path, _submission_copy(nb, built, name, student_id), overwrite)
    missing = [q.number for q in built.questions if not q.answered]
    n_fig = sum(len(q.figures) for q in built.questions)
    print(f"Wrote {target}: {len(built.questions) - len(missing)} of {len(built.questions)} questions answered"
          + (f" (NOT answered: {', '.join(missing)})" if missing else "") + f", {n_fig} figure(s).")
    if save_copy:
        print(f"Submission copy of the notebook (with your name and ID): {copy_path}")
    if colab:
        from google.colab import files  # type: ignore[import-not-found]

        print("Downloading the PDF (files in /content vanish when the Colab runtime ends).")
        files.download(str(target))
    else:
        print("Hand in this PDF.")
    return target


# --------------------------------------------------------------------------------------------------------------
# Batch mode (instructors)
# --------------------------------------------------------------------------------------------------------------
