"""Markdown of questions and answers -> the token tree that the PDF writer draws.

Parsing is mistune 3's (CommonMark with GitHub tables and strikethrough, ``$...$`` / ``$$...$$`` math, bare URLs
as links), through its AST renderer: :func:`parse` returns the block tokens as mistune writes them (dicts with
``type``, ``children``, ``raw``, ``attrs``). The writer walks them; :func:`spans` flattens the inline children of a
paragraph into styled :class:`Span` s, :func:`plain_text` into one string (table cells), and :func:`image_sources`
lists the images an answer shows (read before drawing, so a missing file fails early).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .mathrender import latex_to_text

__all__ = ["PLUGINS", "Span", "parse", "spans", "plain_text", "image_sources", "html_text"]

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
