"""Reading a notebook: its TOSUBMIT questions and answers, the figures attached to them, names for the output."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import convention
from . import markdown

FIGURES_DIR = "submission_figures"
PLACEHOLDER = convention.PLACEHOLDER
METADATA_KEY = "xai_submission"

_ATTACH_LINE = re.compile(r"^#\s*ATTACH\s+(\d+\.\d+)\s*$", re.IGNORECASE)
_FIGURE_FILE = re.compile(r"^(\d+\.\d+)_(\d+)\.png$")
_QUESTION_NUMBER = re.compile(r"^\d+\.\d+$")


class SubmissionError(ValueError):
    """The notebook cannot be turned into a submission PDF (not a notebook, no questions, a missing figure...)."""


@dataclass
class Question:
    """One TOSUBMIT question of a notebook, with the student's answer."""

    number: str  # "N.M"
    points: float | None
    text: str  # the question (markdown), without the TOSUBMIT prefix
    answer: str  # the answer (markdown), marker lines and placeholder removed; "" when not answered
    answered: bool
    answer_is_code: bool = False
    attachments: dict[str, bytes] = field(default_factory=dict)  # pasted images of the answer cell (name -> PNG)
    figures: list[bytes] = field(default_factory=list)  # all figures: attach()-ed ones, then # ATTACH cells'
    attached: list[bytes] = field(default_factory=list)  # the attach()-ed ones only (embedded in export's copy)
    note: str = ""  # the header's note after the points, e.g. "homework"


# --------------------------------------------------------------------------------------------------------------
# Reading notebooks
# --------------------------------------------------------------------------------------------------------------


_source = convention.cell_source


def _load_notebook(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"notebook not found: {path}")
    if path.is_dir():
        raise SubmissionError(f"{path} is a folder, not a notebook (.ipynb file)")
    if path.suffix.lower() != ".ipynb":
        raise SubmissionError(f"{path} is not a Jupyter notebook (expected a .ipynb file)")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SubmissionError(f"{path} is not a valid notebook (corrupt JSON: {err}); save or download it "
                              "again") from err
    _validate_notebook(nb, str(path))
    return nb


def _validate_notebook(nb: Any, where: str) -> None:
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{where} is not a Jupyter notebook (no list of cells)")
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or "cell_type" not in cell:
            raise SubmissionError(f"{where}: cell {i} is malformed")


_clean_answer = convention.clean_answer


def _cell_attachments(cell: dict) -> dict[str, bytes]:
    out = {}
    for name, bundle in (cell.get("attachments") or {}).items():
        for mime in ("image/png", "image/jpeg"):
            if isinstance(bundle, dict) and mime in bundle:
                data = bundle[mime]
                out[name] = base64.b64decode("".join(data) if isinstance(data, list) else data)
                break
    return out


def read_questions(nb: dict | str | Path) -> list[Question]:
    """The TOSUBMIT questions of a notebook (a path or its JSON dict), in notebook order, with the answers.

    Figures are not collected here (``Question.figures`` is empty); raises :class:`SubmissionError` when the
    notebook has no TOSUBMIT question or a question number twice.
    """
    where = "notebook"
    if not isinstance(nb, dict):
        where = str(nb)
        nb = _load_notebook(nb)
    else:
        _validate_notebook(nb, where)
    cells = nb["cells"]
    questions: list[Question] = []
    seen: set[str] = set()
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        src = _source(cell)
        m = convention.parse_header(src)
        if not m:
            continue
        number = m.number
        if number in seen:
            raise SubmissionError(f"{where}: question {number} appears twice (cell {i}); delete the duplicate cell")
        seen.add(number)
        points = m.points
        answer, is_code, attachments = "", False, {}
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if nxt is not None and not (nxt.get("cell_type") == "markdown" and convention.parse_header(_source(nxt))):
            is_code = nxt.get("cell_type") == "code"
            answer = _clean_answer(_source(nxt)) if not is_code else _source(nxt).strip("\n")
            attachments = _cell_attachments(nxt)
        answered = bool(re.search(r"\w", answer)) and not (is_code and not answer.strip())
        questions.append(Question(number, points, src[m.end:].strip(), answer if answered else "", answered,
                                  is_code, attachments, note=m.note))
    if not questions:
        raise SubmissionError(f"{where} has no **TOSUBMIT N.M** question: is it a course notebook?")
    return questions


def _notebook_title(nb: dict, fallback: str) -> str:
    return convention.title_line(nb["cells"]) or fallback


def _notebook_number(nb: dict, questions: Sequence[Question]) -> int:
    number, _ = convention.split_title(_notebook_title(nb, ""))
    if number is not None:
        return number
    return int(questions[0].number.split(".")[0])


def _canonical_stem(number: int) -> str | None:
    """The course notebook ``NN_slug`` for notebook number ``number`` (from notebooks/ or solutions/), if any."""
    from .. import env

    root = env.repo_root()
    for folder in ("notebooks", "solutions"):
        hits = sorted((root / folder).glob(f"{number:02d}_*.ipynb"))
        if hits:
            return hits[0].stem
    return None


