"""Batch mode (instructors): one PDF per notebook of a folder, answers.csv, points.csv and summary.md."""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path
from typing import Any

from .notebook import missing_figures
from .pdf import _build, _write
from .reading import METADATA_KEY, SubmissionError, _load_notebook, _qkey, _safe_id, _slug, _source, read_questions


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
      no such question). A notebook that fails gets a row with its error; the others go on. A question that asks
      for a figure (``submission.attach("N.M", ...)`` in its text) and has none is flagged: status
      ``figure missing: N.M`` (instead of ``ok``) and the ``figures_missing`` column;
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
            no_figure = missing_figures(built.questions)
            row.update(questions=len(built.questions), answered=sum(q.answered for q in built.questions),
                       figures=sum(len(q.figures) for q in built.questions), figures_missing=" ".join(no_figure))
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
                flags = [f"figure missing: {n}" for n in no_figure] + built.warnings
                row["status"] = "; ".join(flags) if no_figure else "ok" + "".join("; " + w for w in flags)
        except (SubmissionError, OSError) as err:
            row["status"] = f"error: {err}"
        print(f"{row['file']}: {row['status']}")
        rows.append(row)
    columns = ["file", "name", "student_id", "id_from", "notebook", "pdf", "questions", "answered", "figures",
               "figures_missing", "status"] + sorted(numbers, key=_qkey)
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
    out += ["", "## Per student", "", "| student | file | answered | not answered | figure missing |",
            "| --- | --- | --- | --- | --- |"]
    for r in ok:
        missing = [n for n in numbers if n in r and not r[n]]
        no_fig = ", ".join(str(r.get("figures_missing") or "").split()) or "-"
        out.append(f"| {who(r)} | {r['file']} | {r['answered']} of {r['questions']} | {', '.join(missing) or '-'} "
                   f"| {no_fig} |")
    failed = [r for r in rows if "questions" not in r]
    if failed:
        out += ["", "## Not read", ""] + [f"- {r['file']}: {r['status']}" for r in failed]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------------
