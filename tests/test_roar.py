"""helpers.roar (notebook 07's ROAR) and the shipped full grid, data/roar/roar_cifar10.json (tools/roar_grid.py)."""

from __future__ import annotations

import json
import math
import numbers

import numpy as np
import pytest
import roar_grid
import torch
from torch import nn

from helpers import roar
from helpers.cifar_models import CNNConfig, build_model
from tests.conftest import ROOT
from tests.fake_cifar import fake_cifar_images

TINY = roar.RetrainConfig(epochs=3, batch_size=32, widths=(8, 16, 16, 32))


@pytest.fixture(scope="module")
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model(CNNConfig(widths=(8, 8, 16, 16))).eval()


@pytest.fixture(scope="module")
def learnable() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fake CIFAR-10 (class-coloured stripes, tests/fake_cifar.py): 400 training and 200 test images, uint8."""
    rng = np.random.default_rng(0)
    y_tr, y_te = rng.integers(0, 10, 400), rng.integers(0, 10, 200)

    def to_t(y: np.ndarray, seed: int) -> torch.Tensor:
        return torch.from_numpy(fake_cifar_images(y, seed)).permute(0, 3, 1, 2).contiguous()

    return to_t(y_tr, 1), torch.from_numpy(y_tr), to_t(y_te, 2), torch.from_numpy(y_te)


def test_roar_maps_shapes_determinism_and_errors(small_cnn: nn.Module) -> None:
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(7) % 10
    for method in ("random", "gradient", "grad_cam", "integrated_gradients"):
        maps = roar.roar_maps(small_cnn, images, labels, method, layer=small_cnn.features[-1], batch_size=3,
                              ig_steps=4, progress=False)
        assert maps.shape == (7, 32, 32) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    a = roar.roar_maps(small_cnn, images, labels, "gradient", batch_size=3, progress=False)
    b = roar.roar_maps(small_cnn, images, labels, "gradient", batch_size=7, progress=False)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)  # batching does not change the maps
    r1 = roar.roar_maps(small_cnn, images, labels, "random", batch_size=3, progress=False)
    r2 = roar.roar_maps(small_cnn, images, labels, "random", batch_size=3, progress=False)
    assert torch.equal(r1, r2) and not torch.equal(r1[0], r1[3])  # seeded, and different per batch
    with pytest.raises(ValueError, match="uint8"):
        roar.roar_maps(small_cnn, images.float(), labels, "gradient")
    with pytest.raises(ValueError, match="unknown method"):
        roar.roar_maps(small_cnn, images, labels, "lrp")
    with pytest.raises(ValueError, match="labels"):
        roar.roar_maps(small_cnn, images, labels[:3], "gradient")


def test_roar_dataset_replaces_exactly_the_top_pixels_with_the_mean() -> None:
    images = torch.zeros(5, 3, 32, 32, dtype=torch.uint8)
    maps = torch.rand(5, 32, 32, generator=torch.Generator().manual_seed(1))
    for t in (0.0, 0.1, 0.5, 0.9, 1.0):
        out = roar.roar_dataset(images, maps, t)
        changed = (out != 0).any(1)
        assert out.dtype == torch.uint8
        assert (changed.flatten(1).sum(1) == round(t * 1024)).all()
        if 0 < t < 1:  # in every image the changed pixels are its highest-ranked ones
            for m, c in zip(maps, changed, strict=True):
                assert m[c].min() >= m[~c].max()
    fill = torch.tensor([round(v) for v in roar.dataset_mean()], dtype=torch.uint8)
    assert torch.equal(roar.roar_dataset(images, maps, 1.0)[0, :, 0, 0], fill)
    assert fill.tolist() == [125, 123, 114]
    assert roar.dataset_mean(images) == (0.0, 0.0, 0.0)


def test_retrain_learns_and_removing_everything_leaves_chance(learnable) -> None:
    tx, ty, vx, vy = learnable
    acc = roar.retrain(tx, ty, vx, vy, TINY, seed=0)
    assert acc >= 0.6, acc  # the fake classes are easy: far above chance (0.1)
    assert roar.retrain(tx, ty, vx, vy, TINY, seed=0) == acc  # seeded
    ones = torch.ones(len(tx), 32, 32)
    blank = roar.retrain(roar.roar_dataset(tx, ones, 1.0), ty, roar.roar_dataset(vx, ones[: len(vx)], 1.0), vy, TINY)
    assert blank <= 0.2, blank  # no pixel left: no information


def test_run_roar_and_summarize(learnable) -> None:
    tx, ty, vx, vy = learnable
    maps_tr, maps_te = torch.rand(len(tx), 32, 32), torch.rand(len(vx), 32, 32)
    logged = []
    res = roar.run_roar(tx, ty, vx, vy, maps_tr, maps_te, fractions=(0.5, 1.0), seeds=(0, 1), config=TINY,
                        progress=False, log=logged.append)
    assert set(res) == {"0.5", "1"} and all(len(v) == 2 for v in res.values()) and len(logged) == 4
    assert max(res["1"]) <= 0.2 < min(res["0.5"])  # random removal of half the pixels keeps the stripes learnable
    ts, means, sds = roar.summarize({"0.9": [0.2, 0.4], "0.1": [0.5]})
    assert ts == [0.1, 0.9] and means == pytest.approx([0.5, 0.3]) and sds == pytest.approx([0.0, math.sqrt(0.02)])
    with pytest.raises(ValueError, match="one map per"):
        roar.run_roar(tx, ty, vx, vy, maps_tr[:3], maps_te, fractions=(0.5,), config=TINY, progress=False)


def test_plot_roar_one_line_per_method() -> None:
    import matplotlib

    matplotlib.use("Agg")
    fig = roar.plot_roar({"random": {"0.5": [0.4, 0.5]}, "gradient": {"0.5": [0.3]}}, baseline=[0.6])
    assert len(fig.axes[0].get_legend().get_texts()) == 2


def test_plot_roar_intervals_include_the_test_sets_error() -> None:
    """With ``n_test`` the error bars are :func:`roar.interval`'s 95 % half-widths (binomial error included, so one
    seed gets a bar too); without it, the seeds' standard deviation (none for one seed)."""
    import matplotlib

    matplotlib.use("Agg")
    curves = {"gradient": {"0.9": [0.3], "0.5": [0.45]}}
    for n_test, expected in ((2000, [roar.interval([0.45], 2000)[1], roar.interval([0.3], 2000)[1]]), (None, [0, 0])):
        fig = roar.plot_roar(curves, n_test=n_test)
        bars = fig.axes[0].containers[0].lines[2][0].get_segments()  # one vertical segment per point, t sorted
        halves = [(seg[1][1] - seg[0][1]) / 2 for seg in bars]
        assert halves == pytest.approx(expected, abs=1e-9), (n_test, halves)
        matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------------------------------- the shipped table
