"""The submission PDF of a notebook, in memory (:func:`_build`) and as a file (:func:`build_pdf`); the page
layout is :mod:`~helpers.submission.writer`'s."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import convention, course
from .reading import (
    Question,
    SubmissionError,
    _answer_images,
    _check_identity,
    _collect_figures,
    _default_stem,
    _load_notebook,
    _notebook_number,
    _notebook_title,
    _safe_id,
    _slug,
    read_questions,
)
from .writer import BLUE as _BLUE
from .writer import GREY as _GREY
from .writer import RED as _RED
from .writer import Writer


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

    w = Writer(f"{name} ({student_id}) · {title}")
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
            w.code(q.answer)
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
