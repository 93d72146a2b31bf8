"""Student submissions: the answers to a notebook's TOSUBMIT questions (and attached figures) -> one PDF.

In a notebook::

    from helpers import submission
    submission.attach("3.2", fig)                   # a matplotlib figure for question 3.2
    ...
    submission.export("Ada Lovelace", "12345678")   # last cell: save the notebook first, then run it

Conventions (see CONTRIBUTING.md for how questions are written):

* A question is a markdown cell that starts with ``**TOSUBMIT N.M** *(P points)*``; the NEXT cell is its answer
  cell. An answer cell that is empty or still only says ``YOUR ANSWER HERE`` is NOT ANSWERED. In a solution
  notebook the solution marker lines (:data:`helpers.convention.BEGIN` / ``END``) are dropped (the PDF of a solution
  notebook is the answer key).
* Figures of question N.M come from (in this order):

  1. :func:`attach`: PNGs ``submission_figures/<notebook-stem>/N.M_<k>.png`` next to the notebook (or in the
     working directory, e.g. ``/content`` on Colab). Re-running a cell replaces the figures it attached before
     (``keep=True`` adds instead);
  2. marked cells: a code cell whose first line is ``# ATTACH N.M`` contributes its saved ``image/png`` outputs;
  3. images in the answer itself: ``![caption](figure.png)`` (a path relative to the notebook) or an image
     pasted into the markdown cell (a cell attachment).

* :func:`export` writes ``<NN_slug>_<student_id>.pdf`` and a submission copy ``<NN_slug>_<student_id>.ipynb``
  of the notebook next to it. The copy records the student in its metadata
  (``metadata["xai_submission"] = {"name", "student_id", "exported", "figures"}``) and embeds the attached
  figures, so ``build_pdf`` / ``--batch`` rebuild the same PDF from the copy alone.
* Batch mode (instructors): ``python -m helpers.submission --batch <folder> [--out <folder>]`` builds one PDF per
  notebook under the folder, ``answers.csv`` (one row per notebook, one column per question: 1 answered,
  0 not), ``points.csv`` (the grader's sheet: maximum points, then a row per student to fill in) and
  ``summary.md`` (who answered what). The student's name and ID are read from, in this order: the notebook
  metadata written by
  :func:`export`; the literal arguments of the ``submission.export(...)`` call in the notebook (string literals,
  or variables such as ``STUDENT_NAME = "..."`` assigned in a code cell); the file name
  ``<NN_slug>_<student_id>.ipynb`` (ID only).

Command line::

    python -m helpers.submission notebooks/00_getting_started.ipynb --name "Ada Lovelace" --id 12345678 [--overwrite]
    python -m helpers.submission --batch submissions/ [--out pdfs/] [--overwrite]

An existing PDF is never overwritten unless asked (``overwrite=True`` / ``--overwrite``). Bad input (not a notebook,
corrupt JSON, no TOSUBMIT question, a missing or unreadable figure) raises :class:`SubmissionError` and writes
nothing: the PDF is built in memory first.
"""

from __future__ import annotations

import argparse
import ast
import base64
import csv
import datetime as dt
import io
import json
import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import convention, course

__all__ = [
    "SubmissionError",
    "Question",
    "FIGURES_DIR",
    "attach",
    "clear",
    "read_questions",
    "build_pdf",
    "export",
    "batch",
    "main",
]

FIGURES_DIR = "submission_figures"
PLACEHOLDER = convention.PLACEHOLDER
METADATA_KEY = "xai_submission"

_ATTACH_LINE = re.compile(r"^#\s*ATTACH\s+(\d+\.\d+)\s*$", re.IGNORECASE)
_FIGURE_FILE = re.compile(r"^(\d+\.\d+)_(\d+)\.png$")
_QUESTION_NUMBER = re.compile(r"^\d+\.\d+$")
_IMAGE_REF = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


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
    from . import env

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
    for m in _IMAGE_REF.finditer(q.answer):
        src = m.group(2)
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

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
_SYMBOLS = {
    "cdot": "·", "times": "×", "div": "÷", "pm": "±", "mp": "∓", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼", "simeq": "≃", "propto": "∝", "equiv": "≡", "infty": "∞",
    "partial": "∂", "nabla": "∇", "sum": "∑", "prod": "∏", "int": "∫", "in": "∈", "notin": "∉", "subset": "⊂",
    "subseteq": "⊆", "cup": "∪", "cap": "∩", "forall": "∀", "exists": "∃", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "Rightarrow": "⇒", "Leftarrow": "⇐", "Leftrightarrow": "⇔", "iff": "⇔", "implies": "⇒",
    "mapsto": "↦", "ldots": "…", "cdots": "⋯", "dots": "…", "odot": "⊙", "otimes": "⊗", "oplus": "⊕",
    "circ": "∘", "langle": "⟨", "rangle": "⟩", "|": "‖", "Vert": "‖", "lVert": "‖", "rVert": "‖", "vert": "|",
    "lvert": "|", "rvert": "|", "mid": "|", "top": "⊤", "emptyset": "∅", "ell": "ℓ", "star": "⋆", "ast": "∗",
    "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "prime": "′", "quad": "  ", "qquad": "    ",
    ",": " ", ";": " ", ":": " ", " ": " ", "!": "", "\\": " ", "{": "{", "}": "}", "$": "$", "%": "%", "&": "&",
    "#": "#", "_": "_", "cdotp": "·", "lt": "<", "gt": ">", "colon": ":",
}
_SKIP = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "displaystyle",
         "textstyle", "limits", "nolimits", "nonumber"}
_TEXTLIKE = {"text", "textrm", "textbf", "textit", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "texttt",
             "boldsymbol", "bm", "operatorname", "mathcal", "mathscr", "mathfrak", "emph"}
_BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "E": "𝔼", "P": "ℙ"}
_ACCENTS = {"hat": "\u0302", "widehat": "\u0302", "bar": "\u0304", "overline": "\u0305", "tilde": "\u0303",
            "widetilde": "\u0303", "vec": "\u20d7", "dot": "\u0307", "ddot": "\u0308"}
_SUP = dict(zip("0123456789+-=()niTt", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀᵗ", strict=True))
_SUB = dict(zip("0123456789+-=()aeoxhklmnpstijr", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜᵢⱼᵣ", strict=True))


def _latex_group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at s[i] ({...}, a command or one character) and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0) if (j == 0 or s[j - 1] != "\\") else 0
            if depth == 0:
                return s[i + 1:j], j + 1
        return s[i + 1:], len(s)
    if s[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", s[i:])
        assert m is not None
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _script(text: str, table: dict[str, str], mark: str) -> str:
    if text and all(c in table for c in text):
        return "".join(table[c] for c in text)
    return mark + text if len(text) == 1 else f"{mark}({text})"


def latex_to_text(s: str) -> str:
    """LaTeX math -> readable Unicode text (``\\alpha`` -> α, ``x^2`` -> x², ``\\frac{a}{b}`` -> a/b).

    Unknown commands keep their name without the backslash; never raises.
    """
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+\*?|.?)", s[i:])
            assert m is not None
            cmd = m.group(1).rstrip("*")
            i += len(m.group(0))
            if cmd in _TEXTLIKE:
                arg, i = _latex_group(s, i)
                out.append(latex_to_text(arg))
            elif cmd == "mathbb":
                arg, i = _latex_group(s, i)
                out.append("".join(_BLACKBOARD.get(ch, ch) for ch in arg))
            elif cmd in ("frac", "dfrac", "tfrac"):
                a, i = _latex_group(s, i)
                b, i = _latex_group(s, i)
                a, b = latex_to_text(a), latex_to_text(b)
                a, b = (t if re.fullmatch(r"[\w.′]+", t) else f"({t})" for t in (a, b))
                out.append(f"{a}/{b}")
            elif cmd == "sqrt":
                if i < len(s) and s[i] == "[":
                    j = s.find("]", i)
                    i = j + 1 if j > 0 else i
                arg, i = _latex_group(s, i)
                arg = latex_to_text(arg)
                out.append("√" + (arg if len(arg) == 1 else f"({arg})"))
            elif cmd in _ACCENTS:
                arg, i = _latex_group(s, i)
                out.append(latex_to_text(arg) + _ACCENTS[cmd])
            elif cmd in _SKIP:
                continue
            elif cmd in ("begin", "end"):  # environments (aligned, cases, ...): their content only
                _, i = _latex_group(s, i)
                out.append(" ")
            elif cmd in _GREEK:
                out.append(_GREEK[cmd])
            elif cmd in _SYMBOLS:
                out.append(_SYMBOLS[cmd])
            else:
                out.append(cmd)  # \log, \max, \exp, unknown commands: their name
        elif c in "^_":
            arg, i = _latex_group(s, i + 1)
            arg = latex_to_text(arg)
            out.append(_script(arg, _SUP if c == "^" else _SUB, c))
        elif c == "{":
            arg, i = _latex_group(s, i)
            out.append(latex_to_text(arg))
        elif c == "}":
            i += 1
        elif c == "~":
            out.append(" ")
            i += 1
        elif c == "&":  # an alignment point
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass
class _Run:
    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    math: bool = False
    link: str = ""


_HTML_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)(?:\s[^<>]*)?/?>")
_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_ESCAPABLE = set("\\`*_{}[]()#+-.!$|<>~")


def _inline(text: str) -> list[_Run]:
    """Inline markdown -> runs: **bold**, *emphasis*, `code`, $math$, [links](url), <br>; HTML tags dropped."""
    runs: list[_Run] = []
    buf: list[str] = []
    bold = italic = False

    def flush() -> None:
        if buf:
            runs.append(_Run("".join(buf), bold, italic))
            buf.clear()

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            buf.append(text[i + 1])
            i += 2
            continue
        if c == "`":
            k = len(text[i:]) - len(text[i:].lstrip("`"))
            end = text.find("`" * k, i + k)
            if end >= 0:
                flush()
                runs.append(_Run(text[i + k:end].strip() or text[i + k:end], code=True))
                i = end + k
                continue
            buf.append("`" * k)
            i += k
            continue
        if c == "$":
            if text.startswith("$$", i):
                end = text.find("$$", i + 2)
                if end > i + 2:
                    flush()
                    runs.append(_Run(latex_to_text(text[i + 2:end]), math=True))
                    i = end + 2
                    continue
            elif i + 1 < n and not text[i + 1].isspace():
                m = re.compile(r"(?<![\s\\])\$(?!\d)").search(text, i + 1)
                if m:
                    flush()
                    runs.append(_Run(latex_to_text(text[i + 1:m.start()]), math=True))
                    i = m.end()
                    continue
            buf.append(c)
            i += 1
            continue
        if c in "*_" and text.startswith(c * 3, i):
            closing = text.find(c * 3, i + 3)
            if bold and italic or closing > i + 3:
                flush()
                bold, italic = not bold, not italic
                i += 3
                continue
        if c in "*_" and text.startswith(c * 2, i):
            if bold or text.find(c * 2, i + 2) > i + 2:
                flush()
                bold = not bold
                i += 2
                continue
        if c in "*_":
            prev = text[i - 1] if i > 0 else " "
            nxt = text[i + 1] if i + 1 < n else " "
            intraword = c == "_" and prev.isalnum() and nxt.isalnum()
            opening = not italic and not nxt.isspace() and text.find(c, i + 1) > i + 1
            closing = italic and not prev.isspace()
            if not intraword and (opening or closing):
                flush()
                italic = not italic
                i += 1
                continue
        if c == "[":
            m = _LINK.match(text, i)
            if m:
                flush()
                label = "".join(r.text for r in _inline(m.group(1))) or m.group(2)
                runs.append(_Run(label, bold, italic, link=m.group(2)))
                i = m.end()
                continue
        if c == "!" and text.startswith("![", i):
            m = _IMAGE_REF.match(text, i)
            if m:
                flush()
                runs.append(_Run(f"[image: {m.group(1) or m.group(2)}]", italic=True))
                i = m.end()
                continue
        if c == "<":
            m = _HTML_TAG.match(text, i)
            if m:
                if m.group(1).lower() == "br":
                    buf.append("\n")
                i = m.end()
                continue
            m = re.match(r"<(https?://[^>\s]+)>", text[i:])
            if m:
                flush()
                runs.append(_Run(m.group(1), link=m.group(1)))
                i += m.end()
                continue
        if c == "&":
            m = re.match(r"&(nbsp|amp|lt|gt|quot);", text[i:])
            if m:
                buf.append({"nbsp": " ", "amp": "&", "lt": "<", "gt": ">", "quot": '"'}[m.group(1)])
                i += m.end()
                continue
        buf.append(c)
        i += 1
    flush()
    return runs


_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HR = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def _blocks(md: str) -> list[tuple]:
    """Markdown -> blocks: ("heading", level, text), ("para", text), ("list", [(level, marker, text)]),
    ("code", text), ("math", text), ("quote", md), ("hr",), ("image", alt, src), ("table", rows)."""
    md = re.sub(r"<!--.*?-->", "", md, flags=re.DOTALL).replace("\t", "    ")
    lines = md.splitlines()
    blocks: list[tuple] = []
    para: list[str] = []

    def end_para() -> None:
        if para:
            text = ""
            for k, line in enumerate(para):
                hard = line.endswith("  ") or line.endswith("\\")
                line = line.rstrip().rstrip("\\") if hard else line.strip()
                text += line.strip() + ("\n" if hard and k < len(para) - 1 else " ")
            blocks.append(("para", text.strip()))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = _FENCE.match(line)
        if fence:
            end_para()
            mark = fence.group(1)
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(mark):
                body.append(lines[i])
                i += 1
            blocks.append(("code", "\n".join(body)))
            i += 1
            continue
        if stripped.startswith("$$"):
            end_para()
            rest = stripped[2:]
            if rest.rstrip().endswith("$$") and len(rest.rstrip()) >= 2:
                blocks.append(("math", rest.rstrip()[:-2]))
                i += 1
                continue
            body = [rest]
            i += 1
            while i < len(lines) and "$$" not in lines[i]:
                body.append(lines[i])
                i += 1
            if i < len(lines):
                body.append(lines[i].split("$$")[0])
            blocks.append(("math", " ".join(body)))
            i += 1
            continue
        if not stripped:
            end_para()
            i += 1
            continue
        m = _HEADING.match(line)
        if m:
            end_para()
            blocks.append(("heading", len(m.group(1)), m.group(2)))
            i += 1
            continue
        if _HR.match(line):
            end_para()
            blocks.append(("hr",))
            i += 1
            continue
        m = _IMAGE_REF.fullmatch(stripped)
        if m:
            end_para()
            blocks.append(("image", m.group(1), m.group(2)))
            i += 1
            continue
        if stripped.startswith(">"):
            end_para()
            body = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                body.append(re.sub(r"^\s*>\s?", "", lines[i]))
                i += 1
            blocks.append(("quote", "\n".join(body)))
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
            end_para()
            rows = [line]
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            cells = [[c.strip() for c in re.split(r"(?<!\\)\|", r.strip().strip("|"))] for r in rows]
            blocks.append(("table", cells))
            continue
        m = _ITEM.match(line)
        if m and not para:
            items: list[list] = []
            indents: list[int] = []
            while i < len(lines):
                line = lines[i]
                m = _ITEM.match(line)
                if m:
                    indent = len(m.group(1))
                    while indents and indent < indents[-1]:
                        indents.pop()
                    if not indents or indent > indents[-1] + 1:
                        indents.append(indent)
                    items.append([len(indents) - 1, m.group(2), m.group(3)])
                    i += 1
                elif line.strip() and not _FENCE.match(line) and not _HEADING.match(line):
                    items[-1][2] += ("\n" if line.endswith("  ") else " ") + line.strip()
                    i += 1
                elif not line.strip() and i + 1 < len(lines) and (_ITEM.match(lines[i + 1]) or
                                                                  lines[i + 1].startswith("  ")):
                    i += 1
                else:
                    break
            blocks.append(("list", [tuple(it) for it in items]))
            continue
        if line.startswith("    ") and not para:
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            blocks.append(("code", "\n".join(body).rstrip("\n")))
            continue
        para.append(line)
        i += 1
    end_para()
    return blocks


# --------------------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------------------

_CJK_CANDIDATES = [  # optional fallback fonts for names and answers in scripts DejaVu lacks (if installed)
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
]
_TTF_FILES = {"body": "DejaVuSans.ttf", "bodyB": "DejaVuSans-Bold.ttf", "bodyI": "DejaVuSans-Oblique.ttf",
              "bodyBI": "DejaVuSans-BoldOblique.ttf", "mono": "DejaVuSansMono.ttf"}
_BODY_SIZE = 10.5
_MATH_DPI = 300  # display formulas are drawn by mathtext at this resolution
_LINE = 5.2
_GREY = (90, 90, 90)
_RED = (200, 0, 0)
_BLUE = (20, 60, 160)


def _ttf_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return path if (path / "DejaVuSans.ttf").is_file() else None


class _Writer:
    """Wraps an fpdf2 document: fonts, glyph-safe text, markdown blocks, figures."""

    def __init__(self, footer: str) -> None:
        from fpdf import FPDF

        writer = self

        class _Doc(FPDF):
            def footer(self) -> None:
                self.set_y(-13)
                writer.font("body", "", 8)
                self.set_text_color(*_GREY)
                right = f"page {self.page_no()} / {{nb}}"
                self.cell(self.epw * 0.75, 5, writer.clean(footer), align="L")
                self.set_x(self.l_margin)
                self.cell(0, 5, right, align="R")
                self.set_text_color(0, 0, 0)

        self.pdf = _Doc(format="A4", unit="mm")
        self.pdf.set_margins(18, 16, 18)
        self.pdf.set_auto_page_break(True, margin=18)
        self.pdf.alias_nb_pages()
        self.unicode = False
        self._cmaps: dict[str, set[int]] = {}
        self._fallback: set[int] = set()
        self._ttf = _ttf_dir()
        self._added: set[str] = set()
        if self._ttf is not None:
            self.unicode = True
            for cand in _CJK_CANDIDATES:
                if Path(cand).is_file():
                    try:
                        self.pdf.add_font("fallback", "", cand)
                    except Exception:  # an unusual font file: just do without it
                        continue
                    self.pdf.set_fallback_fonts(["fallback"], exact_match=False)
                    self._fallback = set(self.pdf.fonts["fallback"].cmap)
                    break

    def font(self, family: str, style: str = "", size: float = _BODY_SIZE) -> None:
        """Set the font; TTF faces are loaded on first use (parsing a font file takes a while)."""
        if not self.unicode:
            self.pdf.set_font({"body": "helvetica", "mono": "courier"}[family], style, size)
            return
        if family == "mono":
            style = ""
        key = family + style
        if key not in self._added:
            assert self._ttf is not None
            self.pdf.add_font(family, style, str(self._ttf / _TTF_FILES[key]))
            self._added.add(key)
        self.pdf.set_font(family, style, size)

    def clean(self, text: str) -> str:
        """Replace characters the current font (and fallback) cannot draw: by a decomposed form, else '?'."""
        font = self.pdf.current_font
        if self.unicode and font is not None:
            key = self.pdf.font_family + self.pdf.font_style
            if key not in self._cmaps:
                self._cmaps[key] = set(font.cmap) | self._fallback
            ok = self._cmaps[key]

            def has(ch: str) -> bool:
                return ord(ch) in ok
        else:
            def has(ch: str) -> bool:
                return ord(ch) < 256

        out = []
        for ch in text:
            if ch in "\n" or has(ch):
                out.append(ch)
                continue
            if ch in "\t\r\u00a0\u2009\u202f":
                out.append(" ")
                continue
            alt = unicodedata.normalize("NFKD", ch)
            alt = "".join(c for c in alt if not unicodedata.combining(c))
            if alt and all(has(c) for c in alt):
                out.append(alt)
            else:
                out.append("" if unicodedata.category(ch) in ("Mn", "Cf", "Cc") else "?")
        return "".join(out)

    # -- text --------------------------------------------------------------------------------------------------

    def runs(self, runs: Sequence[_Run], size: float = _BODY_SIZE, color: tuple = (0, 0, 0),
             bold: bool = False) -> None:
        for r in runs:
            if r.code:
                self.font("mono", "", size - 1)
                self.pdf.set_text_color(150, 30, 30)
            else:
                style = ("B" if (r.bold or bold) else "") + ("I" if (r.italic or r.math) else "")
                self.font("body", style, size)
                self.pdf.set_text_color(*(_BLUE if r.link else color))
            self._write_words(_LINE * size / _BODY_SIZE, self.clean(r.text), r.link or "")
        self.pdf.set_text_color(0, 0, 0)

    def _write_words(self, h: float, text: str, link: str = "") -> None:
        """``pdf.write`` word by word: a word that does not fit in the rest of the line starts a new line.

        fpdf's own ``write`` breaks such a word in the middle ("sensit / ivity") when the line began with another
        run (a bold word, inline code), because it only wraps at spaces inside the text of one call."""
        pdf = self.pdf
        usable = pdf.w - pdf.l_margin - pdf.r_margin
        for token in re.findall(r"[^\S\n]*\S+[^\S\n]*|\n|[^\S\n]+", text):
            word = token.strip()
            if word:
                width = pdf.get_string_width(word)
                at_start = pdf.get_x() <= pdf.l_margin + 0.01
                right = pdf.w - pdf.r_margin - 2 * pdf.c_margin - 0.2  # fpdf keeps a cell margin
                if not at_start and width <= usable and pdf.get_x() + width > right:
                    pdf.ln(h)
                    token = token.lstrip()
            elif token != "\n" and pdf.get_x() <= pdf.l_margin + 0.01:
                continue  # no spaces at the start of a line
            pdf.write(h, token, link=link)

    def paragraph(self, text: str, size: float = _BODY_SIZE, color: tuple = (0, 0, 0), bold: bool = False) -> None:
        self.pdf.set_x(self.pdf.l_margin)
        self.runs(_inline(text), size, color, bold)
        self.pdf.ln(_LINE * size / _BODY_SIZE)
        self.pdf.ln(1.2)

    def markdown(self, md: str, images: dict[str, bytes | None], color: tuple = (0, 0, 0)) -> None:
        pdf = self.pdf
        for block in _blocks(md):
            kind = block[0]
            if kind == "para":
                self.paragraph(block[1], color=color)
                for m in _IMAGE_REF.finditer(block[1]):  # images inside the paragraph: drawn below it
                    data = images.get(m.group(2))
                    if data is not None:
                        self.figure(data, m.group(1) or m.group(2))
            elif kind == "heading":
                size = {1: 14, 2: 13, 3: 12}.get(block[1], 11)
                pdf.ln(1)
                self.paragraph(block[2], size=size, color=color, bold=True)
            elif kind == "list":
                base = pdf.l_margin
                counters: dict[int, int] = {}
                for level, marker, text in block[1]:
                    indent = base + 2 + 6 * level
                    for deeper in [k for k in counters if k > level]:
                        del counters[deeper]
                    if marker[0].isdigit():
                        counters[level] = counters.get(level, int(re.match(r"\d+", marker).group(0)) - 1) + 1
                        bullet = f"{counters[level]}."
                    else:
                        bullet = "•" if level % 2 == 0 else "◦"
                    pdf.set_x(indent)
                    self.font("body", "", _BODY_SIZE)
                    pdf.set_text_color(*color)
                    pdf.cell(6, _LINE, self.clean(bullet))
                    pdf.set_left_margin(indent + 6)
                    pdf.set_x(indent + 6)
                    self.runs(_inline(text), color=color)
                    pdf.ln(_LINE)
                    pdf.set_left_margin(base)
                pdf.ln(1.2)
            elif kind == "code":
                self.font("mono", "", 8.5)
                pdf.set_fill_color(242, 242, 242)
                pdf.set_x(pdf.l_margin)
                pdf.multi_cell(0, 4.3, self.clean(block[1]) or " ", fill=True, align="L", new_x="LMARGIN",
                               new_y="NEXT", padding=(1.5, 2, 1.5, 2))
                pdf.ln(1.5)
            elif kind == "math":
                png = _mathtext_png(block[1], color)
                if png is not None:
                    self.formula(png)
                    continue
                self.font("body", "I", _BODY_SIZE)  # mathtext cannot draw it: readable text instead
                pdf.set_text_color(*color)
                pdf.set_x(pdf.l_margin)
                pdf.multi_cell(0, _LINE, self.clean(latex_to_text(block[1]).strip()), align="C", new_x="LMARGIN",
                               new_y="NEXT")
                pdf.ln(1.2)
            elif kind == "quote":
                base = pdf.l_margin
                pdf.set_left_margin(base + 6)
                self.markdown(block[1], images, color=_GREY)
                pdf.set_left_margin(base)
            elif kind == "hr":
                y = pdf.get_y() + 1
                pdf.set_draw_color(180, 180, 180)
                pdf.line(pdf.l_margin, y, pdf.w - pdf.r_margin, y)
                pdf.ln(3)
            elif kind == "image":
                alt, src = block[1], block[2]
                data = images.get(src)
                if data is None:
                    self.paragraph(f"[image: {alt or src}]({src})", color=color)
                else:
                    self.figure(data, alt or src)
            elif kind == "table":
                rows = block[1]
                ncol = max(len(r) for r in rows)
                self.font("body", "", 9)
                pdf.set_text_color(*color)
                pdf.set_x(pdf.l_margin)
                with pdf.table(text_align="LEFT", line_height=4.6, width=pdf.epw) as table:
                    for r in rows:
                        row = table.row()
                        for c in r + [""] * (ncol - len(r)):
                            row.cell(self.clean("".join(run.text for run in _inline(c))))
                pdf.ln(2)
        pdf.set_text_color(0, 0, 0)

    def formula(self, png: bytes, dpi: int = _MATH_DPI) -> None:
        """A display formula rendered by :func:`_mathtext_png`, centred at its natural size (at most the text
        width)."""
        from PIL import Image

        pdf = self.pdf
        with Image.open(io.BytesIO(png)) as img:
            w_px, h_px = img.size
            w, h = w_px / dpi * 25.4, h_px / dpi * 25.4
            if w > pdf.epw:
                w, h = pdf.epw, h * pdf.epw / w
            if pdf.get_y() + h + 2 > pdf.h - pdf.b_margin:
                pdf.add_page()
            pdf.image(img.convert("RGB"), x=pdf.l_margin + (pdf.epw - w) / 2, y=pdf.get_y() + 0.5, w=w, h=h)
        pdf.set_y(pdf.get_y() + h + 2)

    def figure(self, data: bytes, caption: str) -> None:
        from PIL import Image

        pdf = self.pdf
        img = Image.open(io.BytesIO(data))
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            img = img.convert("RGBA")
            flat = Image.new("RGB", img.size, (255, 255, 255))
            flat.paste(img, mask=img.getchannel("A"))
            img = flat
        elif img.mode != "RGB":
            img = img.convert("RGB")
        w_px, h_px = img.size
        w = min(pdf.epw, w_px / 110 * 25.4)  # about 110 dpi, at most the text width
        h = w * h_px / w_px
        max_h = (pdf.h - pdf.t_margin - pdf.b_margin) * 0.6
        if h > max_h:
            w, h = w * max_h / h, max_h
        if pdf.get_y() + h + 8 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.image(img, x=pdf.l_margin + (pdf.epw - w) / 2, y=pdf.get_y(), w=w, h=h)
        pdf.set_y(pdf.get_y() + h + 1)
        self.font("body", "I", 8.5)
        pdf.set_text_color(*_GREY)
        pdf.multi_cell(0, 4, self.clean(caption), align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
        pdf.ln(2)


def _mathtext_png(tex: str, color: tuple = (0, 0, 0), size: float = 12.0) -> bytes | None:
    """Display math drawn by matplotlib's mathtext as a PNG (white background), or None when mathtext cannot
    parse it (environments such as ``aligned``, unsupported commands): the caller then writes it as text."""
    tex = " ".join(tex.strip().split())
    if not tex:
        return None
    try:
        from matplotlib import mathtext
        from matplotlib.font_manager import FontProperties
    except ImportError:
        return None
    buf = io.BytesIO()
    try:
        mathtext.math_to_image(f"${tex}$", buf, prop=FontProperties(size=size), dpi=_MATH_DPI, format="png",
                               color=tuple(c / 255 for c in color))
    except Exception:  # mathtext raises ValueError on what it cannot parse, and other errors on odd input
        return None
    from PIL import Image

    with Image.open(io.BytesIO(buf.getvalue())) as img:  # transparent -> white, as the page
        img = img.convert("RGBA")
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, format="PNG")
    return out.getvalue()


def _points(p: float | None, note: str = "") -> str:
    if p is None:
        return ""
    return f" ({convention.format_points(p, note)})"


@dataclass
class _Built:
    pdf: bytes
    questions: list[Question]
    title: str
    slug: str
    warnings: list[str]


def _build(nb: dict, name: str, student_id: str, base_dir: Path, stem: str, source_label: str) -> _Built:
    """Everything in memory: questions, figures, PDF bytes. Raises SubmissionError on bad input."""
    name, student_id = _check_identity(name, student_id)
    questions = read_questions(nb)
    title = _notebook_title(nb, stem)
    warnings = _collect_figures(nb, questions, base_dir, stem, _default_stem(_notebook_number(nb, questions)))
    images = {q.number: _answer_images(q, base_dir) for q in questions}
    slug = _slug(nb, questions, stem, student_id)

    w = _Writer(f"{name} ({student_id}) · {title}")
    pdf = w.pdf
    pdf.set_title(f"{title} - {name} ({student_id})")
    pdf.set_author(name)
    pdf.set_subject(f"{course.COURSE_TITLE}; student ID {student_id}")
    pdf.set_creator("helpers.submission")
    pdf.add_page()

    w.font("body", "", 9)
    pdf.set_text_color(*_GREY)
    pdf.multi_cell(0, 4.5, w.clean(course.COURSE_TITLE), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    w.font("body", "B", 17)
    pdf.set_text_color(0, 0, 0)
    pdf.multi_cell(0, 8, w.clean(title), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    n_answered = sum(q.answered for q in questions)
    total = sum(q.points or 0 for q in questions)
    rows = [("Name", name), ("Student ID", student_id), ("Date", dt.datetime.now().strftime("%Y-%m-%d %H:%M")),
            ("Notebook", source_label),
            ("Answered", f"{n_answered} of {len(questions)} question{'s' if len(questions) != 1 else ''}"
             + (f" ({total:g} point{'s' if total != 1 else ''} in all)" if total else ""))]
    for label, value in rows:
        w.font("body", "B", 10.5)
        pdf.cell(30, 6, w.clean(label + ":"))
        w.font("body", "", 10.5)
        pdf.multi_cell(0, 6, w.clean(value), align="L", new_x="LMARGIN", new_y="NEXT")
        if label == "Name" and w.clean(name) != name:
            w.font("body", "I", 8.5)
            pdf.set_text_color(*_GREY)
            pdf.multi_cell(0, 4.5, "(the font lacks some characters of the name, shown as ?; the exact name is in "
                           "the PDF's document properties, field Author)", align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0, 0, 0)
    pdf.ln(2)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.ln(4)

    for q in questions:
        if pdf.get_y() > pdf.h - pdf.b_margin - 35:
            pdf.add_page()
        w.font("body", "B", 13)
        pdf.set_text_color(*_BLUE)
        pdf.multi_cell(0, 7, w.clean(f"Question {q.number}{_points(q.points, q.note)}"), align="L", new_x="LMARGIN",
                       new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
        pdf.ln(1)
        w.markdown(q.text, {}, color=_GREY)
        w.font("body", "B", 10.5)
        pdf.cell(0, 6, "Answer", new_x="LMARGIN", new_y="NEXT")
        if q.answered and q.answer_is_code:
            w.markdown("```\n" + q.answer + "\n```", {})
        elif q.answered:
            w.markdown(q.answer, images[q.number])
        else:
            w.font("body", "B", 11)
            pdf.set_text_color(*_RED)
            pdf.cell(0, 7, "NOT ANSWERED", new_x="LMARGIN", new_y="NEXT")
            pdf.set_text_color(0, 0, 0)
            pdf.ln(1)
        for k, fig in enumerate(q.figures, 1):
            w.figure(fig, f"Figure {k} of {len(q.figures)} for question {q.number}")
        pdf.ln(3)
        pdf.set_draw_color(200, 200, 200)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
        pdf.ln(4)
    return _Built(bytes(pdf.output()), questions, title, slug, warnings)


def _write(path: Path, data: bytes, overwrite: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb" if overwrite else "xb") as f:  # "xb": never replace an existing file
        f.write(data)


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for p in paths:
        if p.exists():
            raise FileExistsError(f"{p} already exists: pass overwrite=True (command line: --overwrite) to "
                                  "replace it, or choose another output name")


def _resolve_out(out: str | Path | None, default_dir: Path, default_name: str) -> Path:
    if out is None:
        return default_dir / default_name
    out = Path(out)
    if out.is_dir() or str(out).endswith(("/", os.sep)):
        return out / default_name
    if out.suffix.lower() != ".pdf":
        raise SubmissionError(f"output {out} must be a .pdf file or an existing folder")
    return out


def build_pdf(notebook_path: str | Path, name: str, student_id: str, out: str | Path | None = None,
              overwrite: bool = False) -> Path:
    """Build the submission PDF of a saved notebook and return its path.

    The PDF has the course and notebook title, the student's name and ID, the date, then every TOSUBMIT question
    in notebook order: its text, the answer (markdown rendered; "NOT ANSWERED" in red when empty) and the attached
    figures; "page i / n" at the bottom of each page. Default ``out``: ``<NN_slug>_<student_id>.pdf`` next to the
    notebook (``out`` may be a folder). Raises FileNotFoundError (no such notebook), FileExistsError (the PDF
    exists and not ``overwrite``) or :class:`SubmissionError` (bad input); nothing is written then.
    """
    path = Path(notebook_path)
    nb = _load_notebook(path)
    name, student_id = _check_identity(name, student_id)
    built = _build(nb, name, student_id, path.parent, path.stem, path.name)
    target = _resolve_out(out, path.parent, f"{built.slug}_{_safe_id(student_id)}.pdf")
    _refuse_existing([target], overwrite)
    for msg in built.warnings:
        print("Warning:", msg)
    _write(target, built.pdf, overwrite)
    return target


# --------------------------------------------------------------------------------------------------------------
# In the notebook: attach() and export()
# --------------------------------------------------------------------------------------------------------------

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


def _running_notebook_path() -> Path | None:
    """The notebook file this kernel runs, when the front end tells (VS Code, JupyterLab / Notebook 7)."""
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
    return None


def _in_colab() -> bool:
    from . import env

    return env.in_colab()


def _attach_target(question: str, notebook: str | Path | None) -> tuple[Path, str]:
    """(base_dir, stem) that attach() saves under."""
    if notebook is not None:
        p = Path(notebook).expanduser().resolve()
        return p.parent, p.stem
    p = None if _in_colab() else _running_notebook_path()
    if p is not None:
        return p.parent, p.stem
    return Path.cwd(), _default_stem(int(question.split(".")[0]))


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
_LOCAL_HELP = ("Pass the notebook's path: submission.export(name, student_id, notebook='00_getting_started.ipynb'), or "
               "from a terminal: python -m helpers.submission notebooks/00_getting_started.ipynb --name '...' --id ...")


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
    metadata). An existing PDF is not replaced unless ``overwrite=True``. Returns the PDF's path.
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
            raise SubmissionError("cannot tell which notebook is running. " + _LOCAL_HELP)
        nb, base_dir, stem, label = _load_notebook(path), path.parent, path.stem, path.name
    if path is not None:
        age = dt.datetime.now().timestamp() - path.stat().st_mtime
        when = f"{age / 60:.0f} min ago" if age >= 60 else "just now"
        print(f"Reading {path} (last saved {when}). Unsaved changes are NOT in the PDF: save the notebook "
              "(Ctrl+S / File > Save) and run this cell again if you changed anything since.")
    built = _build(nb, name, student_id, base_dir, stem, label)
    default_name = f"{built.slug}_{_safe_id(student_id)}.pdf"
    target = _resolve_out(out, base_dir, default_name)
    copy_path = target.with_suffix(".ipynb")
    if path is not None and copy_path.resolve() == path.resolve():
        copy_path = target.with_name(target.stem + "_submission.ipynb")
    _refuse_existing([target] + ([copy_path] if save_copy else []), overwrite)
    for msg in built.warnings:
        print("Warning:", msg)
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


def _identity_from_code(nb: dict) -> tuple[str | None, str | None]:
    """Name and ID from the notebook's ``export(...)`` call (string literals or variables assigned literals)."""
    assigned: dict[str, Any] = {}
    calls: list[ast.Call] = []
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        src = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, (str, int)):
                    assigned[node.targets[0].id] = node.value.value
            elif isinstance(node, ast.Call):
                func = node.func
                fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if fname == "export":
                    calls.append(node)

    def value(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
            v = node.value
        elif isinstance(node, ast.Name):
            v = assigned.get(node.id)
        else:
            return None
        return str(v).strip() if v is not None and str(v).strip() else None

    for call in calls:
        args = {i: a for i, a in enumerate(call.args)}
        kw = {k.arg: k.value for k in call.keywords}
        name, sid = value(kw.get("name", args.get(0))), value(kw.get("student_id", args.get(1)))
        if name or sid:
            return name, sid
    return None, None


def _identity(nb: dict, path: Path, slug: str) -> tuple[str, str, str]:
    """(name, student_id, where it came from) for batch mode."""
    meta = nb.get("metadata", {}).get(METADATA_KEY) or {}
    if meta.get("student_id"):
        return str(meta.get("name") or "(unknown)"), str(meta["student_id"]), "metadata"
    name, sid = _identity_from_code(nb)
    if sid:
        return name or "(unknown)", sid, "export() call"
    stem = path.stem
    if stem.startswith(slug + "_") and len(stem) > len(slug) + 1:
        return name or "(unknown)", stem[len(slug) + 1:], "file name"
    m = re.match(r"^\d{2}_[A-Za-z0-9-]+(?:_[A-Za-z][A-Za-z0-9-]*)*_([A-Za-z0-9.-]*\d[A-Za-z0-9.-]*)$", stem)
    if m:
        return name or "(unknown)", m.group(1), "file name"
    raise SubmissionError(f"{path}: no student ID (no export() metadata or call; file name is not "
                          "<NN_slug>_<id>.ipynb)")


def batch(folder: str | Path, out: str | Path | None = None, overwrite: bool = False) -> Path:
    """Build one PDF per notebook under ``folder`` (recursively) into ``out`` (default: ``folder``) and, there:

    * ``answers.csv``: one row per notebook, one column per question (1 answered, 0 not, empty: the notebook has
      no such question). A notebook that fails gets a row with its error; the others go on;
    * ``points.csv``: the grader's sheet: a first row with each question's maximum points, then one row per
      student with a column per question to fill in (0 already written where the question is not answered, empty
      where it is) and an empty ``total``;
    * ``summary.md``: who answered what: per question how many answered and who did not; per student the
      questions left unanswered.

    Returns the path of ``answers.csv``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"batch folder not found: {folder}")
    out_dir = Path(out) if out is not None else folder
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        raise SubmissionError(f"no .ipynb file under {folder}")
    rows: list[dict[str, Any]] = []
    numbers: set[str] = set()
    max_points: dict[str, float | None] = {}
    for path in notebooks:
        row: dict[str, Any] = {"file": str(path.relative_to(folder))}
        try:
            nb = _load_notebook(path)
            questions = read_questions(nb)
            slug = _slug(nb, questions, path.stem)
            name, sid, source = _identity(nb, path, slug)
            row.update(name=name, student_id=sid, id_from=source, notebook=slug)
            built = _build(nb, name, sid, path.parent, path.stem, path.name)
            row.update(questions=len(built.questions), answered=sum(q.answered for q in built.questions),
                       figures=sum(len(q.figures) for q in built.questions))
            for q in built.questions:
                row[q.number] = int(q.answered)
                numbers.add(q.number)
                max_points.setdefault(q.number, q.points)
            target = out_dir / f"{built.slug}_{_safe_id(sid)}.pdf"
            row["pdf"] = target.name
            if target.exists() and not overwrite:
                row["status"] = "exists (not overwritten; use --overwrite)"
            else:
                _write(target, built.pdf, overwrite)
                row["status"] = "ok" + ("; " + "; ".join(built.warnings) if built.warnings else "")
        except (SubmissionError, OSError) as err:
            row["status"] = f"error: {err}"
        print(f"{row['file']}: {row['status']}")
        rows.append(row)
    columns = ["file", "name", "student_id", "id_from", "notebook", "pdf", "questions", "answered", "figures",
               "status"] + sorted(numbers, key=_qkey)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "answers.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    ordered = sorted(numbers, key=_qkey)
    points_path = _write_points_sheet(out_dir / "points.csv", rows, ordered, max_points)
    summary_path = out_dir / "summary.md"
    summary_path.write_text(_summary(rows, ordered), encoding="utf-8")
    n_err = sum(str(r["status"]).startswith("error") for r in rows)
    print(f"{len(rows) - n_err} of {len(rows)} notebooks OK; table of answered questions: {csv_path}; "
          f"grading sheet: {points_path}; who answered what: {summary_path}")
    return csv_path


_ID_COLUMNS = ["file", "name", "student_id", "notebook"]


def _write_points_sheet(path: Path, rows: list[dict[str, Any]], numbers: list[str],
                        max_points: dict[str, float | None]) -> Path:
    """The grader's CSV: the maximum points, then one row per readable notebook (0 where not answered)."""
    columns = _ID_COLUMNS + numbers + ["total"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        top = {"file": "(max points)", **{n: f"{p:g}" if p is not None else "" for n, p in max_points.items()}}
        known = [p for p in max_points.values() if p is not None]
        writer.writerow({**top, "total": f"{sum(known):g}" if known else ""})
        for r in rows:
            if "questions" not in r:
                continue  # the notebook could not be read: no row to grade (answers.csv says why)
            cells = {n: ("" if r[n] else "0") for n in numbers if n in r}
            writer.writerow({**{k: r.get(k, "") for k in _ID_COLUMNS}, **cells, "total": ""})
    return path


def _summary(rows: list[dict[str, Any]], numbers: list[str]) -> str:
    """Markdown: per question who answered (count) and who did not; per student what is missing; failures."""
    ok = [r for r in rows if "questions" in r]
    who = lambda r: f"{r.get('name', '(unknown)')} ({r.get('student_id', '?')})"  # noqa: E731
    out = ["# Submissions: who answered what", "", f"{len(ok)} of {len(rows)} notebooks read.", "",
           "## Per question", "", "| question | answered | not answered by |", "| --- | --- | --- |"]
    for n in numbers:
        has = [r for r in ok if n in r]
        missing = [who(r) for r in has if not r[n]]
        out.append(f"| {n} | {len(has) - len(missing)} of {len(has)} | {', '.join(missing) or '-'} |")
    out += ["", "## Per student", "", "| student | file | answered | not answered |", "| --- | --- | --- | --- |"]
    for r in ok:
        missing = [n for n in numbers if n in r and not r[n]]
        out.append(f"| {who(r)} | {r['file']} | {r['answered']} of {r['questions']} | {', '.join(missing) or '-'} |")
    failed = [r for r in rows if "questions" not in r]
    if failed:
        out += ["", "## Not read", ""] + [f"- {r['file']}: {r['status']}" for r in failed]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.submission",
        description="Build the submission PDF of a course notebook (or, with --batch, of every notebook in a "
                    "folder, plus answers.csv).")
    parser.add_argument("notebook", nargs="?", help="the saved notebook (.ipynb)")
    parser.add_argument("--name", help="the student's name")
    parser.add_argument("--id", dest="student_id", help="the student ID")
    parser.add_argument("--out", help="output PDF file or folder (batch: output folder; default: next to the input)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing PDFs")
    parser.add_argument("--batch", metavar="FOLDER", help="build a PDF for every notebook under FOLDER, and "
                        "answers.csv (name/ID from the notebook metadata, its export() call or the file name "
                        "<NN_slug>_<id>.ipynb)")
    args = parser.parse_args(argv)
    try:
        if args.batch:
            if args.notebook:
                parser.error("give either a notebook or --batch FOLDER, not both")
            csv_path = batch(args.batch, args.out, args.overwrite)
            with open(csv_path, encoding="utf-8") as f:
                failed = any(r["status"].startswith("error") for r in csv.DictReader(f))
            return 1 if failed else 0
        if not args.notebook or not args.name or not args.student_id:
            parser.error("give a notebook, --name and --id (or --batch FOLDER)")
        path = build_pdf(args.notebook, args.name, args.student_id, out=args.out, overwrite=args.overwrite)
        print(f"Wrote {path}")
        return 0
    except (SubmissionError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
