"""helpers.hooks: layer resolution with one error type and a hint, recording contexts that remove their hooks
(also after an exception), the in-place-ReLU guard, stopping the forward pass early, hook counting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import hooks


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3, padding=1),
                         nn.Flatten(), nn.Linear(2 * 6 * 6, 3))


def test_resolve_layer_by_name_and_module() -> None:
    net = _net()
    assert hooks.resolve_layer(net, "2") is net[2]
    assert hooks.resolve_layer(net, net[0]) is net[0]


def test_one_error_type_with_the_difflib_hint() -> None:
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(hooks.LayerNotFoundError, match=r"did you mean 'features'") as info:
        hooks.resolve_layer(net, "feature")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert not str(info.value).startswith("'")  # not KeyError's quoted message
    with pytest.raises(hooks.LayerNotFoundError, match="named_modules"):
        hooks.resolve_layer(net, "zzzzzz")  # nothing close: say how to list the names
    with pytest.raises(hooks.LayerNotFoundError, match="not a submodule"):
        hooks.resolve_layer(net, nn.Conv2d(3, 3, 1))
    with pytest.raises(hooks.LayerNotFoundError):
        hooks.resolve_layer(net, "")  # the model itself is not a layer
    with pytest.raises(TypeError):
        hooks.resolve_layer(net, 3)  # type: ignore[arg-type]


def test_capture_records_and_removes_its_hooks_also_after_an_exception() -> None:
    net, x = _net(), torch.randn(2, 3, 6, 6)
    with hooks.capture(net, net[0]) as rec:
        net(x)[:, 1].sum().backward()
        assert hooks.count_hooks(net) == 1
    assert rec.activations.shape == rec.gradients.shape == (2, 4, 6, 6)
    assert hooks.count_hooks(net) == 0
    with pytest.raises(RuntimeError), hooks.capture(net, "0"):
        net(torch.randn(2, 5, 6, 6))  # wrong channel count: the forward pass fails
    assert hooks.count_hooks(net) == 0
    with pytest.raises(RuntimeError), hooks.record_outputs(net, ["0", net[2]]):
        net(torch.randn(2, 5, 6, 6))
    assert hooks.count_hooks(net) == 0


def test_recorded_output_survives_the_in_place_relu_after_it() -> None:
    net, x = _net(), torch.randn(2, 3, 6, 6)
    expected = net[0](x)
    assert (expected < 0).any()  # there is something for the in-place ReLU to overwrite
    with torch.no_grad(), hooks.capture(net, net[0]) as rec:
        net(x)
    torch.testing.assert_close(rec.activations, expected.detach())
    with torch.no_grad(), hooks.record_outputs(net, [net[0]]) as acts:
        net(x)
    torch.testing.assert_close(acts["0"], expected.detach())


def test_relu_not_inplace_restores_the_flags_after_an_exception() -> None:
    net = _net()
    with pytest.raises(ZeroDivisionError), hooks.relu_not_inplace(net) as relus:
        assert relus == [net[1]] and not net[1].inplace
        raise ZeroDivisionError
    assert net[1].inplace


def test_stop_early_skips_the_rest_of_the_network() -> None:
    net, x = _net(), torch.randn(2, 3, 6, 6)
    calls = []
    with hooks.forward_hook(net[4], lambda m, i, o: calls.append(1)), \
            hooks.record_outputs(net, ["0"], stop_early=True) as acts:
        assert hooks.run_until_stopped(net, x) is None
    assert acts["0"].shape == (2, 4, 6, 6) and not calls
    assert hooks.count_hooks(net) == 0
    with pytest.raises(hooks.StopForward), hooks.record_outputs(net, ["0"], stop_early=True):
        net(x)  # without run_until_stopped the signal reaches the caller
    assert hooks.run_until_stopped(net, x).shape == (2, 3)


def test_count_hooks_counts_every_kind() -> None:
    net = _net()
    handles = [net[0].register_forward_hook(lambda *a: None), net[1].register_forward_pre_hook(lambda *a: None),
               net[2].register_full_backward_hook(lambda *a: None)]
    assert hooks.count_hooks(net) == 3
    for h in handles:
        h.remove()
    assert hooks.count_hooks(net) == 0
