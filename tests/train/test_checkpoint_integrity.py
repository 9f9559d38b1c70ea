"""A checkpoint is never wrong, never lost, never a traceback (issue 21), in-process: the
best.pt / last.pt pair, checksums, non-finite weights, files that are not checkpoints,
temporaries left by a kill, and a full device."""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dltrain.errors import ConfigError
from dltrain.io import NoSpaceError, atomic_write, remove_stale_temporaries, write_json
from dltrain.run import evaluate_run, run
from dltrain.training import checkpoint
from dltrain.training.best_pair import settle_best
from dltrain.training.checkpoint import (
    CHECKSUM,
    RESUMABLE,
    WEIGHTS,
    Checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from dltrain.training.resume import load_weights
from dltrain.training.state import Parts, TrainState

MOONS = ["data=moons", "trainer=smoke", "logger=none", "trainer.deterministic=true"]


# -- helpers --------------------------------------------------------------------------------

def flip_tensor_bytes(path: Path, n: int = 64) -> None:
    """Invert `n` bytes in the middle of the largest tensor's data (stored uncompressed in
    torch's zip): what a bad disk or a bad copy does, invisible to torch.load."""
    with zipfile.ZipFile(path) as z:
        big = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(big.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        start = big.header_offset + 30 + name_len + extra_len + big.file_size // 2
        f.seek(start)
        data = f.read(n)
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in data))


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                               torch.nn.Linear(8, 2))


def parts_of(model: torch.nn.Module) -> Parts:
    return Parts(model, model, torch.nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                 None)


def pair_folder(folder: Path, last_step: int, best_step: int, best_file_step: int | None
                ) -> dict[str, torch.Tensor]:
    """A run's checkpoints/ as Checkpoints leaves it: last.pt at `last_step` recording
    `best_step`, best.pt at `best_file_step` (None: no best.pt). Returns last.pt's weights."""
    model = small_model()
    saver = Checkpoints(parts_of(model), {"config": {}, "spec": {}, "norm": {}, "data": {}},
                        folder)
    if best_file_step is not None:
        _, best = saver.payloads(TrainState(step=best_file_step, best_step=best_file_step))
        saver.write(None, best)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # later weights than best.pt's
    last, _ = saver.payloads(TrainState(step=last_step, best_step=best_step))
    saver.write(last, None)
    return {k: v.clone() for k, v in model.state_dict().items()}


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# -- 1. the best.pt / last.pt pair -----------------------------------------------------------

def test_a_stop_between_last_and_best_is_repaired_from_last(tmp_path, caplog, monkeypatch):
    """A second Ctrl-C (or SIGKILL) while best.pt is written: last.pt names itself the best
    step, best.pt is older; reading the pair rewrites best.pt from last.pt's weights."""
    folder = tmp_path / "checkpoints"
    pair_folder(folder, last_step=10, best_step=10, best_file_step=10)
    model = small_model()
    saver = Checkpoints(parts_of(model), {"config": {}, "spec": {}, "norm": {}, "data": {}},
                        folder)
    with torch.no_grad():
        model[0].weight.fill_(0.5)
    real_save = checkpoint.save_checkpoint

    def interrupted_at_best(path, payload):
        if Path(path).name == "best.pt":
            raise KeyboardInterrupt
        real_save(path, payload)

    monkeypatch.setattr(checkpoint, "save_checkpoint", interrupted_at_best)
    with pytest.raises(KeyboardInterrupt):
        saver(TrainState(step=20, best_step=20), True)
    monkeypatch.undo()
    assert load_checkpoint(folder / "best.pt")["state"]["step"] == 10  # stale

    with caplog.at_level(logging.WARNING, "dltrain"):
        assert settle_best(folder) == folder / "best.pt"
    best = load_checkpoint(folder / "best.pt", WEIGHTS)
    assert best["state"]["step"] == 20
    assert torch.equal(best["model"]["0.weight"], torch.full((8, 4), 0.5))
    assert "optimizer" not in best and "rng" not in best  # best.pt's entries, as a run's
    assert "held step 10, not the run's best step 20" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "dltrain"):
        assert settle_best(folder) == folder / "best.pt"  # consistent now: nothing to say
    assert caplog.text == ""


def test_a_stop_before_the_first_best_pt_writes_it_from_last(tmp_path):
    folder = tmp_path / "checkpoints"
    weights = pair_folder(folder, last_step=5, best_step=5, best_file_step=None)
    assert settle_best(folder) == folder / "best.pt"
    assert torch.equal(load_checkpoint(folder / "best.pt")["model"]["2.weight"],
                       weights["2.weight"])


