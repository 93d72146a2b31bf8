"""helpers.training: augmentation, normalisation, the training loop, evaluation and prediction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from helpers import training
from helpers.data import CIFAR10_MEAN, CIFAR10_STD
from helpers.training import (
    EnsembleTeacher,
    History,
    TrainConfig,
    augment_batch,
    cutout_batch,
    distillation_loss,
    evaluate,
    normalize_uint8,
    predict,
    swa_bn_batches,
    train,
)


def uint8_images(b: int = 4, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- augmentation


def test_augment_batch_shape_dtype_and_determinism():
    x = uint8_images(6, 32, 32)
    out1 = augment_batch(x, padding=4, flip=True, generator=torch.Generator().manual_seed(1))
    out2 = augment_batch(x, padding=4, flip=True, generator=torch.Generator().manual_seed(1))
    out3 = augment_batch(x, padding=4, flip=True, generator=torch.Generator().manual_seed(2))
    assert out1.shape == x.shape and out1.dtype == torch.uint8 and out1.is_contiguous()
    assert torch.equal(out1, out2)
    assert not torch.equal(out1, out3)
    xf = normalize_uint8(x)
    outf = augment_batch(xf, generator=torch.Generator().manual_seed(1))
    assert outf.dtype == torch.float32 and outf.shape == xf.shape


def test_augment_batch_identity_without_padding_and_flip():
    x = uint8_images()
    assert torch.equal(augment_batch(x, padding=0, flip=False), x)


def test_cutout_zeroes_one_clipped_square_per_image_and_keeps_the_rest():
    x = torch.rand(200, 3, 12, 12) + 1.0  # no zeros before cutout
    before = x.clone()
    out = cutout_batch(x, 4, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before), "the input is not modified"
    zero = out == 0
    assert (zero.all(1) | ~zero.any(1)).all(), "the same pixels are cut in every channel"
    keep = ~zero
    assert torch.equal(out[keep], x[keep])
    for m in zero[:, 0]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        # a (possibly clipped) axis-aligned rectangle: every pixel inside its bounding box is cut
        assert m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert m.sum() == len(rows) * len(cols)
    sizes = zero[:, 0].flatten(1).sum(1)
    assert (sizes == 16).any() and (sizes < 16).any()  # whole squares inside, clipped ones at the border
    assert torch.equal(cutout_batch(x, 0), x)
    with pytest.raises(ValueError, match="B, C, H, W"):
        cutout_batch(x[0], 4)


def test_flip_only_gives_each_image_or_its_mirror():
    x = uint8_images(64)
    out = augment_batch(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert same.any() and mirrored.any()  # both happen in 64 coin flips


def test_crop_is_a_shifted_window_of_the_reflect_padded_image():
    # a hand-made image whose every pixel is unique: value = 10*row + col (rows/cols 0..4), channels offset
    h = w = 5
    base = (10 * torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)).to(torch.uint8)
    img = torch.stack([base, base + 100, base + 200]).unsqueeze(0)  # (1, 3, 5, 5)
    pad = 2
    padded = F.pad(img.float(), (pad,) * 4, mode="reflect").to(torch.uint8)  # (1, 3, 9, 9)
    seen = set()
    for seed in range(60):
        out = augment_batch(img, padding=pad, flip=False, generator=torch.Generator().manual_seed(seed))
        windows = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out, padded[:, :, dy : dy + h, dx : dx + w])]
        assert len(windows) == 1, "the crop must be exactly one window of the padded image"
        seen.add(windows[0])
    assert len(seen) > 5
    # reflect padding (not zeros): row -1 of the padded image is row 1 of the image
    assert torch.equal(padded[0, 0, pad - 1, pad:-pad], base[1])


def test_normalize_uint8():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    x[1] = 255
    out = normalize_uint8(x)
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[1, :, 0, 0], (1 - mean) / std)
    assert out.dtype == torch.float32
    with pytest.raises(TypeError, match="uint8"):
        normalize_uint8(x.float())


# ---------------------------------------------------------------------------------------------------- training


def toy_dataset(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes that differ in the brightness of the red channel (survives crops and flips)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randint(0, 100, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    x[:, 0] += (y * 150).to(torch.uint8).view(n, 1, 1)
    return x, y


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def test_train_reduces_loss_and_learns_separable_toy_data():
    torch.manual_seed(0)
    tx, ty = toy_dataset(512, seed=0)
    vx, vy = toy_dataset(128, seed=1)
    model = TinyNet()
    before = F.cross_entropy(predict(model, vx), vy).item()
    calls = []
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-2, weight_decay=0.0, amp=False, label_smoothing=0.0,
                      crop_padding=1, warmup_epochs=0.5)
    hist = train(model, tx, ty, cfg, vx, vy, show_progress=False, callback=lambda h: calls.append(len(h.epoch)))
    assert isinstance(hist, History)
    assert len(hist.epoch) == 4 and calls == [1, 2, 3, 4]
    assert hist.epoch == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert all(len(v) == 4 for v in hist.__dict__.values())
    assert hist.train_loss[-1] < hist.train_loss[0]
    after = F.cross_entropy(predict(model, vx), vy).item()
    assert after < 0.5 * before
    assert hist.val_acc[-1] == pytest.approx(evaluate(model, vx, vy))
    assert hist.val_acc[-1] > 0.9
    assert not model.training


def test_train_is_reproducible():
    tx, ty = toy_dataset(128, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, amp=False)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = TinyNet()
        train(model, tx, ty, cfg, show_progress=False)
        outs.append(predict(model, tx[:8]))
    torch.testing.assert_close(outs[0], outs[1])


def test_train_rejects_bad_input():
    model = TinyNet()
    tx, ty = toy_dataset(16, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        train(model, tx.float(), ty, TrainConfig(batch_size=8), show_progress=False)
    with pytest.raises(ValueError, match="larger than the training set"):
        train(model, tx, ty, TrainConfig(batch_size=64), show_progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        train(model, tx, ty, TrainConfig(batch_size=8, optimizer="lbfgs"), show_progress=False)


class RedTeacher(nn.Module):
    """Predicts the toy data's class from the red channel, the wrong way round (bright red -> class 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # so train() can freeze it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0].mean((1, 2)) - 0.6  # normalised red: about 1.3 for class 1, about -0.1 for class 0
        return torch.stack([m, -m], dim=1) * 10


