"""Student submissions: the answers to a notebook's TOSUBMIT questions (and attached figures) -> one PDF.

In a notebook::

    from helpers import submission
    submission.attach("3.2", fig)                   # a matplotlib figure for question 3.2
    ...
    submission.export("Ada Lovelace", "12345678")   # last cell: save the notebook first, then run it

Conventions (see CONTRIBUTING.md for how questions are written):

* A question is a markdown cell that starts with ``**TOSUBMIT N.M** *(P points)*``; the NEXT cell is its answer
  cell. An answer cell that is empty or still only says ``YOUR ANSWER HERE`` is NOT ANSWERED. In a solution
  notebook the solution marker lines (:data:`helpers.convention.BEGIN` / ``END``) are dropped (the PDF of a solution
  notebook is the answer key).
* Figures of question N.M come from (in this order):

  1. :func:`attach`: PNGs ``submission_figures/<notebook-stem>/N.M_<k>.png`` next to the notebook (or in the
     working directory, e.g. ``/content`` on Colab). Re-running a cell replaces the figures it attached before
     (``keep=True`` adds instead);
  2. marked cells: a code cell whose first line is ``# ATTACH N.M`` contributes its saved ``image/png`` outputs;
  3. images in the answer itself: ``![caption](figure.png)`` (a path relative to the notebook) or an image
     pasted into the markdown cell (a cell attachment).

* :func:`export` writes ``<NN_slug>_<student_id>.pdf`` and a submission copy ``<NN_slug>_<student_id>.ipynb``
  of the notebook next to it. The copy records the student in its metadata
  (``metadata["xai_submission"] = {"name", "student_id", "exported", "figures"}``) and embeds the attached
  figures, so ``build_pdf`` / ``--batch`` rebuild the same PDF from the copy alone.
* Batch mode (instructors): ``python -m helpers.submission --batch <folder> [--out <folder>]`` builds one PDF per
  notebook under the folder, ``answers.csv`` (one row per notebook, one column per question: 1 answered,
  0 not), ``points.csv`` (the grader's sheet: maximum points, then a row per student to fill in) and
  ``summary.md`` (who answered what). The student's name and ID are read from, in this order: the notebook
  metadata written by
  :func:`export`; the literal arguments of the ``submission.export(...)`` call in the notebook (string literals,
  or variables such as ``STUDENT_NAME = "..."`` assigned in a code cell); the file name
  ``<NN_slug>_<student_id>.ipynb`` (ID only).

Command line::

    python -m helpers.submission notebooks/00_getting_started.ipynb --name "Ada Lovelace" --id 12345678 [--overwrite]
    python -m helpers.submission --batch submissions/ [--out pdfs/] [--overwrite]

An existing PDF is never overwritten unless asked (``overwrite=True`` / ``--overwrite``). Bad input (not a notebook,
corrupt JSON, no TOSUBMIT question, a missing or unreadable figure) raises :class:`SubmissionError` and writes
nothing: the PDF is built in memory first.

Modules: :mod:`~helpers.submission.reading` (questions, answers and figures of a notebook),
:mod:`~helpers.submission.markdown` (Markdown parsed by mistune 3 into tokens and styled spans),
:mod:`~helpers.submission.mathrender` (formulas drawn by matplotlib's mathtext; readable text where it cannot),
:mod:`~helpers.submission.writer` (the page layout on fpdf2: lines with inline formulas, blocks, figures),
:mod:`~helpers.submission.pdf` (:func:`build_pdf`), :mod:`~helpers.submission.notebook` (:func:`attach`,
:func:`clear`, :func:`export`), :mod:`~helpers.submission.batch` (:func:`batch`) and
:mod:`~helpers.submission.cli` (:func:`main`).
"""

from __future__ import annotations

from .batch import batch
from .cli import main
from .mathrender import latex_to_text
from .notebook import attach, clear, export
from .pdf import build_pdf
from .reading import FIGURES_DIR, METADATA_KEY, PLACEHOLDER, Question, SubmissionError, read_questions

__all__ = [
    "SubmissionError",
    "Question",
    "FIGURES_DIR",
    "METADATA_KEY",
    "PLACEHOLDER",
    "attach",
    "clear",
    "read_questions",
    "build_pdf",
    "export",
    "batch",
    "latex_to_text",
    "main",
]
