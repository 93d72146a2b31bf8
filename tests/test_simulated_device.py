"""The simulated GPU (``XAI_DEVICE=sim``, ``helpers/simulated_device.py``): every kind of placement bug fails under it
as on CUDA, the same code written correctly passes, results equal the CPU's; ``XAI_DEVICE`` is validated; the
helpers that take a device run on it; and the two bugs notebook 05 had (issue #34) are reproduced small."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from helpers import attribution, cam, env, evaluation, occlusion, plotting, roar, scaffolding, training  # noqa: E402
from helpers import lime as our_lime  # noqa: E402
from helpers import simulated_device as sd  # noqa: E402
from helpers.cifar_models import CNNConfig, build_model  # noqa: E402
from helpers.data import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402

WIDTHS = (8, 16, 16, 32)


@pytest.fixture
def dev():
    """The simulated GPU for one test (off again afterwards)."""
    with sd.simulated() as device:
        yield device
    assert not sd.active()


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(CNNConfig(num_classes=10, widths=WIDTHS)).eval()


def _pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """The same small CourseCNN twice: one for the CPU, one to move to the device."""
    a = _cnn(seed)
    b = _cnn(seed)
    b.load_state_dict(a.state_dict())
    return a, b


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---- the placement bugs fail, the correct code passes -------------------------------------------------------------
def test_model_on_device_fed_a_cpu_batch_raises(dev):
    model = _cnn().to(dev)
    x = _images()
    with pytest.raises(RuntimeError, match="same device"):
        model(x)
    assert model(x.to(dev)).shape == (4, 10)


def test_module_whose_tensor_stayed_on_the_cpu_raises(dev):
    class Scaled(nn.Module):
        def __init__(self, registered: bool) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)
            scale = torch.tensor([1.0, 2.0, 3.0])
            if registered:
                self.register_buffer("scale", scale)  # moves with .to(DEVICE)
            else:
                self.scale = scale  # a plain attribute: stays on the CPU

        def forward(self, x):
            return self.lin(x * self.scale)

    x = torch.randn(5, 3).to(dev)
    with pytest.raises(RuntimeError, match="same device"):
        Scaled(registered=False).to(dev)(x)
    assert Scaled(registered=True).to(dev)(x).shape == (5, 2)


def test_device_tensor_to_numpy_and_matplotlib_raises(dev):
    t = torch.rand(8, 8, device=dev)
    for to_numpy in (lambda a: a.numpy(), np.asarray, lambda a: np.array(a)):
        with pytest.raises(TypeError, match="numpy"):
            to_numpy(t)
    fig, ax = plt.subplots()
    with pytest.raises(TypeError, match="numpy"):
        ax.imshow(t)
    ax.imshow(t.cpu())  # the correct code
    assert np.array_equal(np.asarray(t.cpu()), t.cpu().numpy())
    plotting.show_image(torch.rand(3, 8, 8, device=dev), ax=ax)  # the course's plotting helpers accept them
    plotting.overlay_heatmap(np.zeros((8, 8, 3)), t, ax=ax)
    plt.close(fig)


def test_cpu_tensor_made_inside_a_helper_raises(dev):
    def bad(x):
        return x * torch.linspace(0, 1, x.shape[-1])  # no device=: on the CPU

    def good(x):
        return x * torch.linspace(0, 1, x.shape[-1], device=x.device)

    x = torch.rand(2, 5).to(dev)
    with pytest.raises(RuntimeError, match="same device"):
        bad(x)
    assert torch.equal(good(x).cpu(), good(x.cpu()))


def test_what_cuda_allows_is_allowed(dev):
    x = torch.arange(6.0).view(2, 3).to(dev)
    assert float(x.sum() + torch.tensor(1.0)) == 16.0  # a 0-dim CPU tensor
    assert float((x * 2).max()) == 10.0  # a Python scalar
    assert x[torch.tensor([1])].tolist() == [[3.0, 4.0, 5.0]]  # CPU indices
    assert x[torch.tensor([True, False])].shape == (1, 3)
    out = torch.zeros(2, 3)
    out.copy_(x)  # copies across devices
    assert out.tolist() == x.tolist()
    assert x.sum().item() == 15.0 and f"{x.sum():.1f}" == "15.0" and x.tolist()[1] == [3.0, 4.0, 5.0]
    assert type(x.cpu()) is torch.Tensor and x.cpu().device.type == "cpu"
    assert x.device == torch.device("cuda", 0) and x.is_cuda and "cuda:0" in repr(x)


def test_placement_calls_land_on_the_simulated_device(dev):
    t = torch.ones(2)
    for moved in (t.cuda(), t.to("cuda"), t.to(dev), t.to(torch.device("cuda", 0)), t.to("cuda", torch.float64),
                  torch.ones(2, device="cuda"), torch.zeros_like(t, device=dev), torch.tensor([1.0, 1.0], device=dev)):
        assert sd.is_simulated(moved), moved
    assert t.to(dev).dtype == torch.float32 and t.to("cuda", torch.float64).dtype == torch.float64
    assert not sd.is_simulated(t.to(dev).to("cpu")) and not sd.is_simulated(t.to(dev).cpu())
    other = torch.zeros(1).to(dev)
    assert sd.is_simulated(t.to(other))
    model = nn.Linear(2, 2).cuda()
    assert all(sd.is_simulated(p) and isinstance(p, nn.Parameter) for p in model.parameters())
    assert all(not sd.is_simulated(p) for p in model.cpu().parameters())


def test_cuda_and_accelerator_calls(dev):
    assert torch.cuda.is_available() and torch.cuda.device_count() == 1
    assert "simulated" in torch.cuda.get_device_name(0)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.manual_seed_all(0)
    assert torch.cuda.memory_allocated() == 0 and torch.cuda.max_memory_allocated() == 0
    assert torch.accelerator.is_available() and torch.accelerator.current_accelerator().type == "cuda"
    assert not torch.accelerator.current_stream().is_capturing()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    end.record()
    assert end.elapsed_time(end) == 0.0 and start.elapsed_time(end) >= 0.0
    with torch.random.fork_rng():  # asks torch.cuda for its RNG states
        torch.rand(1)


def test_generators(dev):
    g = torch.Generator(device=dev).manual_seed(3)
    assert isinstance(g, torch.Generator) and g.device.type == "cuda"
    a = torch.randn(5, generator=g, device=dev)
    b = torch.randn(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.cpu(), b)  # the simulated GPU draws what the CPU draws
    with pytest.raises(RuntimeError, match="generator"):
        torch.randn(5, generator=torch.Generator().manual_seed(3), device=dev)  # a CPU generator for a GPU op
    x = torch.zeros(3).to(dev)
    x.normal_(generator=torch.Generator(device=dev).manual_seed(1))
    with pytest.raises(RuntimeError, match="generator"):
        x.normal_(generator=torch.Generator().manual_seed(1))


def test_save_and_load_round_trip(dev):
    model = _cnn().to(dev)
    buf = io.BytesIO()
    torch.save({"state": model.state_dict(), "x": torch.arange(3.0).to(dev)}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert sd.is_simulated(back["x"]) and back["x"].tolist() == [0.0, 1.0, 2.0]
    fresh = _cnn(seed=1)
    fresh.load_state_dict({k: v.cpu() for k, v in back["state"].items()})
    assert torch.equal(fresh.fc.weight, model.fc.weight.cpu())


# ---- results equal the CPU's -------------------------------------------------------------------------------------
def test_forward_backward_and_training_step_equal_the_cpu(dev):
    cpu_model, dev_model = _pair()
    dev_model.to(dev).train()
    cpu_model.train()
    x, y = _images(8), torch.arange(8) % 10
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (cpu_model, dev_model)]
    for _ in range(2):
        losses = []
        for m, opt, xb, yb in ((cpu_model, opts[0], x, y), (dev_model, opts[1], x.to(dev), y.to(dev))):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(m(xb), yb)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for p, q in zip(cpu_model.parameters(), dev_model.parameters(), strict=True):
        torch.testing.assert_close(p, q.detach().cpu(), rtol=1e-4, atol=1e-5)


def test_amp_training_on_the_simulated_gpu_equals_fp32_on_the_cpu(dev):
    """training.train with amp=True: CUDA autocast + GradScaler on the simulated GPU compute in fp32 (documented)."""
    cpu_model, dev_model = _pair()
    u8 = (torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labels = torch.arange(64) % 10
    cfg = training.TrainConfig(epochs=1, batch_size=32, lr=1e-3, amp=True, eval_every=1, seed=0)
    training.train(cpu_model, u8, labels, dataclass_replace(cfg, amp=False), show_progress=False, device="cpu")
    training.train(dev_model, u8, labels, cfg, show_progress=False, device=dev)
    assert all(sd.is_simulated(p) for p in dev_model.parameters())
    for p, q in zip(cpu_model.parameters(), dev_model.parameters(), strict=True):
        torch.testing.assert_close(p, q.detach().cpu(), rtol=1e-4, atol=1e-5)


def dataclass_replace(cfg, **changes):
    from dataclasses import replace

    return replace(cfg, **changes)


@pytest.mark.parametrize("method", list(evaluation.MAP_METHODS))
def test_explanation_maps_on_the_device_equal_the_cpu(dev, method):
    """Every map method of helpers.evaluation (gradients, IG, SmoothGrad with its generator, Grad-CAM, occlusion,
    random, Sobel) on a device input: a device tensor, equal to the CPU's."""
    cpu_model, dev_model = _pair()
    dev_model.to(dev)
    x, t = _images(2), torch.tensor([1, 7])
    kw = dict(seed=0, ig_steps=4, sg_samples=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    ref = evaluation.explanation_maps(cpu_model, x, t, method, layer=cpu_model.features[-1], **kw)
    got = evaluation.explanation_maps(dev_model, x.to(dev), t.to(dev), method, layer=dev_model.features[-1], **kw)
    assert sd.is_simulated(got)
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-5)


