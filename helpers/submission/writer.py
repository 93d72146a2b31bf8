"""The page layout of the submission PDF on fpdf2: fonts, lines of styled text with formulas, Markdown blocks,
figures.

Text is laid out here, not by fpdf's ``write``/``multi_cell`` (which break a word in the middle when a styled run
began the line, "sensit / ivity"): a paragraph becomes words (runs of text in one or several styles, and inline
formulas, with no space between them), words are put on lines greedily and never split (unless one word is wider
than the line), and each line is as tall as its tallest formula, every piece sitting on one baseline. Formulas are
images drawn by :mod:`~helpers.submission.mathrender`; what mathtext cannot draw is written as readable text.

Not by fpdf2's ``write_html`` either (issue #39; tried in commit 397beed): it puts an ``<img>`` above its paragraph,
not on the line, so every paragraph, heading or list item that may hold an inline formula needs this layout anyway.
write_html for the blocks without formulas was a second renderer of the same Markdown (+138 lines: its fonts, sizes,
colours and spacing kept equal to these by hand, a workaround for fpdf2 2.8.9 never ending ``<del>``'s
strikethrough) for the same pages and file size, no faster. Code blocks (``multi_cell``: write_html's ``<pre>`` has no
background) and tables (fpdf2's ``table()``, which write_html's ``<table>`` wraps) are fpdf2's own rendering.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import markdown
from .markdown import Span
from .mathrender import Formula, latex_to_text, render

__all__ = ["Writer", "BODY_SIZE", "GREY", "RED", "BLUE"]

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
BODY_SIZE = 10.5  # pt
DISPLAY_MATH_SIZE = 12.0  # pt: display formulas, a little larger than the text
LINE = 5.2  # mm: line height of body text
GREY = (90, 90, 90)
RED = (200, 0, 0)
BLUE = (20, 60, 160)
_CODE = (150, 30, 30)
_PT = 25.4 / 72  # mm per point
_MATH_PAD = 0.25  # mm kept free above and below an inline formula


def _ttf_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return path if (path / "DejaVuSans.ttf").is_file() else None


@dataclass
class _Piece:
    """An unbreakable piece of a line: text in one style, a space (where a line may break), or a formula."""

    text: str
    width: float  # mm
    family: str = "body"
    style: str = ""
    size: float = BODY_SIZE
    color: tuple = (0, 0, 0)
    link: str = ""
    strike: bool = False
    space: bool = False
    formula: Formula | None = None

    def same_run(self, other: _Piece) -> bool:
        return (self.formula is None and other.formula is None and self.family == other.family
                and self.style == other.style and self.size == other.size and self.color == other.color
                and self.link == other.link and self.strike == other.strike)


_BREAK = _Piece("\n", 0.0)  # a hard line break


class Writer:
    """Wraps an fpdf2 document: fonts, glyph-safe text, paragraphs with inline formulas, Markdown blocks,
    figures."""

    def __init__(self, footer: str) -> None:
        from fpdf import FPDF

        writer = self

        class _Doc(FPDF):
            def footer(self) -> None:
                self.set_y(-13)
                writer.font("body", "", 8)
                self.set_text_color(*GREY)
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
        self._marker: tuple[float, str, tuple] | None = None  # a list item's bullet, drawn with its first line
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

    # -- fonts and glyphs --------------------------------------------------------------------------------------

    def font(self, family: str, style: str = "", size: float = BODY_SIZE) -> None:
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

    # -- lines of text -----------------------------------------------------------------------------------------

    def _text_pieces(self, text: str, family: str, style: str, size: float, color: tuple, link: str,
                     strike: bool) -> list[_Piece]:
        self.font(family, style, size)
        out = []
        for token in re.findall(r"\s+|\S+", text):
            if token.isspace():
                out.append(_Piece(" ", self.pdf.get_string_width(" "), family, style, size, color, link, strike,
                                  space=True))
            else:
                token = self.clean(token)
                out.append(_Piece(token, self.pdf.get_string_width(token), family, style, size, color, link,
                                  strike))
        return out

    def _pieces(self, spans: Sequence[Span], size: float, color: tuple, bold: bool, width: float) -> list[_Piece]:
        """Spans -> pieces; inline formulas drawn by mathtext at the text's size (shrunk to ``width`` if wider), or
        written as text."""
        out: list[_Piece] = []
        for s in spans:
            if s.kind == "break":
                out.append(_BREAK)
            elif s.kind == "math":
                formula = render(s.text, size, tuple(color), inline=True)
                if formula is not None and formula.width > width:
                    k = width / formula.width
                    formula = replace(formula, width=width, height=formula.height * k, depth=formula.depth * k)
                if formula is not None:
                    out.append(_Piece("", formula.width, size=size, color=color, link=s.link, formula=formula))
                else:  # mathtext cannot draw it: readable text, in italics
                    out += self._text_pieces(latex_to_text(s.text).strip(), "body", "BI" if bold else "I", size, color,
                                             s.link, False)
            elif s.kind == "image":
                out += self._text_pieces(f"[image: {s.text or s.link}]", "body", "I", size, color, s.link, False)
            elif s.code:
                out += self._text_pieces(s.text, "mono", "", size - 1, _CODE, s.link, s.strike)
            else:
                style = ("B" if s.bold or bold else "") + ("I" if s.italic else "")
                out += self._text_pieces(s.text, "body", style, size, BLUE if s.link else color, s.link, s.strike)
        return out

    def _lines(self, pieces: list[_Piece], width: float) -> list[list[_Piece]]:
        """Greedy line breaking at spaces: a word (the pieces between two spaces) never splits, unless it alone is
        wider than the line. Spaces at the start and end of a line are dropped."""
        words: list[list[_Piece]] = []  # words, with spaces and breaks as one-piece entries
        for p in pieces:
            if p.space or p is _BREAK:
                words.append([p])
            elif words and not (words[-1][0].space or words[-1][0] is _BREAK):
                words[-1].append(p)
            else:
                words.append([p])
        lines: list[list[_Piece]] = [[]]
        used = 0.0
        pending: _Piece | None = None  # a space, put down only when a word follows on the same line
        for word in words:
            if word[0] is _BREAK:
                lines.append([])
                used, pending = 0.0, None
                continue
            if word[0].space:
                pending = word[0] if lines[-1] else None
                continue
            w = sum(p.width for p in word)
            gap = pending.width if pending is not None else 0.0
            if lines[-1] and used + gap + w > width + 1e-6:
                lines.append([])
                used, gap, pending = 0.0, 0.0, None
            if pending is not None:
                lines[-1].append(pending)
                used += gap
                pending = None
            if w > width + 1e-6 and not lines[-1]:  # longer than a whole line (a URL): cut it where it must
                for p in self._cut(word, width):
                    if lines[-1] and used + p.width > width + 1e-6:
                        lines.append([])
                        used = 0.0
                    lines[-1].append(p)
                    used += p.width
                continue
            lines[-1].extend(word)
            used += w
        return [line for line in lines if line] or [[]]

    def _cut(self, word: list[_Piece], width: float) -> list[_Piece]:
        """A word wider than the line, cut into pieces that fit (formulas stay whole)."""
        out = []
        for p in word:
            if p.formula is not None or p.width <= width:
                out.append(p)
                continue
            self.font(p.family, p.style, p.size)
            chunk = ""
            for ch in p.text:
                if chunk and self.pdf.get_string_width(chunk + ch) > width:
                    out.append(_Piece(chunk, self.pdf.get_string_width(chunk), p.family, p.style, p.size, p.color,
                                      p.link, p.strike))
                    chunk = ""
                chunk += ch
            if chunk:
                out.append(_Piece(chunk, self.pdf.get_string_width(chunk), p.family, p.style, p.size, p.color,
                                  p.link, p.strike))
        return out

    def _draw_line(self, line: list[_Piece], size: float, align: str = "L") -> None:
        """One line at the current y: as tall as its tallest formula (at least the normal line height), every piece
        on one baseline; a new page first when it does not fit."""
        pdf = self.pdf
        fs = size * _PT
        normal = LINE * size / BODY_SIZE
        up, down = 0.5 * normal + 0.3 * fs, 0.5 * normal - 0.3 * fs  # fpdf's own baseline within a line
        for p in line:
            if p.formula is not None:
                up = max(up, p.formula.ascent + _MATH_PAD)
                down = max(down, p.formula.depth + _MATH_PAD)
        top = pdf.get_y()
        if top + up + down > pdf.h - pdf.b_margin and top > pdf.t_margin + 1:
            pdf.add_page()
            top = pdf.get_y()
        base = top + up
        x = pdf.l_margin + pdf.c_margin  # where fpdf's cells (labels, headings) put their text
        if align == "C":
            x += max(0.0, (self._width() - sum(p.width for p in line)) / 2)
        if self._marker is not None:
            mx, text, color = self._marker
            self._marker = None
            self._draw_text(mx + pdf.c_margin, base, text, "body", "", size, color, "", False)
        runs: list[_Piece] = []
        for p in line:  # same-style neighbours in one text run: what a PDF reader extracts keeps its spaces
            if runs and runs[-1].same_run(p):
                runs[-1] = _Piece(runs[-1].text + p.text, runs[-1].width + p.width, p.family, p.style, p.size,
                                  p.color, p.link, p.strike)
            else:
                runs.append(p)
        for r in runs:
            if r.formula is not None:
                pdf.image(io.BytesIO(r.formula.png), x=x, y=base - r.formula.ascent, w=r.formula.width,
                          h=r.formula.height, link=r.link or "")
            else:
                self._draw_text(x, base, r.text, r.family, r.style, r.size, r.color, r.link, r.strike)
            x += r.width
        pdf.set_xy(pdf.l_margin, base + down)

    def _draw_text(self, x: float, base: float, text: str, family: str, style: str, size: float, color: tuple,
                   link: str, strike: bool) -> None:
        pdf = self.pdf
        self.font(family, style, size)
        pdf.set_text_color(*color)
        fs = size * _PT
        margin, pdf.c_margin = pdf.c_margin, 0.0
        try:  # a cell as tall as the font puts its baseline 0.8 font sizes below its top
            pdf.set_xy(x, base - 0.8 * fs)
            pdf.cell(pdf.get_string_width(text), fs, text, link=link or "")
        finally:
            pdf.c_margin = margin
        if strike:
            pdf.set_draw_color(*color)
            pdf.set_line_width(0.2)
            pdf.line(x, base - 0.3 * fs, x + pdf.get_string_width(text), base - 0.3 * fs)
        pdf.set_text_color(0, 0, 0)

    def _width(self) -> float:
        """The width of a line of text: between the margins, less fpdf's cell margin on either side."""
        pdf = self.pdf
        return pdf.w - pdf.r_margin - pdf.l_margin - 2 * pdf.c_margin

    def text(self, spans: Sequence[Span], size: float = BODY_SIZE, color: tuple = (0, 0, 0), bold: bool = False,
             align: str = "L", after: float = 1.2) -> None:
        """Inline content as lines from the left margin, then ``after`` mm of space."""
        pdf = self.pdf
        pdf.set_x(pdf.l_margin)
        width = self._width()
        for line in self._lines(self._pieces(spans, size, color, bold, width), width):
            self._draw_line(line, size, align)
        pdf.set_text_color(0, 0, 0)
        pdf.ln(after)

    # -- Markdown blocks ---------------------------------------------------------------------------------------

    def markdown(self, md: str, images: dict[str, bytes | None], color: tuple = (0, 0, 0)) -> None:
        """Markdown (questions, answers) with the answer's images (src -> bytes; None: a web link, not drawn)."""
        self.blocks(markdown.parse(md), images, color)
        self.pdf.set_text_color(0, 0, 0)

    def _flush_marker(self) -> None:
        """A list item that starts with a block other than text: its bullet on a line of its own."""
        if self._marker is not None:
            self._draw_line([], BODY_SIZE)

    def blocks(self, tokens: list[dict[str, Any]], images: dict[str, bytes | None], color: tuple,
               tight: bool = False) -> None:
        pdf = self.pdf
        for tok in tokens:
            kind = tok.get("type")
            if kind in ("paragraph", "block_text"):
                self._paragraph(tok.get("children", []), images, color, 0.4 if tight else 1.2)
                continue
            if kind == "heading":
                self._flush_marker()
                level = tok.get("attrs", {}).get("level", 1)
                pdf.ln(1)
                self.text(markdown.spans(tok.get("children", [])), {1: 14, 2: 13, 3: 12}.get(level, 11), color,
                          bold=True)
            elif kind == "list":
                self._list(tok, images, color)
            elif kind == "block_code":
                self._flush_marker()
                self.code(tok.get("raw", "").rstrip("\n"))
            elif kind == "block_math":
                self._flush_marker()
                self.display_math(tok.get("raw", ""), color)
            elif kind == "block_quote":
                self._flush_marker()
                base = pdf.l_margin
                pdf.set_left_margin(base + 6)
                self.blocks(tok.get("children", []), images, GREY)
                pdf.set_left_margin(base)
            elif kind == "thematic_break":
                self._flush_marker()
                y = pdf.get_y() + 1
                pdf.set_draw_color(180, 180, 180)
                pdf.line(pdf.l_margin, y, pdf.w - pdf.r_margin, y)
                pdf.ln(3)
            elif kind == "table":
                self._flush_marker()
                self._table(tok, color)
            elif kind == "block_html":
                text = " ".join(markdown.html_text(tok.get("raw", "")).split())
                if text:
                    self.text([Span("text", text)], color=color)
        self._flush_marker()

    def _paragraph(self, children: list[dict[str, Any]], images: dict[str, bytes | None], color: tuple,
                   after: float) -> None:
        spans = markdown.spans(children)
        shown = [s for s in spans if s.kind == "image"]
        if shown and all(s.kind == "image" or (s.kind == "text" and not s.text.strip()) for s in spans):
            self._flush_marker()
            for s in shown:  # a paragraph of images only: the images, or their links where not drawn
                data = images.get(s.link)
                if data is None:
                    self.text([Span("text", f"[image: {s.text or s.link}]", italic=True, link=s.link)], color=color)
                else:
                    self.figure(data, s.text or s.link)
            return
        self.text(spans, color=color, after=after)
        for s in shown:  # images inside a line of text: drawn below it
            data = images.get(s.link)
            if data is not None:
                self.figure(data, s.text or s.link)

    def _list(self, tok: dict[str, Any], images: dict[str, bytes | None], color: tuple) -> None:
        pdf = self.pdf
        attrs = tok.get("attrs", {})
        depth, ordered, start = attrs.get("depth", 0), attrs.get("ordered", False), attrs.get("start", 1)
        self._flush_marker()
        base = pdf.l_margin
        indent = base + (2 if depth == 0 else 0)
        tight = bool(tok.get("tight", True))
        for k, item in enumerate(tok.get("children", [])):
            bullet = f"{start + k}." if ordered else ("•" if depth % 2 == 0 else "◦")
            self.font("body", "", BODY_SIZE)
            self._marker = (indent, self.clean(bullet), color)
            pdf.set_left_margin(indent + 6)
            pdf.set_x(indent + 6)
            self.blocks(item.get("children", []), images, color, tight=tight)
            pdf.set_left_margin(base)
            pdf.set_x(base)
        if depth == 0:
            pdf.ln(1.2 if tight else 0)

    def code(self, text: str) -> None:
        pdf = self.pdf
        self.font("mono", "", 8.5)
        pdf.set_fill_color(242, 242, 242)
        pdf.set_x(pdf.l_margin)
        pdf.multi_cell(0, 4.3, self.clean(text) or " ", fill=True, align="L", new_x="LMARGIN", new_y="NEXT",
                       padding=(1.5, 2, 1.5, 2))
        pdf.ln(1.5)

    def display_math(self, tex: str, color: tuple = (0, 0, 0)) -> None:
        """A display formula centred, drawn by mathtext; readable text (centred, italic) where it cannot."""
        formula = render(tex, DISPLAY_MATH_SIZE, tuple(color))
        if formula is not None:
            self.formula(formula)
            return
        self.text([Span("text", latex_to_text(tex).strip(), italic=True)], color=color, align="C")

    def _table(self, tok: dict[str, Any], color: tuple) -> None:
        pdf = self.pdf
        rows: list[list[str]] = []
        aligns: list[str] = []
        for part in tok.get("children", []):
            part_rows = [part] if part.get("type") == "table_head" else part.get("children", [])
            for row in part_rows:
                cells = row.get("children", [])
                if part.get("type") == "table_head":
                    aligns = [(c.get("attrs", {}).get("align") or "left").upper() for c in cells]
                rows.append([" ".join(markdown.plain_text(c.get("children", [])).split()) for c in cells])
        if not rows:
            return
        ncol = max(len(r) for r in rows)
        aligns = (aligns + ["LEFT"] * ncol)[:ncol]
        self.font("body", "B", 9)  # the header row's face, loaded before fpdf's table asks for it
        self.font("body", "", 9)
        pdf.set_text_color(*color)
        pdf.set_x(pdf.l_margin)
        with pdf.table(text_align=tuple(aligns), line_height=4.6, width=pdf.w - pdf.l_margin - pdf.r_margin,
                       align="LEFT") as table:
            for r in rows:
                row = table.row()
                for c in r + [""] * (ncol - len(r)):
                    row.cell(self.clean(c))
        pdf.set_text_color(0, 0, 0)
        pdf.ln(2)

    # -- images ------------------------------------------------------------------------------------------------

    def formula(self, formula: Formula) -> None:
        """A display formula centred at its natural size (at most the text width)."""
        pdf = self.pdf
        w, h = formula.width, formula.height
        avail = pdf.w - pdf.l_margin - pdf.r_margin
        if w > avail:
            w, h = avail, h * avail / w
        if pdf.get_y() + h + 2 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.image(io.BytesIO(formula.png), x=pdf.l_margin + (avail - w) / 2, y=pdf.get_y() + 0.5, w=w, h=h)
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
        avail = pdf.w - pdf.l_margin - pdf.r_margin
        w = min(avail, w_px / 110 * 25.4)  # about 110 dpi, at most the text width
        h = w * h_px / w_px
        max_h = (pdf.h - pdf.t_margin - pdf.b_margin) * 0.6
        if h > max_h:
            w, h = w * max_h / h, max_h
        if pdf.get_y() + h + 8 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.image(img, x=pdf.l_margin + (avail - w) / 2, y=pdf.get_y(), w=w, h=h)
        pdf.set_y(pdf.get_y() + h + 1)
        self.font("body", "I", 8.5)
        pdf.set_text_color(*GREY)
        pdf.set_x(pdf.l_margin)
        pdf.multi_cell(0, 4, self.clean(caption), align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
        pdf.ln(2)