def _leaves(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


def test_shipped_table_has_the_full_grid() -> None:
    table = roar.load_table()
    assert table["complete"] is True
    defaults = roar_grid.build_parser().parse_args([])
    s = table["settings"]
    # the shipped table is what the tool's defaults produce (so its command reproduces it)
    assert s["methods"] == list(roar.DEFAULT_METHODS) == defaults.methods
    assert s["fractions"] == list(roar.DEFAULT_FRACTIONS) == defaults.fractions
    assert s["seeds"] == defaults.seeds == [0, 1, 2]
    assert (s["train_images"], s["test_images"]) == (defaults.train, defaults.test)
    assert s["retrain"] == roar.RetrainConfig(epochs=defaults.epochs).as_dict()
    assert table["command"].startswith("python tools/roar_grid.py")
    assert table["machine"] and table["wall_minutes"] > 0 and table["retrain_seconds_median"] > 0
    missing = set(roar.DEFAULT_METHODS) - set(table["map_seconds"])  # every method timed, or the gap explained
    assert not missing or all(m in table["map_seconds_note"] for m in missing), missing
    assert len(table["baseline_per_seed"]) == 3
    assert set(table["table"]) == set(roar.DEFAULT_METHODS)
    for method, res in table["table"].items():
        assert [float(t) for t in res] == list(roar.DEFAULT_FRACTIONS), method
        for accs in res.values():
            assert len(accs) == 3 and all(0.0 <= a <= 1.0 for a in accs)
    assert all(isinstance(v, (numbers.Number, str, bool)) or v is None for v in _leaves(table))  # numbers only
    assert (ROOT / "data" / "roar" / "roar_cifar10.json").stat().st_size < 100_000  # never images
    base = float(np.mean(table["baseline_per_seed"]))
    assert base > 0.5  # the small CNN learns CIFAR-10
    for method in table["table"]:  # removing 90 % of the pixels costs accuracy, whatever the ranking
        assert np.mean(table["table"][method]["0.9"]) < base - 0.05, method


def test_tool_quick_run(tmp_path) -> None:
    if not roar_grid.DEFAULT_TAR.exists():
        pytest.skip(f"{roar_grid.DEFAULT_TAR} is not here")
    out = tmp_path / "roar.json"
    assert roar_grid.main(["--quick", "--out", str(out), "--cache-dir", str(tmp_path / "maps"), "--threads", "2"]) == 0
    table = json.loads(out.read_text())
    assert table["complete"] and set(table["table"]) == {"random", "gradient"}
    assert all(len(v) == 1 for res in table["table"].values() for v in res.values())
    assert set(table["map_seconds"]) == {"random", "gradient"}  # timed, and stored with the cached maps
    again = tmp_path / "again.json"  # a second run reads the maps from the cache and still reports their seconds
    assert roar_grid.main(["--quick", "--out", str(again), "--cache-dir", str(tmp_path / "maps")]) == 0
    assert json.loads(again.read_text())["map_seconds"] == table["map_seconds"]


def test_tool_quick_never_overwrites_the_shipped_table() -> None:
    before = roar.TABLE_PATH.read_bytes()
    with pytest.raises(SystemExit, match="shipped table"):
        roar_grid.main(["--quick", "--out", str(roar.TABLE_PATH)])
    assert roar.TABLE_PATH.read_bytes() == before
    doc = roar_grid.__doc__
    assert json.loads(roar.TABLE_PATH.read_text())["command"] in doc  # the docstring names the recorded command


def test_interval_counts_the_test_set_and_compare_calls_ties() -> None:
    mean, half = roar.interval([0.35], 2000)
    assert mean == 0.35 and abs(half - 1.96 * (0.35 * 0.65 / 2000) ** 0.5) < 1e-12  # one seed: binomial only
    _, half3 = roar.interval([0.34, 0.35, 0.36], 2000)
    assert half3 > half  # the seed spread adds to it
    assert roar.compare([0.345, 0.35, 0.34], [0.355, 0.36, 0.35], 2000)[2] == "tie"  # 1 point apart: noise
    diff, h, verdict = roar.compare([0.30, 0.30, 0.30], [0.40, 0.40, 0.40], 2000)
    assert verdict == "lower" and abs(diff + 0.10) < 1e-12 and h < 0.1
    assert roar.compare([0.40], [0.30], 2000)[2] == "higher"