def test_device_taking_helpers_run_on_the_simulated_gpu(dev):
    cpu_model, dev_model = _pair()
    dev_model.to(dev)
    x = _images(2)
    xd = x.to(dev)
    ig = attribution.integrated_gradients(dev_model, xd, 3, attribution.black_baseline(xd, CIFAR10_MEAN, CIFAR10_STD),
                                          steps=4)
    ig_ref = attribution.integrated_gradients(cpu_model, x, 3, attribution.black_baseline(x, CIFAR10_MEAN,
                                                                                           CIFAR10_STD), steps=4)
    torch.testing.assert_close(ig.cpu(), ig_ref, rtol=1e-4, atol=1e-5)
    gc = cam.grad_cam(dev_model, xd, 3, dev_model.features[-1])
    torch.testing.assert_close(gc.cpu(), cam.grad_cam(cpu_model, x, 3, cpu_model.features[-1]), rtol=1e-4, atol=1e-5)
    predict = our_lime.torch_predict_fn(dev_model, CIFAR10_MEAN, CIFAR10_STD)  # the model's device
    imgs = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(predict(imgs), our_lime.torch_predict_fn(cpu_model, CIFAR10_MEAN, CIFAR10_STD)(imgs),
                               rtol=1e-4, atol=1e-6)


