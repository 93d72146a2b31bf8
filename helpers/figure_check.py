"""Figure layout check: no two texts of a matplotlib figure overlap, and none is cut off by the figure's edge.

:func:`text_overlaps` draws a figure (its layout engine included) and compares the window extents of its texts:
the suptitle and other figure texts, every axes' titles, axis labels, drawn tick labels and offset texts, the
colour bars' labels and ticks (a colour bar is an axes), texts placed in axes, and every legend as one box. It
returns one :class:`TextProblem` per pair of overlapping texts and per text that reaches past the figure's edge, and
one per colour bar whose bar, ticks or label lie over another axes' drawing area (a bar squeezed between panels).

Tolerances: boxes that only touch, or overlap by less than ``tol`` points in either direction, pass; a rotated text
is compared as its rotated rectangle (so 45-degree tick labels side by side pass); empty, invisible and fully
transparent texts, and the tick labels and axis labels of an axes drawn with ``axis("off")``, are ignored. A
legend is one box (its frame), compared with the other texts.

:func:`install` (used by the tests' notebook runner, see ``tests/figure_hook.py``) checks every figure a Jupyter
kernel renders (``plt.show()``, ``display(fig)``, the inline backend's end-of-cell display, ``savefig``) and
appends a line per figure (its problems, the cell's execution count and source) to a JSON-lines log. This module
needs only matplotlib, so the runner loads it by path without importing the ``helpers`` package. The edge check
applies to images saved without ``bbox_inches="tight"``: the inline backend (and ``helpers.submission.attach``)
save with it, which grows the image to include every text, so in a notebook's displayed figures only overlaps
can occur.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TextProblem", "text_artists", "text_overlaps", "install"]

_Point = tuple[float, float]


@dataclass(frozen=True)
class TextProblem:
    """Two texts overlap (``kind == "overlap"``) or one is cut off by the figure's edge (``"cut off"``, ``b`` is
    ``""``). ``a`` and ``b`` describe the texts: their string and role, e.g. ``"'x' (title of axes 1)"``."""

    kind: str
    a: str
    b: str = ""

    def __str__(self) -> str:
        if self.kind == "overlap":
            return f"{self.a} overlaps {self.b}"
        return f"{self.a} is cut off by the figure's edge"


def _shown(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _visible(artist: Any) -> bool:
    if not artist.get_visible():
        return False
    alpha = artist.get_alpha()
    return alpha is None or alpha > 0


def _drawn_ticks(axis: Any) -> list[Any]:
    """The ticks (major and minor) that ``axis`` draws: those inside its view interval."""
    try:
        return list(axis._update_ticks())  # what Axis.draw draws; the other Tick objects keep stale positions
    except Exception:  # noqa: BLE001 - a matplotlib without the private method: every tick
        return list(axis.get_major_ticks()) + list(axis.get_minor_ticks())


def text_artists(fig: Any) -> list[tuple[str, Any]]:
    """``(role, artist)`` for every text of ``fig`` that is drawn: texts (matplotlib ``Text``) and legends.

    Roles name where the text sits, e.g. ``"title of axes 2"``, ``"x tick label of axes 1"``, ``"suptitle"``;
    axes are numbered from 1 in ``fig.axes`` order (colour bars are axes too). Subfigures are included."""
    out: list[tuple[str, Any]] = []

    def add(role: str, artist: Any) -> None:
        if artist is None or not _visible(artist):
            return
        if hasattr(artist, "get_text") and not str(artist.get_text()).strip():
            return
        out.append((role, artist))

    def walk(f: Any, prefix: str) -> None:
        specials = {id(getattr(f, name, None)): role for name, role in
                    (("_suptitle", "suptitle"), ("_supxlabel", "supxlabel"), ("_supylabel", "supylabel"))}
        for t in f.texts:
            add(prefix + specials.get(id(t), "figure text"), t)
        for k, leg in enumerate(f.legends, 1):
            add(f"{prefix}figure legend {k}", leg)
        for k, sub in enumerate(getattr(f, "subfigs", []), 1):
            if _visible(sub):
                walk(sub, f"{prefix}subfigure {k}: ")

    walk(fig, "")
    for n, ax in enumerate(fig.axes, 1):
        if not _visible(ax):
            continue
        name = f"axes {n}" + (" (colour bar)" if hasattr(ax, "_colorbar") else "")
        for attr, role in (("title", "title"), ("_left_title", "left title"), ("_right_title", "right title")):
            add(f"{role} of {name}", getattr(ax, attr, None))
        if ax.axison:
            for letter in ("x", "y", "z"):
                axis = getattr(ax, f"{letter}axis", None)
                if axis is None or not _visible(axis):
                    continue
                add(f"{letter} label of {name}", axis.label)
                add(f"{letter} offset text of {name}", axis.offsetText)
                for tick in _drawn_ticks(axis):
                    if not _visible(tick):
                        continue
                    for label in (tick.label1, tick.label2):
                        add(f"{letter} tick label of {name}", label)
        for t in ax.texts:
            add(f"text in {name}", t)
        add(f"legend of {name}", ax.get_legend())
    return out


def _corners(artist: Any, renderer: Any) -> list[_Point]:
    """The four corners (display pixels) of the rectangle the artist's text fills: its rotated rectangle for a
    rotated text, else its window extent."""
    box = artist.get_window_extent(renderer)
    angle = artist.get_rotation() % 180 if hasattr(artist, "get_rotation") else 0.0
    if min(angle % 90, 90 - angle % 90) < 1e-6:
        return [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    rotation = artist.get_rotation()
    try:  # the unrotated size; the extent of the rotated text is centred on the rotated rectangle
        artist.set_rotation(0)
        flat = artist.get_window_extent(renderer)
    finally:
        artist.set_rotation(rotation)
    w, h = flat.width / 2, flat.height / 2
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    return [(cx + dx * c - dy * s, cy + dx * s + dy * c) for dx, dy in ((-w, -h), (w, -h), (w, h), (-w, h))]


def _separation(p: list[_Point], q: list[_Point]) -> float:
    """How far apart two convex quadrilaterals are along their best separating axis (negative: overlap depth)."""
    best = -math.inf
    for poly in (p, q):
        for i in range(len(poly)):
            (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % len(poly)]
            nx, ny = y0 - y1, x1 - x0
            norm = math.hypot(nx, ny)
            if norm == 0:
                continue
            nx, ny = nx / norm, ny / norm
            pa = [x * nx + y * ny for x, y in p]
            qa = [x * nx + y * ny for x, y in q]
            best = max(best, max(min(qa) - max(pa), min(pa) - max(qa)))
    return best


def text_overlaps(fig: Any, tol: float = 1.0, edge: bool = True) -> list[TextProblem]:
    """Draw ``fig`` and return its layout problems: pairs of texts that overlap by more than ``tol`` points in
    both directions, and (``edge``) texts that reach more than ``tol`` points past the figure's edge.

    ``fig``: a matplotlib Figure. Returns an empty list for a clean figure."""
    if not hasattr(fig, "draw_without_rendering"):
        raise TypeError(f"text_overlaps() needs a matplotlib Figure, got {type(fig).__name__}")
    fig.draw_without_rendering()  # runs the layout engine and places titles and tick labels as a display does
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else fig._get_renderer()
    px = tol * fig.dpi / 72.0
    items = []
    for role, artist in text_artists(fig):
        label = role if not hasattr(artist, "get_text") else f"{_shown(artist.get_text())} ({role})"
        items.append((label, artist, _corners(artist, renderer)))
    problems: list[TextProblem] = []
    width, height = fig.bbox.width, fig.bbox.height
    if edge:
        for label, _, pts in items:
            xs, ys = [x for x, _ in pts], [y for _, y in pts]
            if min(xs) < -px or min(ys) < -px or max(xs) > width + px or max(ys) > height + px:
                problems.append(TextProblem("cut off", label))
    boxes = [(min(x for x, _ in pts), min(y for _, y in pts), max(x for x, _ in pts), max(y for _, y in pts))
             for _, _, pts in items]
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = boxes[i], boxes[j]
            if min(a[2], b[2]) - max(a[0], b[0]) <= px or min(a[3], b[3]) - max(a[1], b[1]) <= px:
                continue  # the bounding boxes are apart or only touch
            if _separation(items[i][2], items[j][2]) < -px:
                problems.append(TextProblem("overlap", items[i][0], items[j][0]))
    problems += _colorbars_over_axes(fig, renderer, px)
    return problems


def _colorbars_over_axes(fig: Any, renderer: Any, px: float) -> list[TextProblem]:
    """A colour bar (its bar, ticks and label) that lies over another axes' drawing area, e.g. a bar squeezed
    between two columns of panels: one problem per (colour bar, axes) pair that overlap by more than ``px``."""
    axes = [(n, ax) for n, ax in enumerate(fig.axes, 1) if _visible(ax)]
    bars = [(n, ax) for n, ax in axes if hasattr(ax, "_colorbar")]
    found = []
    for n, bar in bars:
        box = bar.get_tightbbox(renderer)
        if box is None:
            continue
        for m, ax in axes:
            if m == n or hasattr(ax, "_colorbar") or (not ax.axison and not ax.images):
                continue
            area = ax.bbox
            if min(box.x1, area.x1) - max(box.x0, area.x0) > px and min(box.y1, area.y1) - max(box.y0, area.y0) > px:
                label = bar.yaxis.label.get_text() or bar.xaxis.label.get_text()
                found.append(TextProblem("overlap", f"colour bar {_shown(label)} (axes {n})",
                                         f"the drawing area of axes {m}"))
    return found


# ------------------------------------------------------------------------------------------------ kernel hook
_STATE: dict[str, Any] = {}


def _checked_print_figure(original: Any) -> Any:
    def print_figure(self: Any, *args: Any, **kwargs: Any) -> Any:
        fig = getattr(self, "figure", None)
        log = _STATE.get("log")
        if fig is not None and log is not None and not _STATE.get("busy"):
            _STATE["busy"] = True
            bbox = kwargs.get("bbox_inches")
            if bbox is None:
                import matplotlib

                bbox = matplotlib.rcParams["savefig.bbox"]
            try:  # a tight bounding box grows the image to every text: nothing can be cut off then
                _log_figure(fig, Path(log), edge=not (isinstance(bbox, str) and bbox == "tight"))
            finally:
                _STATE["busy"] = False
        return original(self, *args, **kwargs)

    print_figure._xai_figure_check = True  # type: ignore[attr-defined]
    return print_figure


def _log_figure(fig: Any, log: Path, edge: bool = True) -> None:
    count, cell = _STATE.get("count"), _STATE.get("source")
    try:
        found = [str(p) for p in text_overlaps(fig, edge=edge)]
    except Exception as exc:  # noqa: BLE001 - a check that crashes must not stop the notebook, but is reported
        found = [f"the figure check failed: {type(exc).__name__}: {exc}"]
    key = (count, id(fig), tuple(found))
    if key in _STATE.setdefault("seen", set()):
        return
    _STATE["seen"].add(key)
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    if not title:
        title = next((ax.get_title() for ax in fig.axes if ax.get_title()), "")
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"execution_count": count, "source": cell, "figure": title, "problems": found}) + "\n")


def install(log: str | Path) -> None:
    """Check every figure rendered from now on in this process (``FigureCanvasBase.print_figure``, which
    ``plt.show()``, ``display(fig)`` and ``savefig`` go through) and append its problems to the JSON-lines file
    ``log``: ``{"execution_count": n, "source": code, "figure": title, "problems": [...]}`` per figure
    rendered (``problems`` empty for a clean one; a figure rendered twice in a cell with the same result is logged
    once). ``n``: IPython's execution count when the cell started (the cell's number, or one more, depending on
    the IPython version); ``code``: the cell's source. The edge check is skipped for ``bbox_inches="tight"``."""
    from matplotlib.backend_bases import FigureCanvasBase

    _STATE["log"] = str(log)
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:
        ip = None
    if ip is not None and not _STATE.get("hooked"):
        def note_cell(info: Any = None) -> None:
            _STATE["count"] = ip.execution_count
            _STATE["source"] = getattr(info, "raw_cell", None)

        ip.events.register("pre_run_cell", note_cell)
        _STATE["hooked"] = True
    if not getattr(FigureCanvasBase.print_figure, "_xai_figure_check", False):
        FigureCanvasBase.print_figure = _checked_print_figure(FigureCanvasBase.print_figure)
