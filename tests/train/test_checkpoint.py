import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dltrain.errors import ConfigError
from dltrain.training import checkpoint
from dltrain.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_round_trip_of_plain_data(tmp_path):
    payload = {"model": {"w": torch.arange(4.0)}, "state": {"step": 3}, "config": {"a": [1, 2]}}
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert loaded["state"] == {"step": 3} and loaded["config"] == {"a": [1, 2]}


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"state": {"step": 1}})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"state": {"step": 2}})
    monkeypatch.undo()
    assert load_checkpoint(path)["state"] == {"step": 1}
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


class Exploit:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    torch.save({"format": 1, "model": Exploit(marker)}, bad)
    with pytest.raises(ConfigError, match="not a plain-data checkpoint"):
        load_checkpoint(bad)
    assert not marker.exists()
    # and the same object really does run code under plain pickle
    with open(bad, "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_truncated_and_foreign_files_are_named(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": {"w": torch.zeros(1000)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(ConfigError, match="not a dltrain checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(ConfigError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