def test_roar_retrain_uses_the_device(dev, monkeypatch):
    u8 = (torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labels = torch.arange(64) % 10
    cfg = roar.RetrainConfig(epochs=1, batch_size=32, widths=WIDTHS)
    seen = []
    real_train = training.train

    def spy(model, *args, **kwargs):
        hist = real_train(model, *args, **kwargs)
        seen.append(sd.is_simulated(next(model.parameters())))
        return hist

    monkeypatch.setattr(training, "train", spy)
    acc_dev = roar.retrain(u8, labels, u8[:32], labels[:32], cfg, seed=0, device=dev)
    acc_cpu = roar.retrain(u8, labels, u8[:32], labels[:32], cfg, seed=0)
    assert seen == [True, False]
    assert acc_dev == pytest.approx(acc_cpu, abs=1e-9)


# ---- XAI_DEVICE ---------------------------------------------------------------------------------------------------
def test_xai_device_values(monkeypatch):
    monkeypatch.delenv("XAI_DEVICE", raising=False)
    assert env.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("XAI_DEVICE", "CPU")
    assert env.get_device() == torch.device("cpu")
    for bad in ("gpu", "cuda:0", "simulated"):
        monkeypatch.setenv("XAI_DEVICE", bad)
        with pytest.raises(ValueError, match="sim, cpu, cuda, mps"):
            env.get_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("XAI_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="no CUDA GPU.*sim, cpu, cuda, mps"):
            env.get_device()
    if not torch.backends.mps.is_available():
        monkeypatch.setenv("XAI_DEVICE", "mps")
        with pytest.raises(RuntimeError, match="no Apple GPU.*sim, cpu, cuda, mps"):
            env.get_device()


def test_xai_device_sim_turns_the_simulation_on_and_report_says_so(monkeypatch, capsys):
    monkeypatch.setenv("XAI_DEVICE", "sim")
    try:
        device = env.report()[3]
        assert device == torch.device("cuda") and env.simulated() and torch.cuda.is_available()
        assert "SIMULATED GPU" in capsys.readouterr().out
    finally:
        sd.deactivate()
    assert not env.simulated()
    assert torch.cuda.is_available is not None and "simulated" not in (torch.cuda.get_device_name.__doc__ or "")


# ---- notebook 05's two bugs (issue #34), reproduced small -----------------------------------------------------------
def _old_rank_correlation(a, b):
    """helpers.lime.rank_correlation before the fix: ``np.asarray`` on its arguments."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return float(spearmanr(a, b).statistic)


def test_notebook05_occlusion_maps_on_the_device_into_rank_correlation(dev):
    """Section 7: occlusion maps live on DEVICE and go to rank_correlation. The old code raised on a GPU."""
    cpu_model, dev_model = _pair()
    dev_model.to(dev)
    x_t, t_t = _images(2).to(dev), torch.tensor([1, 7], device=dev)
    fills = {"black": torch.zeros_like(x_t), "mean colour": occlusion.occlusion_fill(x_t, "mean")}
    occ = {n: occlusion.occlusion(dev_model, x_t, t_t, 8, 4, fill=b) for n, b in fills.items()}
    with pytest.raises(TypeError, match="numpy"):
        _old_rank_correlation(occ["black"][0].flatten(), occ["mean colour"][0].flatten())
    rho = our_lime.rank_correlation(occ["black"][0].flatten(), occ["mean colour"][0].flatten())
    x_c = x_t.cpu()
    ref = {n: occlusion.occlusion(cpu_model, x_c, torch.tensor([1, 7]), 8, 4, fill=b.cpu()) for n, b in fills.items()}
    assert rho == pytest.approx(our_lime.rank_correlation(ref["black"][0].flatten(), ref["mean colour"][0].flatten()))
    assert our_lime.topk_agreement(occ["black"][0].flatten(), ref["black"][0].flatten(), 3) == 1.0


def test_notebook05_shortcut_module_must_be_moved_to_the_device(dev):
    """Section 7.1: ShortcutModule(cnn, ...) built around the CNN on DEVICE; its buffers are made on the CPU. The
    old cell never moved it to DEVICE and raised in ``triggered``; the fix is ``.to(DEVICE)``."""
    cpu_model, dev_model = _pair()
    dev_model.to(dev)
    trigger = scaffolding.sticker(8, "dark")
    img = scaffolding.add_sticker(np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32), 8, kind="dark")
    x = (torch.from_numpy(img).permute(0, 3, 1, 2) - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        CIFAR10_STD).view(1, 3, 1, 1)
    old = scaffolding.ShortcutModule(dev_model, trigger, 9, CIFAR10_MEAN, CIFAR10_STD).eval()
    with pytest.raises(RuntimeError, match="same device"):
        old(x.to(dev))
    fixed = scaffolding.ShortcutModule(dev_model, trigger, 9, CIFAR10_MEAN, CIFAR10_STD).to(dev).eval()
    ref = scaffolding.ShortcutModule(cpu_model, trigger, 9, CIFAR10_MEAN, CIFAR10_STD).eval()
    with torch.no_grad():
        p_dev, p_cpu = fixed(x.to(dev)).softmax(-1), ref(x).softmax(-1)
    torch.testing.assert_close(p_dev.cpu(), p_cpu)
    assert float(p_dev[0, 9]) == pytest.approx(0.95, abs=1e-4)  # the trigger fired


def test_numbers_assigned_and_zero_gradients_made_in_cpp_keep_their_values(dev):
    """C++ makes such tensors "on the device of" a simulated tensor (meta, without data): a number assigned into a
    tensor, autograd's zero gradient of an unused output, a scalar inside a backward formula."""
    x = torch.zeros(3).to(dev)
    x[1] = 0.5
    x[torch.tensor([True, False, False])] = 2.0
    assert x.tolist() == [2.0, 0.5, 0.0]
    a = torch.arange(6.0).view(2, 3)
    grads = []
    for t in (a.clone().requires_grad_(True), a.to(dev).requires_grad_(True)):
        first, _ = t.unbind(0)  # the second output gets no gradient: autograd fills zeros
        (torch.where(first > 1, first, 0.0) * 3).sum().backward()
        grads.append(t.grad.cpu())
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("name", ["gaussian_noise", "gaussian_blur", "jpeg", "pixelate"])
def test_corruptions_on_device_images_equal_the_cpu(dev, name):
    from helpers import corruptions

    u8 = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    got = corruptions.corrupt(u8.to(dev), name, 3, seed=1)
    assert sd.is_simulated(got)
    assert torch.equal(got.cpu(), corruptions.corrupt(u8, name, 3, seed=1))


def test_list_indices_equal_the_cpu() -> None:
    """``t[:, [1, 4]]``: C++ turns the list into an index tensor on the advertised (meta) device, which has no data;
    the simulator must give the CPU's result (found by notebook 06's dataset examples, whose maps came out as 1e25)."""
    from helpers import simulated_device as sd

    a = torch.randn(4, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    with sd.simulated():
        b = a.to("cuda")
        torch.testing.assert_close(b[:, [1, 4]].cpu(), a[:, [1, 4]])
        torch.testing.assert_close(b[[0, 2]].cpu(), a[[0, 2]])
        torch.testing.assert_close(b[[True, False, True, True]].cpu(), a[[True, False, True, True]])
        c = b.clone()
        c[:, [1, 4]] = 0.0
        expected = a.clone()
        expected[:, [1, 4]] = 0.0
        torch.testing.assert_close(c.cpu(), expected)