def test_a_consistent_pair_is_left_alone(tmp_path):
    folder = tmp_path / "checkpoints"
    pair_folder(folder, last_step=30, best_step=10, best_file_step=10)
    before = (folder / "best.pt").stat().st_mtime_ns
    assert settle_best(folder) == folder / "best.pt"
    assert (folder / "best.pt").stat().st_mtime_ns == before


def test_a_pair_that_cannot_be_repaired_is_refused_in_one_sentence(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    pair_folder(folder, last_step=30, best_step=20, best_file_step=10)
    with pytest.raises(ConfigError) as err:
        settle_best(folder)
    assert str(err.value) == (
        f"{folder / 'best.pt'} holds the weights of step 10, but the run's best step is 20 "
        "(last.pt, step 30) and no file holds that step's weights; delete best.pt to use the "
        "last weights instead.")
    (folder / "best.pt").unlink()  # as the sentence says: the last weights, with a warning
    with caplog.at_level(logging.WARNING, "dltrain"):
        assert settle_best(folder) == folder / "last.pt"
    assert "the last weights (step 30) are used, not those of the run's best step 20" \
        in caplog.text


def test_a_read_only_run_uses_last_pt_when_best_pt_cannot_be_rewritten(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    pair_folder(folder, last_step=20, best_step=20, best_file_step=10)

    def read_only(path, payload):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("dltrain.training.best_pair.save_checkpoint", read_only)
    assert settle_best(folder) == folder / "last.pt"  # it holds the best step's weights


def test_eval_and_the_runs_test_score_the_repaired_best(make_cfg, tmp_path):
    """A run whose best.pt went stale: `dltrain eval` scores the best step's weights (those
    of last.pt, which is the best step), not the old best.pt's."""
    cfg = make_cfg(*MOONS)
    assert run(cfg, tmp_path).status == "completed"
    folder = tmp_path / "checkpoints"
    last = load_checkpoint(folder / "last.pt")
    assert last["state"]["best_step"] == last["state"]["step"]  # precondition: improved last
    stale = dict(load_checkpoint(folder / "best.pt"))
    stale["model"] = {k: v + 1.0 if v.is_floating_point() else v
                      for k, v in stale["model"].items()}
    stale["state"] = {**stale["state"], "step": 3, "best_step": 3}
    save_checkpoint(folder / "best.pt", stale)
    result = evaluate_run(cfg, tmp_path)
    assert result["step"] == last["state"]["step"]
    assert result["test"] == pytest.approx(summary(tmp_path)["test"])
    best = load_checkpoint(folder / "best.pt")["model"]
    assert all(torch.equal(best[k], last["model"][k]) for k in last["model"])


# -- 2. checksums ----------------------------------------------------------------------------

def test_every_checkpoint_carries_a_checksum_and_flipped_bytes_are_refused(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(256, 1024)}, "state": {"step": 3}})
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw[CHECKSUM], str) and len(raw[CHECKSUM]) == 32
    assert CHECKSUM not in load_checkpoint(path)  # the reader gets the content alone
    flip_tensor_bytes(path)
    torch.load(path, weights_only=True)  # torch itself sees nothing wrong
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"{path} is corrupt: its content does not match the checksum "
                              "saved with it (the file changed after it was written); use a "
                              "copy of it or train again.")


def test_a_checksum_covers_the_plain_entries_too(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"state": {"step": 3}, "config": {"optim": {"lr": 0.1}}})
    payload = torch.load(path, weights_only=True)
    payload["config"]["optim"]["lr"] = 0.2  # a hand-edited checkpoint
    torch.save(payload, path)
    with pytest.raises(ConfigError, match="is corrupt"):
        load_checkpoint(path)


def test_a_checkpoint_from_before_checksums_loads_with_a_warning(tmp_path, caplog):
    path = tmp_path / "old.pt"
    torch.save({"format": 1, "model": {"w": torch.ones(3)}, "state": {"step": 1}}, path)
    with caplog.at_level(logging.WARNING, "dltrain"):
        assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert f"{path} carries no checksum" in caplog.text


# -- 3. non-finite weights -------------------------------------------------------------------

def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    model = small_model()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["2.weight"].fill_(float("nan"))
    with pytest.raises(ConfigError) as err:
        load_weights(small_model(), {"model": weights}, {}, "RUN/best.pt")
    assert str(err.value) == ("RUN/best.pt holds non-finite weights (NaN or infinity in "
                              "2.weight); they cannot be trained on or evaluated.")
    weights["2.weight"].fill_(0.0)
    weights["0.bias"][0] = float("inf")
    with pytest.raises(ConfigError, match=r"infinity in 0\.bias"):
        load_weights(small_model(), {"model": weights}, {})
    weights["0.bias"][0] = 0.0
    weights["1.running_mean"][0] = float("-inf")  # a buffer may hold -inf (an attention mask)
    load_weights(small_model(), {"model": weights}, {})
    weights["1.running_mean"][0] = float("nan")  # but not NaN
    with pytest.raises(ConfigError, match=r"NaN or infinity in 1\.running_mean"):
        load_weights(small_model(), {"model": weights}, {})


