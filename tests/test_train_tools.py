"""The training tools' shared command line (tools/train_checkpoint.py: add_split_args, load_split) and each tool's
``--help``."""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path

import pytest
import torch
import train_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("--data", "--cache", "--threads", "--out", "--no-save")


def test_split_args_defaults_and_load_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = argparse.ArgumentParser()
    train_checkpoint.add_split_args(p)
    args = p.parse_args([])
    assert (args.data, args.cache) == (train_checkpoint.DEFAULT_TAR, train_checkpoint.DEFAULT_CACHE)
    assert args.out == ROOT / "data" / "checkpoints" and args.threads is None and args.no_save is False
    split = {"train_x": torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "train_y": torch.arange(4),
             "val_x": torch.ones(2, 3, 32, 32, dtype=torch.uint8), "val_y": torch.arange(2)}
    torch.save(split, tmp_path / "split.pt")
    threads: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    args = p.parse_args(["--cache", str(tmp_path / "split.pt"), "--data", str(tmp_path / "none.tar.gz"),
                         "--threads", "1", "--no-save"])
    tx, ty, vx, vy = train_checkpoint.load_split(args)
    assert threads == [1] and args.no_save
    assert torch.equal(tx, split["train_x"]) and torch.equal(vy, split["val_y"]) and vx.shape == (2, 3, 32, 32)
    args.cache = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="--data"):
        train_checkpoint.load_split(args)
    q = argparse.ArgumentParser()
    train_checkpoint.add_split_args(q, out=None)  # a tool that writes no checkpoint
    assert not hasattr(q.parse_args([]), "out")


@pytest.mark.parametrize("tool", ["train_checkpoint", "train_ensemble", "train_random_labels", "train_shapes"])
def test_tool_help_lists_the_shared_options(tool: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    main = importlib.import_module(tool).main
    monkeypatch.setattr(sys, "argv", [f"{tool}.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr().out
    assert stop.value.code == 0 and all(option in out for option in SHARED), out


def test_train_checkpoint_records_its_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run from random weights saves the checkpoint and adds its validation curve to <out>/curves.json."""
    from helpers.checkpoints import training_curves

    g = torch.Generator().manual_seed(0)
    split = {"train_x": torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g),
             "train_y": torch.arange(256) % 10, "val_x": torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8,
                                                                     generator=g), "val_y": torch.arange(8) % 10}
    torch.save(split, tmp_path / "split.pt")
    monkeypatch.setattr(sys, "argv", ["train_checkpoint.py", "cnn_cifar10", "--cache", str(tmp_path / "split.pt"),
                                      "--out", str(tmp_path), "--epochs", "2", "--widths", "4", "4", "4", "4",
                                      "--amp", "off", "--threads", "1"])
    train_checkpoint.main()
    curve = training_curves(tmp_path)["cnn_cifar10"]
    assert curve.epochs == (1.0, 2.0) and curve.train_images == 256 and len(curve.val_accuracy) == 2
    assert curve.label.startswith("cnn_cifar10: 2")
    assert (tmp_path / "cnn_cifar10.pt").exists() and (tmp_path / "manifest.json").exists()
    command = json.loads((tmp_path / "manifest.json").read_text())["cnn_cifar10"]["command"]
    assert command == "python tools/train_checkpoint.py " + shlex.join(sys.argv[1:])  # the command as it was run
    assert "--widths 4 4 4 4 --amp off --threads 1" in command
