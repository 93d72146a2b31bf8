"""helpers/figure_check.py: overlapping and cut-off texts in matplotlib figures (issue 38), and its kernel hook in
the tests' notebook runs (tests/figure_hook.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers.figure_check import text_artists, text_overlaps  # noqa: E402
from tests.conftest import NOTEBOOK_TIMES, ROOT, SLOWEST_CELLS  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _overlaps(fig) -> list[str]:
    return [str(p) for p in text_overlaps(fig) if p.kind == "overlap"]


def test_panel_titles_running_into_each_other() -> None:
    """05's fooling-LIME figure: "biased model: p = 0.95scaffolded model: p = 0.95"."""
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.2))
    for ax, title in zip(axes, ("input", "biased model: p = 0.95", "scaffolded model: p = 0.95"), strict=True):
        ax.imshow(np.zeros((8, 8)))
        ax.set_title(title)
        ax.axis("off")
    found = _overlaps(fig)
    assert found == ["'biased model: p = 0.95' (title of axes 2) overlaps "
                     "'scaffolded model: p = 0.95' (title of axes 3)"]


def test_suptitle_over_an_axes_title() -> None:
    """05's Sharp-LIME figure: "automobile: thresholded mask" over "quickshift: K = 15"."""
    fig, axes = plt.subplots(1, 2, figsize=(5, 2.5))
    fig.suptitle("automobile: thresholded mask")
    axes[0].set_title("quickshift: K = 15")
    axes[1].set_title("Sharp-LIME")
    found = _overlaps(fig)
    assert "'automobile: thresholded mask' (suptitle) overlaps 'quickshift: K = 15' (title of axes 1)" in found


def test_tick_label_cut_off_by_the_edge() -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.barh([0, 1], [1, 2])
    ax.set_yticks([0, 1], ["a rather long class name", "b"])
    problems = [str(p) for p in text_overlaps(fig)]
    assert "'a rather long class name' (y tick label of axes 1) is cut off by the figure's edge" in problems
    assert not any("'b'" in p for p in problems)
    assert not [p for p in text_overlaps(fig, edge=False) if p.kind == "cut off"]


def test_clean_figure_passes() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
    fig.suptitle("a clean figure")
    axes[0].plot([0, 1], [0, 1], label="line")
    axes[0].set(title="left panel", xlabel="x", ylabel="y")
    axes[0].legend(loc="lower right")
    im = axes[1].imshow(np.random.default_rng(0).random((6, 6)))
    axes[1].set_title("right panel")
    axes[1].set_xticks(range(6), [f"class {i}" for i in range(6)], rotation=45, ha="right")
    fig.colorbar(im, ax=axes[1], label="value")
    assert text_overlaps(fig) == []


def test_rotated_tick_labels_are_compared_as_rotated_rectangles() -> None:
    """45-degree labels side by side: their upright bounding boxes overlap, the texts do not."""
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    ax.plot(range(10))
    labels = ax.set_xticks(range(10), [f"long label {i}" for i in range(10)], rotation=45, ha="right",
                           rotation_mode="anchor")
    fig.draw_without_rendering()
    a, b = (t.get_window_extent() for t in labels[:2])
    assert a.overlaps(b), "the upright boxes overlap: the test needs that to mean anything"
    assert _overlaps(fig) == []
    ax.set_xticks(range(10), [f"a much longer tick label {i}" for i in range(10)], rotation=10)  # crowded
    assert _overlaps(fig)


def test_touching_empty_and_invisible_texts_pass() -> None:
    fig = plt.figure(figsize=(4, 2))
    left = fig.text(0.1, 0.5, "left")
    fig.draw_without_rendering()
    right_x = left.get_window_extent().x1 / fig.bbox.width
    fig.text(right_x, 0.5, "right")  # starts where "left" ends: touching, not overlapping
    fig.text(0.1, 0.5, "")  # empty
    fig.text(0.1, 0.5, "hidden", visible=False)
    fig.text(0.1, 0.5, "transparent", alpha=0)
    assert text_overlaps(fig) == []
    fig.text(0.12, 0.5, "on top")
    assert len(_overlaps(fig)) == 2  # over "left" and "right"


def test_axis_off_hides_its_tick_labels_and_legends_count() -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(np.zeros((4, 4)))
    ax.axis("off")
    assert [role for role, _ in text_artists(fig)] == []
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], label="a legend entry")
    ax.set_title("title")
    ax.legend(loc="center", bbox_to_anchor=(0.5, 1.04))  # a legend box is one text: here over the title
    assert _overlaps(fig) == ["'title' (title of axes 1) overlaps legend of axes 1"]


