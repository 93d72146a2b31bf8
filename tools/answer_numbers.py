"""Does every number a model answer quotes appear in what the executed solution printed? (maintainers)

    python tools/time_class_mode.py 04_gradcam --out /tmp/class       # run the solution in class mode first
    python tools/answer_numbers.py /tmp/class/04_gradcam.ipynb        # then list the answers' unprinted numbers
    python tools/answer_numbers.py /tmp/class/*.ipynb --answers solutions   # the edited answers, same outputs

Model answers must state only what the executed solution prints, on the split it uses. This script takes executed
notebooks and, for each model answer (a markdown cell between ``### BEGIN SOLUTION`` and ``### END SOLUTION``),
lists the decimal numbers (``0.93``, ``-1.5``) and percentages (``12 %``, ``4.5%``) that occur neither in the
notebook's printed outputs (streams, text results, error-free display data) nor in its own sources (theory text,
parameters: a threshold ``0.5`` set in the code may be quoted). A percentage also matches its fraction
(``12 %`` <-> ``0.12``) and the other way round. Integers are not checked (section numbers, years, sizes).

Exit status 1 when an answer quotes an unprinted number (each is listed with its question), 0 otherwise. A flagged
number is either measured and printed by the solution, or removed / hedged in the answer.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from helpers import convention

# a decimal or a percentage, not part of a longer token (arXiv ids 1610.02391, versions 2.9.1, x1.5 are skipped)
NUMBER = re.compile(r"(?<![\w.\-/])(-?\d+(?:\.\d+)?)(\s?%)?(?![\w.]*\d)(?![\w/])")


@dataclass(frozen=True)
class Unprinted:
    """A number quoted in the model answer of ``question`` that the executed notebook does not print."""

    notebook: str
    question: str
    text: str


def _numbers(text: str) -> list[tuple[str, bool]]:
    """``(number, is_percentage)`` for each decimal or percentage in ``text`` (integers without % are skipped)."""
    out = []
    for m in NUMBER.finditer(text):
        num, pct = m.group(1), bool(m.group(2))
        if re.fullmatch(r"\d{4}\.\d{4,5}", num):  # an arXiv identifier
            continue
        if pct or "." in num:
            out.append((num, pct))
    return out


def _values(text: str) -> set[str]:
    """Every number in ``text`` as a canonical string (``0.50`` -> ``0.5``), fractions of percentages added."""
    vals: set[str] = set()
    for m in re.finditer(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text):
        vals.add(_canon(m.group(0)))
        after = text[m.end():m.end() + 2]
        if "%" in after:
            vals.add(_canon(str(float(m.group(0)) / 100)))
    return vals


def _canon(num: str) -> str:
    try:
        return repr(round(float(num), 10))
    except ValueError:
        return num


def _matches(num: str, pct: bool, printed: set[str]) -> bool:
    if _canon(num) in printed:
        return True
    if pct:  # "12 %" is printed as 0.12, or "12.0 %"
        return _canon(str(float(num) / 100)) in printed
    return _canon(str(float(num) * 100)) in printed  # "0.12" printed as "12 %"


def printed_text(nb) -> str:
    """All text the executed notebook shows: streams, text/plain results and errors (images are skipped)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif out.get("output_type") in ("execute_result", "display_data"):
                parts.append(str(out.get("data", {}).get("text/plain", "")))
            elif out.get("output_type") == "error":
                parts.append(" ".join(out.get("traceback", [])))
    return "\n".join(parts)


def model_answers(nb) -> list[tuple[str, str]]:
    """``(question number, answer text)`` for each markdown model answer, in order."""
    answers, question = [], "?"
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        src = convention.cell_source(cell)
        header = convention.parse_header(src)
        if header is not None:
            question = header.number
        answer = convention.solution_text(src)
        if answer is not None:
            answers.append((question, answer))
    return answers


def unprinted_numbers(nb, name: str = "", answers_from=None) -> list[Unprinted]:
    """The numbers of ``nb``'s model answers found neither in its outputs nor in its other cells' sources.

    ``answers_from``: take the model answers from this notebook instead (e.g. the edited solution, checked against
    the outputs of an earlier run of it)."""
    answers = model_answers(answers_from if answers_from is not None else nb)
    answer_cells = {id(c) for c in nb.cells
                     if c.cell_type == "markdown" and convention.solution_text(convention.cell_source(c)) is not None}
    sources = "\n".join("".join(c.source) for c in nb.cells if id(c) not in answer_cells)
    known = _values(printed_text(nb)) | _values(sources)
    found = []
    for question, text in answers:
        for num, pct in _numbers(text):
            if not _matches(num, pct, known):
                found.append(Unprinted(name, question, num + (" %" if pct else "")))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="executed solution notebooks (.ipynb)")
    parser.add_argument("--answers", type=Path, default=None,
                        help="folder of solution notebooks whose (edited) model answers are checked against the "
                             "outputs of the executed notebooks of the same name (default: the executed answers)")
    args = parser.parse_args(argv)
    bad = 0
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        source = nbformat.read(args.answers / path.name, as_version=4) if args.answers else None
        if not printed_text(nb).strip():
            print(f"{path.name}: no outputs: run it first (tools/time_class_mode.py --out DIR)", file=sys.stderr)
            bad += 1
            continue
        missing = unprinted_numbers(nb, path.name, source)
        answers = model_answers(source if source is not None else nb)
        n = sum(len(_numbers(t)) for _, t in answers)
        print(f"{path.name}: {n} numbers in {len(answers)} model answers, {len(missing)} not printed")
        for m in missing:
            print(f"  {m.question}: {m.text}")
        bad += bool(missing)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
