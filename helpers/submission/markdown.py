"""Markdown -> blocks and styled runs for the PDF writer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .mathrender import latex_to_text
from .reading import _IMAGE_REF


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
