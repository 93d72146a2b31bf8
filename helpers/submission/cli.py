"""The command line: ``python -m helpers.submission NOTEBOOK --name ... --id ...`` or ``--batch FOLDER``."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .batch import batch
from .pdf import build_pdf
from .reading import SubmissionError


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
        made = None
        if args.out and args.out.endswith(("/", os.sep)) and not os.path.isdir(args.out):
            made = Path(args.out)  # "--out new_dir/": a folder, created here (and removed again if nothing is written)
            made.mkdir(parents=True)
        try:
            path = build_pdf(args.notebook, args.name, args.student_id, out=args.out, overwrite=args.overwrite)
        except BaseException:
            if made is not None and not any(made.iterdir()):
                made.rmdir()
            raise
        print(f"Wrote {path}")
        return 0
    except (SubmissionError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
