"""Render the pages of a PDF to PNG files, to look at a submission PDF as an instructor sees it.

    python tools/pdf_to_png.py submission.pdf [--out DIR] [--dpi 110] [--pages 1,3]

Writes ``DIR/<pdf-stem>_p<N>.png`` (default ``DIR``: next to the PDF) and prints the paths. Uses pypdfium2
(PDFium, the renderer of Chrome; requirements-dev.txt) since poppler's pdftoppm is not always installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def render_pages(pdf: str | Path, out: str | Path | None = None, dpi: float = 110,
                 pages: list[int] | None = None) -> list[Path]:
    """Pages (1-based numbers; all when None) of ``pdf`` -> PNG files in ``out``; returns their paths."""
    import pypdfium2 as pdfium

    pdf = Path(pdf)
    if not pdf.is_file():
        raise FileNotFoundError(f"no such PDF: {pdf}")
    out_dir = Path(out) if out is not None else pdf.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = pdfium.PdfDocument(str(pdf))
    try:
        numbers = pages or list(range(1, len(doc) + 1))
        bad = [n for n in numbers if not 1 <= n <= len(doc)]
        if bad:
            raise ValueError(f"{pdf} has {len(doc)} pages; no page {bad[0]}")
        written = []
        for n in numbers:
            image = doc[n - 1].render(scale=dpi / 72).to_pil()
            path = out_dir / f"{pdf.stem}_p{n}.png"
            image.save(path)
            written.append(path)
        return written
    finally:
        doc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf")
    parser.add_argument("--out", help="folder for the PNGs (default: next to the PDF)")
    parser.add_argument("--dpi", type=float, default=110)
    parser.add_argument("--pages", help="comma-separated page numbers, from 1 (default: all)")
    args = parser.parse_args(argv)
    pages = [int(p) for p in args.pages.split(",")] if args.pages else None
    try:
        for path in render_pages(args.pdf, args.out, args.dpi, pages):
            print(path)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
