"""How long a notebook takes a student in class: the workload of each student copy, counted, and an estimate.

    python tools/time_estimate.py                          # every notebook, workload and estimate
    python tools/time_estimate.py --executed DIR           # add the measured run time of class-mode runs in DIR
    python tools/time_estimate.py --markdown               # the table of docs/time_estimates.md

What is *counted* (from ``notebooks/``, what a student sees): words of prose (markdown, formulas counted as
words), display formulas, lines of code to read (cells that are not exercises), the exercises (code cells with the
``# YOUR CODE HERE`` placeholder) and the lines of their model solutions in ``solutions/``, the TOSUBMIT questions
and their points (questions marked *homework* are counted apart: not class time). With ``--executed DIR`` (the
output of ``tools/time_class_mode.py --out DIR``), the summed cell run times of that class-mode run.

What is *assumed* (the estimate; change the constants below, not the notebooks): prose is read at
``WORDS_PER_MIN``, a display formula costs ``MIN_PER_FORMULA``, code is read at ``CODE_LINES_PER_MIN``, an exercise
costs ``MIN_PER_EXERCISE`` plus ``MIN_PER_SOLUTION_LINE`` for each line of its model solution, an in-class answer
``MIN_PER_POINT`` per point. These are assumptions, not measurements with students: replace them with times from a
real class (ask students to note their start and end times per section) and keep the notebooks' ``**Time:**`` lines
in step with this tool's estimate.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

from helpers import convention

ROOT = Path(__file__).resolve().parent.parent

WORDS_PER_MIN = 100.0  # careful reading of technical prose with formulas and figures to look at
MIN_PER_FORMULA = 1.0  # each display formula, on top of its words
CODE_LINES_PER_MIN = 15.0  # reading given code (not writing it)
MIN_PER_EXERCISE = 5.0  # understanding the task and running the check
MIN_PER_SOLUTION_LINE = 1.0  # each line of the model solution the student writes
MIN_PER_POINT = 3.0  # answering an in-class TOSUBMIT question, per point

_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.DOTALL)
_WORD = re.compile(r"[A-Za-z0-9\\$]+(?:['’-][A-Za-z0-9]+)*")


def _words(markdown: str) -> int:
    text = re.sub(r"\(https?://[^)]*\)|https?://\S+", " ", markdown)  # links' targets are not read
    return len(_WORD.findall(text))


def _cell_seconds(cell: dict) -> float:
    t = cell.get("metadata", {}).get("execution", {})
    start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def workload(student: Path, solution: Path, executed: Path | None = None) -> dict:
    """Counts for one notebook (student copy ``student``, its source ``solution``, an executed run or None)."""
    cells = json.loads(student.read_text())["cells"]
    sol_cells = json.loads(solution.read_text())["cells"]
    words = formulas = code_lines = exercises = 0
    points = homework_points = 0.0
    questions = 0
    for cell in cells:
        src = convention.cell_source(cell)
        if cell["cell_type"] == "markdown":
            if src.strip() == convention.PLACEHOLDER:
                continue
            words += _words(src)
            formulas += len(_DISPLAY_MATH.findall(src))
            header = convention.parse_header(src)
            if header is not None:
                questions += 1
                if "homework" in (header.note or "").lower():
                    homework_points += header.points or 0
                else:
                    points += header.points or 0
        elif cell["cell_type"] == "code":
            lines = [ln for ln in src.splitlines() if ln.strip()]
            if convention.CODE_PLACEHOLDER[0] in src:
                exercises += 1
            code_lines += sum(1 for ln in lines if ln.strip() not in convention.CODE_PLACEHOLDER)
    solution_lines = 0
    for cell in sol_cells:
        if cell["cell_type"] != "code":
            continue
        for is_solution, lines in convention.split_regions(convention.cell_source(cell), solution.name):
            if is_solution:
                solution_lines += sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))
    run_s = None
    if executed is not None and executed.exists():
        run_s = sum(_cell_seconds(c) for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code")
    return {"words": words, "formulas": formulas, "code_lines": code_lines, "exercises": exercises,
            "solution_lines": solution_lines, "questions": questions, "points": points,
            "homework_points": homework_points, "run_s": run_s}


def estimate_minutes(w: dict) -> dict:
    """The estimate's parts in minutes (reading, code, exercises, questions, run) and their total."""
    parts = {
        "reading": w["words"] / WORDS_PER_MIN + w["formulas"] * MIN_PER_FORMULA,
        "code": w["code_lines"] / CODE_LINES_PER_MIN,
        "exercises": w["exercises"] * MIN_PER_EXERCISE + w["solution_lines"] * MIN_PER_SOLUTION_LINE,
        "questions": w["points"] * MIN_PER_POINT,
        "run": (w["run_s"] or 0.0) / 60,
    }
    parts["total"] = sum(parts.values())
    return parts


def stated_minutes(student: Path) -> int | None:
    """The ``**Time:** ~N min`` a notebook's first cell states, or None."""
    first = convention.cell_source(json.loads(student.read_text())["cells"][0])
    tm = convention.parse_time(first)
    return tm.minutes if tm else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="notebook stems (default: all)")
    p.add_argument("--executed", type=Path, help="a directory of class-mode runs (tools/time_class_mode.py --out)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = p.parse_args(argv)
    students = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.names:
        students = [s for s in students if any(s.stem.startswith(n) for n in args.names)]
        if not students:
            p.error(f"no notebook matches {args.names}")
    head = ("notebook", "words", "formulas", "code lines", "exercises (solution lines)", "in-class points",
            "homework points", "run (min)", "reading", "code", "exercises", "questions", "estimate", "stated")
    rows = []
    for s in students:
        executed = args.executed / s.name if args.executed else None
        w = workload(s, ROOT / "solutions" / s.name, executed)
        e = estimate_minutes(w)
        stated = stated_minutes(s)
        rows.append((s.stem, w["words"], w["formulas"], w["code_lines"], f"{w['exercises']} ({w['solution_lines']})",
                     f"{w['points']:g}", f"{w['homework_points']:g}",
                     "?" if w["run_s"] is None else f"{w['run_s'] / 60:.1f}", f"{e['reading']:.0f}",
                     f"{e['code']:.0f}", f"{e['exercises']:.0f}", f"{e['questions']:.0f}", f"{e['total']:.0f}",
                     "?" if stated is None else str(stated)))
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" for _ in head) + " |")
        for r in rows:
            print("| " + " | ".join(map(str, r)) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
        for r in (head, *rows):
            print("  ".join(str(x).rjust(n) for x, n in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
