"""helpers.env (modes, seeds, cache dir) and helpers.checks (pass / fail with hint / not done, strict mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import checks, env


def test_flags_follow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, fn in (("XAI_SMOKE", env.smoke), ("XAI_OFFLINE", env.offline), ("XAI_STRICT", env.strict)):
        monkeypatch.setenv(var, "1")
        assert fn()
        monkeypatch.setenv(var, "0")
        assert not fn()
        monkeypatch.delenv(var)
        assert not fn()


def test_data_dir_override_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XAI_DATA_DIR", str(tmp_path / "d"))
    assert env.data_dir() == tmp_path / "d" and (tmp_path / "d").is_dir()
    monkeypatch.delenv("XAI_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert env.data_dir() == tmp_path / "cache" / "xai-course"


def test_seed_everything_reproducible() -> None:
    env.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    env.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_report_mentions_random_weights_offline(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("XAI_OFFLINE", "1")
    smoke, offline, strict, device = env.report()
    assert offline and device.type in ("cpu", "cuda")
    assert "RANDOM weights" in capsys.readouterr().out
    assert not env.in_colab()


def _ref(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def test_check_close_pass_fail_todo(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("XAI_STRICT", raising=False)
    x = torch.arange(4.0)
    assert checks.check_close("ok", lambda t: t + t, _ref, args=(x,)).status == "passed"
    r = checks.check_close("wrong", lambda t: t * 3, _ref, args=(x,), hint="double it")
    assert r.status == "failed" and "values differ" in r.message and "double it" in r.message
    assert repr(r) == "<check 'wrong': failed>"  # short: a check is often the last line of a cell

    def todo(t):
        raise NotImplementedError

    assert checks.check_close("todo", todo, _ref, args=(x,)).status == "not done"
    assert checks.check_close("shape", lambda t: t[:2], _ref, args=(x,)).message.startswith("output: shape (2,)")
    assert "returned None" in checks.check_close("none", lambda t: None, _ref, args=(x,)).message
    crash = checks.check_close("crash", lambda t: t @ torch.ones(7), _ref, args=(x,))
    assert crash.status == "failed" and "RuntimeError" in crash.message
    out = capsys.readouterr().out
    assert "✅ PASS  ok" in out and "❌ FAIL  wrong" in out and "⏳ TODO  todo" in out


def test_strict_mode_raises_on_fail_and_todo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAI_STRICT", "1")
    x = torch.ones(2)
    checks.check_close("ok", lambda t: t * 2, _ref, args=(x,))
    with pytest.raises(checks.CheckFailed):
        checks.check_close("bad", lambda t: t, _ref, args=(x,))

    def todo(t):
        raise NotImplementedError

    with pytest.raises(checks.CheckFailed):
        checks.check_close("todo", todo, _ref, args=(x,))
    assert checks.check_close("demo", lambda t: t, _ref, args=(x,), strict=False).status == "failed"


def test_inputs_are_copied_so_in_place_edits_do_not_leak() -> None:
    x = torch.ones(3)

    def vandal(t):
        t.mul_(100)
        return t / 50

    checks.check_close("copy", vandal, _ref, args=(x,), strict=False)
    assert torch.equal(x, torch.ones(3))


def test_assert_close_containers_and_bools() -> None:
    assert checks.assert_close((torch.ones(2), 3.0), (torch.ones(2), 3.0)) == 0.0
    with pytest.raises(AssertionError, match="sequence of 2"):
        checks.assert_close(torch.ones(2), (torch.ones(2), 1.0))
    with pytest.raises(AssertionError, match="1 of 3 entries differ"):
        checks.assert_close(np.array([True, False, True]), np.array([True, True, True]))
    with pytest.raises(AssertionError, match="NaN"):
        checks.assert_close(torch.tensor([float("nan")]), torch.tensor([1.0]))
    with pytest.raises(AssertionError, match="dtype float32 but expected bool"):
        checks.assert_close(torch.tensor([1.0, 0.0]), torch.tensor([True, False]))  # a float mask is not a mask
    with pytest.raises(AssertionError, match="dtype bool but expected float32"):
        checks.assert_close(torch.tensor([True, False]), torch.tensor([1.0, 0.0]))
