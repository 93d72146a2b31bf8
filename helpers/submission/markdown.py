"""Markdown of questions and answers -> the token tree that the PDF writer draws.

Parsing is mistune 3's (CommonMark with GitHub tables and strikethrough, ``$...$`` / ``$$...$$`` math, bare URLs
as links), through its AST renderer: :func:`parse` returns the block tokens as mistune writes them (dicts with
``type``, ``children``, ``raw``, ``attrs``). The writer walks them; :func:`spans` flattens the inline children of a
paragraph into styled :class:`Span` s, :func:`plain_text` into one string (table cells), and :func:`image_sources`
lists the images an answer shows (read before drawing, so a missing file fails early). Blocks without formulas,
images, code blocks or tables (:func:`html_ready`) become the restricted HTML that fpdf2's ``write_html`` lays out
(:func:`to_html`): only tags it renders, every text escaped, raw HTML reduced to its text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .mathrender import latex_to_text

__all__ = ["PLUGINS", "Span", "parse", "spans", "plain_text", "image_sources", "html_text", "html_ready", "to_html"]

#: mistune plugins: what answers use beyond CommonMark
PLUGINS = ("table", "math", "strikethrough", "url")

_TAG = re.compile(r"<[^<>]*>")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BR = re.compile(r"^<br\s*/?>$", re.IGNORECASE)

Token = dict[str, Any]


@dataclass(frozen=True)
class Span:
    """One piece of inline content: ``kind`` is ``"text"``, ``"math"`` (``text`` is the TeX), ``"image"`` (``text``
    the alt text, ``link`` the source) or ``"break"`` (a hard line break)."""

    kind: str
    text: str = ""
    bold: bool = False
    italic: bool = False
    code: bool = False
    strike: bool = False
    link: str = ""


_NEEDS = "the submission PDF needs mistune 3 (requirements.txt; Colab preinstalls it): pip install 'mistune>=3'"


@lru_cache(maxsize=1)
def _parser() -> Any:
    try:
        import mistune
    except ImportError as err:
        raise ImportError(_NEEDS) from err
    version = str(getattr(mistune, "__version__", "0"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < 3:
        raise ImportError(f"{_NEEDS} (found mistune {version})")
    return mistune.create_markdown(renderer=None, plugins=list(PLUGINS))


def parse(md: str) -> list[Token]:
    """Markdown -> mistune's block tokens, without the ``blank_line`` ones: ``paragraph``, ``heading``
    (``attrs.level``), ``list`` (``attrs.ordered``, ``attrs.start``, ``attrs.depth``; ``list_item`` children holding
    ``block_text`` or ``paragraph`` and nested blocks), ``block_code``, ``block_math``, ``block_quote``, ``table``,
    ``thematic_break``, ``block_html``."""
    return [t for t in _parser()(md) if t.get("type") != "blank_line"]


def html_text(raw: str) -> str:
    """The text of raw HTML: comments and tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", _COMMENT.sub("", raw)))


def spans(children: list[Token], *, bold: bool = False, italic: bool = False, strike: bool = False,
          link: str = "") -> list[Span]:
    """Inline tokens -> spans, styles inherited from the enclosing ``strong`` / ``emphasis`` / ``strikethrough`` /
    ``link``. A soft line break is a space, ``<br>`` a hard break; other inline HTML is dropped."""
    out: list[Span] = []
    style = {"bold": bold, "italic": italic, "strike": strike, "link": link}
    children = _join_double_dollars(children)
    for tok in children:
        kind = tok.get("type")
        if kind == "text":
            out.append(Span("text", html.unescape(tok.get("raw", "")), **style))
        elif kind == "strong":
            out += spans(tok.get("children", []), **{**style, "bold": True})
        elif kind == "emphasis":
            out += spans(tok.get("children", []), **{**style, "italic": True})
        elif kind == "strikethrough":
            out += spans(tok.get("children", []), **{**style, "strike": True})
        elif kind == "link":
            out += spans(tok.get("children", []), **{**style, "link": tok.get("attrs", {}).get("url", "")})
        elif kind == "codespan":
            out.append(Span("text", tok.get("raw", ""), code=True, strike=strike, link=link))
        elif kind in ("inline_math", "block_math"):  # "$$x$$" inside a line of text: drawn in the line
            out.append(Span("math", tok.get("raw", ""), link=link))
        elif kind == "image":
            out.append(Span("image", plain_text(tok.get("children", [])), link=tok.get("attrs", {}).get("url", "")))
        elif kind == "linebreak":
            out.append(Span("break"))
        elif kind == "softbreak":
            out.append(Span("text", " ", **style))
        elif kind == "inline_html":
            if _BR.match(tok.get("raw", "").strip()):
                out.append(Span("break"))
        elif "children" in tok:
            out += spans(tok["children"], **style)
        elif tok.get("raw"):
            out.append(Span("text", html.unescape(tok["raw"]), **style))
    return out