def _safe_id(student_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", student_id.strip()).strip("-.")
    if not safe:
        raise SubmissionError(f"student ID {student_id!r} has no letters or digits to put in a file name")
    return safe


def _default_stem(number: int) -> str:
    """Where attach() saves when the notebook file is unknown (e.g. on Colab): the course notebook's stem."""
    return _canonical_stem(number) or f"{number:02d}_notebook"


def _slug(nb: dict, questions: Sequence[Question], stem: str, student_id: str | None = None) -> str:
    """``NN_slug`` for output names: the course notebook's stem, else from the file name, else from the title."""
    number = _notebook_number(nb, questions)
    canonical = _canonical_stem(number)
    if canonical:
        return canonical
    if student_id and stem.endswith("_" + _safe_id(student_id)):
        stem = stem[: -len(_safe_id(student_id)) - 1]  # a submission copy <NN_slug>_<id>
    m = re.search(r"\d{2}_[A-Za-z0-9_-]+", stem)
    if m:
        return m.group(0)
    words = re.findall(r"[A-Za-z0-9]+", re.sub(r"^\d+\W*", "", _notebook_title(nb, "")).lower())
    return f"{number:02d}_" + ("_".join(words[:6]) or "notebook")


def _check_identity(name: Any, student_id: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip():
        raise SubmissionError("the student's name is empty: pass name='First Last'")
    if not isinstance(student_id, (str, int)) or not str(student_id).strip():
        raise SubmissionError("the student ID is empty: pass student_id='...'")
    return name.strip(), str(student_id).strip()


# --------------------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------------------


def _check_png(data: bytes, what: str) -> bytes:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as err:  # PIL raises many kinds of errors on bad data
        raise SubmissionError(f"{what} is not a readable image ({err})") from err
    return data


def _figure_dirs(base_dir: Path, stem: str, default: str) -> list[Path]:
    return [base_dir / FIGURES_DIR / n for n in dict.fromkeys([stem, default])]


def _folder_figures(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[tuple[int, Path]]] = {}
    for p in folder.iterdir():
        m = _FIGURE_FILE.match(p.name)
        if m and p.is_file():
            found.setdefault(m.group(1), []).append((int(m.group(2)), p))
    return {q: [p for _, p in sorted(v)] for q, v in found.items()}


def _collect_figures(nb: dict, questions: list[Question], base_dir: Path, stem: str, default: str) -> list[str]:
    """Fill ``Question.figures``; return warnings (figures for unknown questions, marked cells without output)."""
    by_number = {q.number: q for q in questions}
    warnings: list[str] = []
    embedded = (nb.get("metadata", {}).get(METADATA_KEY) or {}).get("figures")
    if isinstance(embedded, dict):  # a submission copy written by export(): figures travel inside it
        for number, items in embedded.items():
            for k, b64 in enumerate(items, 1):
                data = _check_png(base64.b64decode(b64), f"embedded figure {k} of question {number}")
                if number in by_number:
                    by_number[number].attached.append(data)
    else:
        for folder in _figure_dirs(base_dir, stem, default):
            if not folder.is_dir():
                continue
            for number, paths in sorted(_folder_figures(folder).items(), key=lambda kv: _qkey(kv[0])):
                if number not in by_number:
                    warnings.append(f"{folder}: figures for question {number}, which this notebook does not "
                                    "have, are left out")
                    continue
                for p in paths:
                    by_number[number].attached.append(_check_png(p.read_bytes(), f"attached figure {p}"))
            break  # the first folder that exists
    for q in questions:
        q.figures.extend(q.attached)
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        first = _source(cell).strip().splitlines()[:1]
        m = _ATTACH_LINE.match(first[0].strip()) if first else None
        if not m:
            continue
        number = m.group(1)
        if number not in by_number:
            raise SubmissionError(f"code cell {i} is marked '# ATTACH {number}' but the notebook has no question "
                                  f"{number}; fix the number in the marker")
        pngs = []
        for out in cell.get("outputs", []):
            data = (out.get("data") or {}).get("image/png")
            if data:
                pngs.append(base64.b64decode("".join(data) if isinstance(data, list) else data))
        if not pngs:
            warnings.append(f"code cell {i} is marked '# ATTACH {number}' but has no image output: run it and save "
                            "the notebook before exporting")
        for k, data in enumerate(pngs, 1):
            by_number[number].figures.append(_check_png(data, f"image output {k} of cell {i} (# ATTACH {number})"))
    return warnings


def _qkey(number: str) -> tuple[int, int]:
    a, b = number.split(".")
    return int(a), int(b)


def _answer_images(q: Question, base_dir: Path) -> dict[str, bytes | None]:
    """Images referenced by ``![..](src)`` in the answer: src -> PNG/JPEG bytes (None for web links)."""
    out: dict[str, bytes | None] = {}
    for _, src in markdown.image_sources(q.answer):
        if src in out:
            continue
        if src.startswith("attachment:"):
            key = src[len("attachment:"):]
            if key not in q.attachments:
                raise SubmissionError(f"the answer to {q.number} shows the pasted image {key!r}, which is not in "
                                      "the cell any more: paste it again")
            out[src] = _check_png(q.attachments[key], f"pasted image {key!r} in the answer to {q.number}")
        elif re.match(r"^[a-z]+://", src) or src.startswith("data:"):
            out[src] = None  # not fetched: shown as a link
        else:
            path = (base_dir / src) if not Path(src).is_absolute() else Path(src)
            if not path.is_file():
                raise SubmissionError(f"the answer to {q.number} shows the image {src!r}, but {path} does not "
                                      "exist")
            out[src] = _check_png(path.read_bytes(), f"image {src!r} in the answer to {q.number}")
    return out


# --------------------------------------------------------------------------------------------------------------
# Markdown and LaTeX -> text runs
# --------------------------------------------------------------------------------------------------------------