def test_a_resume_from_nan_weights_is_refused(make_cfg, tmp_path):
    cfg = make_cfg(*MOONS)
    run(cfg, tmp_path)
    path = tmp_path / "checkpoints" / "last.pt"
    payload = load_checkpoint(path)
    payload["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                        for k, v in payload["model"].items()}
    save_checkpoint(path, payload)  # a valid checksum: the weights themselves are refused
    result = run(make_cfg(*MOONS, "trainer.max_steps=40"), tmp_path, resume=True)
    assert result.exit_code == 2
    assert result.summary["error"].startswith("checkpoints/last.pt holds non-finite weights "
                                              "(NaN or infinity in ")


# -- 4. files that are not checkpoints -------------------------------------------------------

def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name: (path, what its sentence must say)."""
    hostname = tmp_path / "hostname"
    hostname.write_text("a-machine\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))
    cases = {}

    def link(name: str, target: Path) -> Path:
        path = tmp_path / name
        path.symlink_to(target)
        return path

    empty = tmp_path / "empty.pt"
    empty.touch()
    cases["empty"] = (empty, "is empty (0 bytes), not a checkpoint")
    target = Path("/etc/hostname") if Path("/etc/hostname").is_file() else hostname
    cases["link to a text file"] = (link("text.pt", target), "is not a checkpoint: it is not a "
                                    "file that torch.save writes")
    cases["link to .npy"] = (link("npy.pt", tmp_path / "array.npy"), "is not a checkpoint")
    cases["link to .npz"] = (link("npz.pt", tmp_path / "arrays.npz"),
                             "is truncated or corrupt: torch cannot read it as a checkpoint")
    (tmp_path / "dir.pt").mkdir()
    cases["directory"] = (tmp_path / "dir.pt", "is a directory, not a checkpoint file")
    for name, data, says in [
            ("list", [1, 2, 3], "is not a dltrain checkpoint"),
            ("tensor", torch.zeros(3), "is not a dltrain checkpoint"),
            ("no keys", {"format": 1}, "it has no 'model' entry"),
            ("model a list", {"format": 1, "model": [torch.zeros(2)]},
             "its 'model' entry is not a dict of tensors"),
            ("state of another kind", {"format": 1, "model": {}, "state": {"epochs": "x"}},
             "its 'state' entry is not a training state"),
            ("no optimiser", {"format": 1, "model": {}, "state": {"step": 1}, "config": {},
                              "spec": {}}, "it has no 'optimizer' entry")]:
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        torch.save(data, path)
        cases[name] = (path, says)
    return cases


def test_files_that_are_not_checkpoints_are_one_sentence_each(tmp_path):
    for name, (path, says) in _bad_files(tmp_path).items():
        with pytest.raises(ConfigError) as err:
            load_checkpoint(path, RESUMABLE)
        text = str(err.value)
        assert says in text and str(path) in text, (name, text)
        assert "\n" not in text and "\x1b" not in text and "two options" not in text, name


class NotPlain:
    """An object that weights_only loading refuses (any class of its own is)."""


def test_torch_refusal_text_is_not_passed_on(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"format": 1, "model": NotPlain()}, path)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"{path} is not a plain-data checkpoint and was not loaded: it "
                              "holds Python objects besides tensors, numbers, strings, lists "
                              "and dicts, which could run code.")


def test_a_run_with_a_bad_last_pt_is_refused_in_one_sentence(make_cfg, tmp_path):
    cfg = make_cfg(*MOONS)
    run(cfg, tmp_path)
    path = tmp_path / "checkpoints" / "last.pt"
    good = load_checkpoint(path)
    torch.save({"format": 1, "model": {}, "state": {"step": 3}}, path)
    more = make_cfg(*MOONS, "trainer.max_steps=40")
    result = run(more, tmp_path, resume=True)
    assert result.exit_code == 2
    assert result.summary["error"] == (f"{path} is not a complete dltrain checkpoint: it has "
                                       "no 'config' entry.")
    # every entry there, of its kind, but an optimiser state of another optimiser
    save_checkpoint(path, {**good, "optimizer": {"state": {}, "param_groups": []}})
    result = run(more, tmp_path, resume=True)
    assert result.exit_code == 2
    assert result.summary["error"] == ("The checkpoint's optimiser state cannot be restored in "
                                       "this run (ValueError); resume with the run's own optim "
                                       "settings.")


# -- 5. temporaries left by a kill -----------------------------------------------------------

def test_remove_stale_temporaries_takes_only_the_temporaries_of_the_names(tmp_path):
    stale = [tmp_path / ".last.pt.k2j4_9ab.tmp", tmp_path / ".best.pt.00000000.tmp"]
    kept = [tmp_path / n for n in (".last.pt.tmp", ".init.pt.k2j4_9ab.tmp", "last.pt",
                                   "notes.last.pt.k2j4_9ab.tmp", ".last.pt.k2j4_9abc.tmp",
                                   ".last.pt.k2j4_9ab.tmp.bak")]
    for path in stale + kept:
        path.write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path, ("last.pt", "best.pt"))
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_a_resume_removes_the_temporaries_a_kill_left(make_cfg, tmp_path):
    run(make_cfg(*MOONS), tmp_path)
    folder = tmp_path / "checkpoints"
    stale = [folder / ".last.pt.a1b2c3d4.tmp", folder / ".best.pt.zz_9zz99.tmp"]
    others = {folder / "notes.txt": b"mine", folder / ".last.pt.tmp": b"not atomic_write's"}
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    for path, data in others.items():
        path.write_bytes(data)
    result = run(make_cfg(*MOONS, "trainer.max_steps=40"), tmp_path, resume=True)
    assert result.status == "completed"
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == data for p, data in others.items())
    assert load_checkpoint(folder / "last.pt")["state"]["step"] == 40


# -- 6. a full device ------------------------------------------------------------------------

def full_after(saves: int, monkeypatch) -> None:
    """torch.save into a device that fills up after `saves` good checkpoints: the real
    torch.save, whose file's write raises ENOSPC (torch wraps it in a RuntimeError)."""
    real, count = torch.save, [0]

    class FullFile:
        def __init__(self, f) -> None:
            self.f = f

        def write(self, data) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            self.f.flush()

    def save(obj, f, *args, **kwargs):
        count[0] += 1
        real(obj, f if count[0] <= saves else FullFile(f), *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)


def test_torch_s_wrapped_enospc_is_a_no_space_error_and_keeps_the_old_file(tmp_path,
                                                                          monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"state": {"step": 1}})
    full_after(0, monkeypatch)
    with pytest.raises(NoSpaceError) as err:
        save_checkpoint(path, {"state": {"step": 2}})
    monkeypatch.undo()
    assert str(err.value).startswith(f"no space left on device on {path} (")
    assert str(err.value).endswith(" MB free)")
    assert load_checkpoint(path)["state"] == {"step": 1}
    assert os.listdir(tmp_path) == ["last.pt"]


