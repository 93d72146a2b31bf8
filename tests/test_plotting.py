"""helpers.plotting: every function accepts the course's image formats and returns a figure (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers import data, plotting  # noqa: E402
from helpers.training import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


RGB = (np.random.default_rng(0).random((12, 16, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("img", [
    RGB,
    RGB.astype(np.float32) / 255,
    torch.from_numpy(RGB).permute(2, 0, 1),
    torch.from_numpy(RGB).permute(2, 0, 1).float()[None] / 255,
    RGB[..., 0],
])
def test_to_display_formats(img):
    out = plotting.to_display(img)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert out.shape[:2] == (12, 16)
    ref = RGB if out.ndim == 3 else RGB[..., 0]
    np.testing.assert_allclose(out, ref / 255, atol=1e-6)


def test_to_display_denormalises():
    x = torch.rand(3, 8, 8)
    z = data.normalize(x, data.IMAGENET_MEAN, data.IMAGENET_STD)
    out = plotting.to_display(z, data.IMAGENET_MEAN, data.IMAGENET_STD)
    np.testing.assert_allclose(out, x.permute(1, 2, 0).numpy(), atol=1e-5)


def test_to_display_bad_input():
    with pytest.raises(ValueError, match="mean="):
        plotting.to_display(torch.randn(3, 8, 8) * 3)
    with pytest.raises(ValueError, match="shape"):
        plotting.to_display(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="shape"):
        plotting.to_display(np.zeros((8, 8, 5)))
    with pytest.raises(ValueError, match="NaN"):
        plotting.to_display(np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="both"):
        plotting.to_display(np.zeros((4, 4, 3)), mean=(0, 0, 0))


def test_show_image_and_ax():
    fig = plotting.show_image(RGB, title="cat")
    assert isinstance(fig, Figure)
    fig2, axes = plt.subplots(1, 2)
    assert plotting.show_image(RGB, ax=axes[1]) is fig2


@pytest.mark.parametrize("signed", [False, True])
def test_overlay_heatmap_upsamples(signed):
    hm = torch.randn(3, 4)
    fig = plotting.overlay_heatmap(torch.from_numpy(RGB).permute(2, 0, 1), hm, signed=signed, title="m",
                                   colorbar=True)
    assert isinstance(fig, Figure)
    layer = fig.axes[0].images[1].get_array()
    assert layer.shape == (12, 16)
    if signed:
        norm = fig.axes[0].images[1].norm
        assert norm.vmin == pytest.approx(-norm.vmax)


def test_overlay_heatmap_shared_limits():
    small, big = torch.full((4, 4), 0.1), torch.full((4, 4), 2.0)
    small[0, 0], big[0, 0] = -0.1, -2.0
    fig, axes = plt.subplots(1, 2)
    for ax, hm in zip(axes, (small, big), strict=True):
        plotting.overlay_heatmap(RGB, hm, ax=ax, signed=True, limits=(-2.0, 2.0))
    norms = [ax.images[1].norm for ax in axes]
    assert all((n.vmin, n.vmax) == (-2.0, 2.0) for n in norms)  # one scale, not each map's own max
    plotting.overlay_heatmap(RGB, small, limits=(0.0, 5.0))
    assert plt.gca().images[1].get_clim() == (0.0, 5.0)
    with pytest.raises(ValueError, match="lo < 0 < hi"):
        plotting.overlay_heatmap(RGB, small, signed=True, limits=(0.5, 1.0))
    with pytest.raises(ValueError, match="lo < hi"):
        plotting.overlay_heatmap(RGB, small, limits=(1.0, 1.0))


def test_to_heatmap_is_bilinear():
    hm = torch.rand(1, 1, 4, 4)
    up = plotting.to_heatmap(hm, (8, 8))
    ref = torch.nn.functional.interpolate(hm, size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(up, ref.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="heatmap"):
        plotting.to_heatmap(torch.rand(3, 4, 4))


def test_overlay_bad_heatmap():
    with pytest.raises(ValueError, match="heatmap"):
        plotting.overlay_heatmap(RGB, np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="alpha"):
        plotting.overlay_heatmap(RGB, np.zeros((4, 4)), alpha=2)


def test_image_grid():
    imgs = [RGB, RGB[..., 0], np.random.default_rng(1).normal(size=(5, 5)), torch.rand(3, 6, 6)]
    fig = plotting.image_grid(imgs, titles=list("abcd"), ncols=3, suptitle="grid")
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert isinstance(plotting.image_grid(torch.rand(5, 3, 8, 8), ncols=2), Figure)
    with pytest.raises(ValueError, match="titles"):
        plotting.image_grid(imgs, titles=["a"])
    with pytest.raises(ValueError, match="at least one"):
        plotting.image_grid([])


def test_compare_methods():
    maps = {"saliency": np.random.rand(12, 16), "grad-cam": torch.rand(7, 7), "IG": np.random.randn(12, 16)}
    fig = plotting.compare_methods(RGB, maps, signed={"IG": True}, title="cat")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert isinstance(fig, Figure) and len(panels) == 4
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["image", "saliency", "grad-cam", "IG"]
    fig2, axes = plt.subplots(2, 4)
    assert plotting.compare_methods(RGB, maps, axes=axes[1]) is fig2
    with pytest.raises(ValueError, match="axes"):
        plotting.compare_methods(RGB, maps, axes=axes[1][:2])
    with pytest.raises(ValueError, match="at least one"):
        plotting.compare_methods(RGB, {})
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        plotting.compare_methods(RGB, {"bad": np.zeros((2, 3, 4))})


def test_compare_methods_one_scale_and_the_concentration_in_the_title():
    flat = 1.0 + 0.01 * np.random.default_rng(0).random((12, 16))  # nearly flat, positive
    peak = np.zeros((12, 16))
    peak[3, 4] = 5.0
    fig = plotting.compare_methods(RGB, {"flat": flat, "peak": peak})
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][1:]
    assert all(ax.images[1].get_clim() == (0.0, 1.0) for ax in panels)  # one scale for every method
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 1
    # the flat map is drawn as flat: every pixel near the top of the shared scale, not stretched to [0, 1]
    assert panels[0].images[1].get_array().min() > 0.95
    titles = [ax.get_title() for ax in panels]
    assert titles[0].endswith("top-10 %: 0.10") and titles[1].endswith("top-10 %: 1.00")
    own = plotting.compare_methods(RGB, {"flat": flat}, shared=False, annotate=False)
    assert not [ax for ax in own.axes if ax.get_label() == "<colorbar>"] and own.axes[1].get_title() == "flat"


def test_shared_colorbar():
    fig, axes = plt.subplots(2, 2)
    for ax in axes.ravel():
        plotting.overlay_heatmap(RGB, torch.rand(4, 4), ax=ax, limits=(0.0, 1.0))
    cb = plotting.shared_colorbar(fig, axes)
    assert cb.mappable.get_clim() == (0.0, 1.0) and cb.mappable.get_cmap().name == plotting.UNSIGNED_CMAP
    assert plotting.shared_colorbar(fig, axes[0], limits=(-2, 2), signed=True).mappable.norm.vcenter == 0.0
    with pytest.raises(ValueError, match="lo < 0 < hi"):
        plotting.shared_colorbar(fig, axes, limits=(0.0, 1.0), signed=True)


def test_overlay_heatmap_keeps_zero_at_the_bottom_of_an_unsigned_scale():
    hm = torch.full((4, 4), 2.0)
    hm[0, 0] = 2.1
    fig = plotting.overlay_heatmap(RGB, hm)
    assert fig.axes[0].images[1].get_clim() == (0.0, pytest.approx(2.1))
    assert fig.axes[0].images[1].get_cmap().name == plotting.UNSIGNED_CMAP
    neg = plotting.overlay_heatmap(RGB, hm - 3.0)  # unsigned but negative values: the scale starts at the min
    assert neg.axes[0].images[1].get_clim()[0] == pytest.approx(-1.0)


def test_plot_history():
    h = History(epoch=[1, 2, 3], train_loss=[2.0, 1.5, 1.2], train_acc=[0.3, 0.5, 0.6], val_acc=[0.35, 0.5, 0.55])
    fig = plotting.plot_history(h)
    assert isinstance(fig, Figure)
    assert isinstance(plotting.plot_history({"epoch": [1], "train_loss": [1.0]}), Figure)
    with pytest.raises(ValueError, match="history"):
        plotting.plot_history(History())


def test_confusion_matrix_plot():
    y = torch.tensor([0, 1, 2, 2, 1])
    p = torch.tensor([0, 2, 2, 2, 1])
    fig = plotting.confusion_matrix_plot(y, p, ["a", "b", "c"])
    cm = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(cm, [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1]])
    assert "80.0%" in fig.axes[0].get_title()
    counts = plotting.confusion_matrix_plot(y, p, ["a", "b", "c"], normalize=False).axes[0].images[0].get_array()
    assert counts.sum() == 5
    with pytest.raises(ValueError, match="labels"):
        plotting.confusion_matrix_plot(y, p[:3], ["a", "b", "c"])
    with pytest.raises(ValueError, match="0..1"):
        plotting.confusion_matrix_plot(y, p, ["a", "b"])


def test_map_grid_one_scale_one_colorbar_and_masks():
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    maps = {"a": torch.randn(2, 8, 8) * 100, "b": torch.rand(2, 8, 8) * 1e-4}
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 2:5] = True
    fig = plotting.map_grid(images, maps, masks=masks, row_titles=["x", "y"])
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    heat = [ax.images[-1] for ax in panels if ax.images[-1].get_array().ndim == 2]
    assert len(heat) == 4  # 2 images x 2 methods
    assert all(im.get_clim() == (0.0, 1.0) for im in heat)  # one colour scale whatever the raw scale
    assert all(float(im.get_array().max()) == pytest.approx(1.0) for im in heat)  # |map| / max |map|
    assert len(fig.axes) == 2 * 3 + 1  # one colour bar
    assert any(ax.collections for ax in panels)  # the mask contours
    plt.close(fig)
    with pytest.raises(ValueError, match="B = 2"):
        plotting.map_grid(images, {"a": torch.rand(3, 8, 8)})
    with pytest.raises(ValueError, match="at least one"):
        plotting.map_grid(images, {})


def test_show_attribution_returns_a_figure():
    """(moved here from tests/test_attribution.py with the function, from helpers.attribution)"""
    attr, img = torch.randn(3, 8, 8), torch.rand(3, 8, 8)
    for kwargs in ({"signed": True, "how": "sum"}, {"overlay": True, "image": img}, {}):
        fig = plotting.show_attribution(attr, **kwargs)
        assert fig is not None
        plt.close(fig)
    fig, ax = plt.subplots()
    assert plotting.show_attribution(attr[0], ax=ax, title="t") is fig
    plt.close(fig)


def test_show_attribution_draws_on_the_fixed_scale_of_the_shared_colour_bar():
    attr, img = torch.randn(3, 8, 8), torch.rand(3, 8, 8)
    for kwargs, cmap, lims in (({"signed": True, "how": "sum"}, plotting.SIGNED_CMAP, (-1.0, 1.0)),
                               ({}, plotting.UNSIGNED_CMAP, (0.0, 1.0)),
                               ({"overlay": True, "image": img}, plotting.UNSIGNED_CMAP, (0.0, 1.0))):
        fig, ax = plt.subplots()
        plotting.show_attribution(attr * 1e-3, ax=ax, **kwargs)  # a tiny map is not stretched: the scale stays fixed
        layer = ax.images[-1]
        assert layer.get_cmap().name == cmap
        assert layer.norm.vmin == pytest.approx(lims[0]) and layer.norm.vmax == pytest.approx(lims[1])
        plt.close(fig)