def _grad_cam_grid(bar_beside: str):
    """04's Guided Grad-CAM figure reproduced small: 3 x 4 panels, one shared colour bar for column 2 (the
    defect: ``beside="column"``, the bar squeezed between columns 2 and 3) or for all panels (the fix)."""
    from helpers import plotting

    fig, axes = plt.subplots(3, 4, figsize=(10, 7.6), squeeze=False)
    for ax in axes.ravel():
        ax.imshow(np.zeros((8, 8)))
        ax.axis("off")
    fig.tight_layout()
    plotting.shared_colorbar(fig, axes[:, 1] if bar_beside == "column" else axes, label="map / its max")
    return fig


def test_colour_bar_over_another_panel() -> None:
    """A colour bar between two columns lies over the next column's images: flagged (its label too); the same bar
    at the figure's edge passes."""
    found = [str(p) for p in text_overlaps(_grad_cam_grid("column"), edge=False)]  # notebooks: bbox "tight"
    assert found and all(f.startswith("colour bar 'map / its max'") for f in found), found
    assert any(f.endswith(("axes 3", "axes 7", "axes 11")) for f in found), found  # a panel of column 3
    assert text_overlaps(_grad_cam_grid("all"), edge=False) == []


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="matplotlib Figure"):
        text_overlaps("not a figure")


@pytest.mark.notebook
def test_notebook_runs_fail_on_an_overlapping_figure(tmp_path, monkeypatch) -> None:
    """The tests' notebook runner checks every figure shown (plt.show, a figure as the cell's value, a figure
    left open at the end of the cell) and fails naming the notebook, the cell and the two texts."""
    from tests.test_notebooks import execute_notebook

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as in the notebook runs
    cells = [
        nbformat.v4.new_markdown_cell("# figure check"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nimport sys\n"
                                  f"sys.path.insert(0, {str(ROOT)!r})"),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots(figsize=(3, 2), layout='constrained')\n"
                                  "ax.set_title('clean')\nplt.show()"),
        nbformat.v4.new_code_cell("fig, axes = plt.subplots(1, 2, figsize=(4, 2))\n"
                                  "axes[0].set_title('biased model: p = 0.95')\n"
                                  "axes[1].set_title('scaffolded model: p = 0.95')\nplt.show()"),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots(figsize=(3, 2))\nfig.suptitle('over')\n"
                                  "ax.set_title('under')"),  # shown by the inline backend after the cell
        nbformat.v4.new_code_cell("fig, ax = plt.subplots(figsize=(3, 2), layout='constrained')\n"
                                  "ax.set_title('fine again')\nfig"),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots(figsize=(4, 3))\nax.barh([0, 1], [1, 2])\n"
                                  "ax.set_yticks([0, 1], ['a rather long class name', 'b'])\n"
                                  "plt.show()  # shown with bbox_inches='tight': the label is in the image\n"),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots(figsize=(4, 3))\nax.barh([0, 1], [1, 2])\n"
                                  "ax.set_yticks([0, 1], ['a rather long class name', 'b'])\n"
                                  "fig.savefig('cut.png')  # saved at the figure's size: the label is cut\n"
                                  "plt.close(fig)"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    with pytest.raises(AssertionError) as err:
        execute_notebook(nb, tmp_path / "figures.ipynb", "figure-check-demo")
    message = str(err.value)
    assert message.startswith("figure-check-demo: 3 figure layout problem(s):"), message
    assert ("cell 3 (figure 'biased model: p = 0.95'): 'biased model: p = 0.95' (title of axes 1) overlaps "
            "'scaffolded model: p = 0.95' (title of axes 2)") in message
    assert "cell 4 (figure 'over'): 'over' (suptitle) overlaps 'under' (title of axes 1)" in message
    assert "cell 7: 'a rather long class name' (y tick label of axes 1) is cut off by the figure's edge" in message
    assert "clean" not in message and "fine again" not in message and "cell 6" not in message
    nb = nbformat.v4.new_notebook(cells=[cells[0], cells[1], cells[2], cells[5]])
    execute_notebook(nb, tmp_path / "clean.ipynb", "figure-check-clean")  # passes
    for key in ("figure-check-demo", "figure-check-clean"):  # not course notebooks: out of the run-time summary
        NOTEBOOK_TIMES.pop(key, None)
        SLOWEST_CELLS.pop(key, None)