def test_write_json_on_a_full_device_is_a_no_space_error(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(NoSpaceError, match=r"no space left on device on .*summary\.json"):
        atomic_write(tmp_path / "summary.json", full)
    write_json(tmp_path / "ok.json", {"a": 1})  # other errors and writes as they were


def test_a_run_that_fills_the_device_ends_failed_with_one_sentence(make_cfg, tmp_path,
                                                                  monkeypatch, capsys,
                                                                  caplog):
    """trainer=smoke on moons validates at steps 28 (an epoch) and 40 (max_steps=40): the
    second last.pt finds the device full."""
    full_after(2, monkeypatch)  # last.pt and best.pt of step 28
    with caplog.at_level(logging.INFO, "dltrain"):
        result = run(make_cfg(*MOONS, "trainer.max_steps=40"), tmp_path)
    monkeypatch.undo()
    last = tmp_path / "checkpoints" / "last.pt"
    error = result.summary["error"]
    assert result.exit_code == 1 and result.status == "failed"
    assert error.startswith(f"no space left on device on {last} (")
    assert error.endswith(" MB free); the last good checkpoint is step 28")
    assert summary(tmp_path)["status"] == "failed" and summary(tmp_path)["error"] == error
    assert "Traceback" not in capsys.readouterr().err + caplog.text
    assert error in caplog.text
    assert load_checkpoint(last)["state"]["step"] == 28
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]


def test_a_resume_that_fills_the_device_says_so_and_keeps_the_last_good_checkpoint(
        make_cfg, tmp_path, monkeypatch, caplog):
    run(make_cfg(*MOONS), tmp_path)  # last.pt of step 20
    full_after(0, monkeypatch)
    with caplog.at_level(logging.INFO, "dltrain"):
        result = run(make_cfg(*MOONS, "trainer.max_steps=40"), tmp_path, resume=True)
    monkeypatch.undo()
    assert result.exit_code == 1
    assert summary(tmp_path)["status"] == "failed"
    assert summary(tmp_path)["error"].endswith(" MB free); the last good checkpoint is step 20")
    assert "Traceback" not in caplog.text
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]["step"] == 20
