"""The submission PDF: page layout on fpdf2 (fonts, Markdown blocks, formulas, figures) and :func:`build_pdf`."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import convention, course
from .markdown import _blocks, _inline, _Run
from .mathrender import _MATH_DPI, _mathtext_png, latex_to_text
from .reading import (
    _IMAGE_REF,
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