def test_distillation_loss_matches_its_formulas():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 3
    y = torch.randint(0, 5, (6,), generator=g)
    ce = F.cross_entropy(s, y, label_smoothing=0.1)
    torch.testing.assert_close(distillation_loss(s, t, y, "hard", alpha=0.0, label_smoothing=0.1), ce)
    hard = F.cross_entropy(s, t.argmax(1), label_smoothing=0.1)
    mixed = distillation_loss(s, t, y, "hard", alpha=0.3, label_smoothing=0.1)
    torch.testing.assert_close(mixed, 0.7 * ce + 0.3 * hard)
    # soft: T^2 * KL(p_t || p_s) averaged over the batch, written out by hand
    temp = 2.0
    p_t = torch.softmax(t / temp, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / temp, 1))).sum(1).mean() * temp**2
    torch.testing.assert_close(distillation_loss(s, t, y, "soft", alpha=1.0, temperature=temp), kl)
    assert distillation_loss(t, t, y, "soft", alpha=1.0).abs() < 1e-6  # a student equal to its teacher
    # the teacher gets no gradient, the student does
    s.requires_grad_(True)
    t.requires_grad_(True)
    distillation_loss(s, t, y, "soft", alpha=0.5).backward()
    assert s.grad is not None and t.grad is None


def test_distillation_loss_rejects_bad_input():
    s, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, torch.zeros(4, 2), y)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, s, y, alpha=1.5)
    with pytest.raises(ValueError, match="kind"):
        distillation_loss(s, s, y, kind="medium")
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, s, y, kind="soft", temperature=0.0)


def test_train_with_a_teacher_learns_the_teachers_labels():
    torch.manual_seed(0)
    tx, ty = toy_dataset(512, seed=0)
    vx, vy = toy_dataset(128, seed=1)
    teacher = RedTeacher()
    assert evaluate(teacher, vx, 1 - vy) == 1.0
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-2, weight_decay=0.0, amp=False, label_smoothing=0.0,
                      crop_padding=1, warmup_epochs=0.5, distill="hard", distill_alpha=1.0)
    model = TinyNet()
    train(model, tx, ty, cfg, vx, vy, show_progress=False, teacher=teacher)
    assert evaluate(model, vx, 1 - vy) > 0.9, "with alpha = 1 the student follows the teacher, not the labels"
    assert not teacher.training and not teacher.unused.requires_grad and teacher.unused.item() == 0.0
    with pytest.raises(ValueError, match="teacher"):
        train(TinyNet(), tx, ty, cfg, show_progress=False)
    with pytest.raises(ValueError, match="teacher"):
        train(TinyNet(), tx, ty, TrainConfig(batch_size=32), show_progress=False, teacher=teacher)