def _join_double_dollars(children: list[Token]) -> list[Token]:
    """mistune before 3.3 (Colab's 3.2) reads ``a $$x$$ b`` as inline math ``$x`` then text ``$ b``; newer ones as
    math ``x``: the same tokens for both."""
    out = list(children)
    for i, tok in enumerate(out[:-1]):
        nxt = out[i + 1]
        if (tok.get("type") == "inline_math" and tok.get("raw", "").startswith("$") and nxt.get("type") == "text"
                and nxt.get("raw", "").startswith("$")):
            out[i] = {**tok, "raw": tok["raw"][1:]}
            out[i + 1] = {**nxt, "raw": nxt["raw"][1:]}
    return out


def plain_text(children: list[Token]) -> str:
    """Inline tokens -> one line of text (math as readable text, images as their alt text)."""
    parts = []
    for s in spans(children):
        parts.append(latex_to_text(s.text) if s.kind == "math" else " " if s.kind == "break" else s.text)
    return "".join(parts)


def _walk(tokens: list[Token]):
    for tok in tokens:
        yield tok
        if isinstance(tok.get("children"), list):
            yield from _walk(tok["children"])


def image_sources(md: str) -> list[tuple[str, str]]:
    """The ``(alt, src)`` of every image the Markdown shows, in order (duplicates kept)."""
    return [(plain_text(t.get("children", [])), t.get("attrs", {}).get("url", ""))
            for t in _walk(parse(md)) if t.get("type") == "image"]


_HTML_BLOCKS = ("paragraph", "block_text", "heading", "list", "thematic_break", "block_html")  # quotes: their blocks
_NOT_HTML = ("inline_math", "block_math", "image", "block_code", "table")


def html_ready(tok: Token) -> bool:
    """Whether fpdf2's ``write_html`` can lay out a block: text blocks and lists without a formula, an image, a code
    block or a table anywhere inside (those are drawn by the writer itself). Not quotes: write_html indents only a
    quote's first paragraph; the writer indents the quote and hands its blocks on one by one.

    Args:
        tok: a block token of :func:`parse`.

    Returns:
        True when :func:`to_html` renders the whole block.
    """
    return tok.get("type") in _HTML_BLOCKS and all(t.get("type") not in _NOT_HTML for t in _walk([tok]))


@lru_cache(maxsize=1)
def _html_renderer() -> type:
    _parser()  # mistune 3, or an ImportError that says what to install
    from mistune import HTMLRenderer

    class _Restricted(HTMLRenderer):
        """mistune's HTML, restricted to what fpdf2's write_html renders."""

        def __init__(self, clean: Callable[[str, bool], str], line_height: float) -> None:
            super().__init__(escape=True)
            self._clean, self._lh = clean, f' line-height="{line_height:.3f}"'

        def text(self, text: str) -> str:
            return html.escape(self._clean(html.unescape(text), False), quote=False)

        def codespan(self, text: str) -> str:
            return "<code>" + html.escape(self._clean(text, True), quote=False) + "</code>"

        def strikethrough(self, text: str) -> str:
            return "<s>" + text + "</s>"  # fpdf2 2.8.9 never ends <del> (its end tag is missing from the list)

        def linebreak(self) -> str:
            return "<br>"

        def softbreak(self) -> str:
            return " "

        def inline_html(self, html_: str) -> str:
            return "<br>" if _BR.match(html_.strip()) else ""

        def block_html(self, html_: str) -> str:
            text = " ".join(html_text(html_).split())
            return self.paragraph(self.text(text)) if text else ""

        def paragraph(self, text: str) -> str:
            return f"<p{self._lh}>{text}</p>"

        def list(self, text: str, ordered: bool, **attrs: Any) -> str:
            tag = "ol" if ordered else "ul"
            start = f' start="{attrs["start"]}"' if ordered and attrs.get("start") else ""
            return f"<{tag}{start}{self._lh}>{text}</{tag}>"

    return _Restricted


def to_html(tokens: list[Token], clean: Callable[[str, bool], str], line_height: float) -> str:
    """Blocks that :func:`html_ready` accepts -> HTML for fpdf2's ``write_html``.

    Args:
        tokens: block tokens of :func:`parse`.
        clean: ``clean(text, code)`` returns the text with the characters the font (``code``: the monospaced one)
            cannot draw replaced.
        line_height: the line height of paragraphs and list items, in font sizes.

    Returns:
        The HTML: paragraphs, headings, lists (numbered from their start), rules, links, emphasis, code spans,
        strikethrough and line breaks; raw HTML as its text.
    """
    from mistune.core import BlockState

    return _html_renderer()(clean, line_height)(tokens, BlockState())