class _FixedLogits(nn.Module):
    """Returns the same logits (K,) for every image of the batch."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def test_ensemble_teacher_is_the_log_of_the_weighted_mean_probability():
    a, b = _FixedLogits([2.0, 0.0, -1.0]), _FixedLogits([-3.0, 1.0, 0.5])
    x = torch.zeros(5, 3, 4, 4)
    ens = EnsembleTeacher([a, b], weights=[3.0, 1.0])
    p = 0.75 * a(x).softmax(1) + 0.25 * b(x).softmax(1)  # written out by hand
    torch.testing.assert_close(ens(x), p.log())
    torch.testing.assert_close(ens(x).exp().sum(1), torch.ones(5))
    # equal weights by default
    torch.testing.assert_close(EnsembleTeacher([a, b])(x).exp(), 0.5 * (a(x).softmax(1) + b(x).softmax(1)))
    # one member: its own log-probabilities; the members are registered, so .to() / .eval() reach them
    torch.testing.assert_close(EnsembleTeacher([a])(x), a(x).log_softmax(1))
    assert len(list(ens.parameters())) == 2
    ens.eval()
    assert not a.training and not b.training


def test_ensemble_teacher_rejects_bad_input():
    a = _FixedLogits([0.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        EnsembleTeacher([])
    with pytest.raises(ValueError, match="2 weights"):
        EnsembleTeacher([a], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        EnsembleTeacher([a, a], weights=[1.0, 0.0])


def test_constant_schedule_holds_the_learning_rate_after_warm_up(monkeypatch: pytest.MonkeyPatch):
    lrs: list[float] = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    tx, ty = toy_dataset(128, seed=0)
    for schedule in ("constant", "cosine"):
        lrs.clear()
        cfg = TrainConfig(epochs=2, batch_size=16, lr=0.1, optimizer="sgd", warmup_epochs=0.5, amp=False,
                          schedule=schedule)
        train(TinyNet(), tx, ty, cfg, show_progress=False)
        assert len(lrs) == 16 and lrs[0] < lrs[3] < lrs[4] == pytest.approx(0.1)
        if schedule == "constant":
            assert lrs[4:] == pytest.approx([0.1] * 12)
        else:
            assert lrs[-1] < 0.01
    with pytest.raises(ValueError, match="schedule"):
        train(TinyNet(), tx, ty, TrainConfig(batch_size=16, schedule="step"), show_progress=False)
    with pytest.raises(ValueError, match="swa_start"):
        train(TinyNet(), tx, ty, TrainConfig(batch_size=16, swa_start=1.0), show_progress=False)


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_swa_average_is_the_mean_of_the_snapshots_and_recomputes_batchnorm():
    """Three known snapshots of Linear(1, 1) + BatchNorm1d(1), averaged and re-estimated by hand.

    (Before ``AveragedModel`` + ``update_bn`` replaced the hand-written average, both were run on the same
    snapshots of a trained BNNet and a CourseCNN: parameters and running statistics agreed to 6e-8, and whole
    ``train()`` runs with SWA to 2.4e-7.)"""
    net = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    net[1].running_mean.fill_(100.0)  # stale statistics that must not survive
    swa = AveragedModel(net)
    for w, b, gamma, beta in [(1.0, 0.0, 1.0, 0.0), (2.0, 3.0, 1.0, 0.0), (6.0, 0.0, 4.0, 3.0)]:
        with torch.no_grad():
            for p, v in zip(net.parameters(), (w, b, gamma, beta), strict=True):
                p.fill_(v)
        swa.update_parameters(net)
    assert int(swa.n_averaged) == 3
    # the mean snapshot: y = 3 x + 1, then BatchNorm with gamma 2, beta 1
    batches = [torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [3.0]])]  # -> [1, 7] and [4, 10]
    out = training.swa_average(swa, batches)
    assert out is swa.module and not out.training and out[1].momentum == 0.1
    got = [out[0].weight.item(), out[0].bias.item(), out[1].weight.item(), out[1].bias.item()]
    assert got == pytest.approx([3.0, 1.0, 2.0, 1.0])
    # cumulative average of the two batches' statistics: means 4 and 7, unbiased variances 18 and 18
    assert out[1].running_mean.item() == pytest.approx(5.5)
    assert out[1].running_var.item() == pytest.approx(18.0)
    assert out[1].num_batches_tracked.item() == 2
    assert net[1].running_mean.item() == 100.0, "the trained model is not touched"
    with torch.no_grad():  # eval mode uses the recomputed statistics: (3 x + 1 - 5.5) / sqrt(18 + eps) * 2 + 1
        assert out(torch.tensor([[1.5]])).item() == pytest.approx(1.0, abs=1e-5)


def test_swa_bn_batches_use_the_training_augmentation_with_cutout():
    x = torch.full((100, 3, 8, 8), 200, dtype=torch.uint8)  # normalised: no zeros anywhere
    cfg = TrainConfig(batch_size=10, cutout=3, crop_padding=0, flip=False)
    batches = list(swa_bn_batches(x, cfg, n_batches=4))
    assert len(batches) == 4 and all(b.shape == (10, 3, 8, 8) and b.dtype == torch.float32 for b in batches)
    assert all(((b == 0).flatten(1).any(1)).all() for b in batches), "every image has its Cutout square"
    again = list(swa_bn_batches(x, cfg, n_batches=4))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True)), "seeded: the same batches twice"
    cfg.cutout = 0
    assert not any((b == 0).any() for b in swa_bn_batches(x, cfg, n_batches=4))


def test_train_with_swa_returns_the_average_of_its_snapshots(monkeypatch: pytest.MonkeyPatch):
    snapshots: list[dict[str, torch.Tensor]] = []
    add = AveragedModel.update_parameters

    def recording_add(self, model):
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return add(self, model)

    monkeypatch.setattr(AveragedModel, "update_parameters", recording_add)
    torch.manual_seed(0)
    tx, ty = toy_dataset(256, seed=0)
    vx, vy = toy_dataset(64, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, optimizer="sgd", amp=False, schedule="constant",
                      warmup_epochs=0.2, swa_start=0.5, swa_every=4)
    model = BNNet()
    hist = train(model, tx, ty, cfg, vx, vy, show_progress=False)
    assert len(snapshots) == 4  # steps 20, 24, 28, 32 of 32: the second half, every 4 steps
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, torch.stack([s[name] for s in snapshots]).mean(0))
    assert not torch.allclose(snapshots[-1]["conv.weight"], model.conv.weight)
    assert hist.val_acc[-1] == pytest.approx(evaluate(model, vx, vy)), "the history reports the averaged model"
    assert not model.training


# ---------------------------------------------------------------------------------------------------- evaluation


def test_predict_and_evaluate():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = toy_dataset(50, seed=3)
    logits = predict(model, x, batch_size=16)  # several batches, the last one partial
    assert logits.shape == (50, 2) and logits.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(logits, model(normalize_uint8(x)))
    # already-normalised float input is passed through unchanged
    torch.testing.assert_close(predict(model, normalize_uint8(x)), logits)
    acc = evaluate(model, x, y, batch_size=7)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert evaluate(model, x, logits.argmax(1)) == 1.0
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, x, y[:10])


def test_cpu_autocast_only_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    # emulated bf16 is an order of magnitude slower than fp32, so amp=True must fall back to fp32 there
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not training.cpu_has_native_bf16()
    with training._autocast(cpu, True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert training.cpu_has_native_bf16()
    with training._autocast(cpu, True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with training._autocast(cpu, False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_with_overrides_copies_given_options_only() -> None:
    """The tools' command-line overrides: given values replace the recipe's, None keeps it, the recipe is untouched,
    a misspelt field is an error."""
    recipe = training.TrainConfig(epochs=7, lr=0.1)
    cfg = training.with_overrides(recipe, epochs=3, lr=None, amp=False)
    assert (cfg.epochs, cfg.lr, cfg.amp) == (3, 0.1, False)
    assert (recipe.epochs, recipe.lr) == (7, 0.1) and cfg is not recipe
    with pytest.raises(TypeError, match="no field epoch"):
        training.with_overrides(recipe, epoch=3)
