"""Bad input refused in one sentence before training (issue 21), in-process: seeds beyond 32
bits, models and generated data sets too big for memory (estimated before anything is
allocated, an allocation that fails anyway named), gradient accumulation longer than an
epoch, and the files data is read from (NaN or infinite values, unreadable files, a file
given as a folder and a folder as a file, constant inputs)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dltrain.cli import conf_dir
from dltrain.cli.preflight import preflight
from dltrain.config import RULES, plain
from dltrain.data import SOURCES, build_data, memory
from dltrain.data import checks as data_checks
from dltrain.data.spec import DataSpec
from dltrain.data.vision import IDX_FILES, read_idx
from dltrain.errors import ConfigError
from dltrain.job import build_job, check_accumulate
from dltrain.models import build_model
from dltrain.models.footprint import (
    activation_bytes,
    check_activations,
    check_parameters,
    optimiser_copies,
    parameter_footprint,
)
from dltrain.rules import SEED_MAX
from tests.data.files import fake_mnist, write_idx

GB = 10**9
CPU = torch.device("cpu")
ADAM = {"_target_": "torch.optim.Adam", "lr": 0.001}


@pytest.fixture
def room(monkeypatch):
    """The host's free memory, set: `room(24 * GB)` (no cgroup limit)."""

    def set_free(free: int) -> None:
        monkeypatch.setattr(memory, "host_free", lambda: free)

    return set_free


def model_node(name: str, **keys) -> dict:
    """conf/model/NAME.yaml with `keys` changed."""
    node = yaml.safe_load((Path(conf_dir()) / "model" / f"{name}.yaml").read_text())
    return {**node, **keys}


MNIST_SPEC = DataSpec("mnist", "classification", "image", (1, 28, 28), num_classes=10)


# --------------------------------------------------------------------------------------------
# Seeds: 32 bits


@pytest.mark.parametrize("key", ["trainer.seed", "data.seed", "probe.landscape.seed",
                                 "probe.samples.seed"])
def test_a_seed_is_a_whole_number_of_32_bits(key):
    check = next(rule.check for rule in RULES if rule.key == key)
    assert check(0) is None and check(SEED_MAX) is None
    for bad in (SEED_MAX + 1, 10**23, -1, 1.5, True):
        assert "<= 4294967295" in check(bad)


@pytest.mark.parametrize("override", ["trainer.seed=4294967296", "data.seed=-1",
                                      "trainer.seed=100000000000000000000000"])
def test_preflight_refuses_a_seed_beyond_32_bits(override):
    key, _, value = override.partition("=")
    with pytest.raises(ConfigError, match=rf"^{key}={value} must be a whole number >= 0 and "
                                          r"<= 4294967295"):
        preflight([override], False)


# --------------------------------------------------------------------------------------------
# Memory: what is free, what ran out


def test_sizes_are_said_in_decimal_units():
    assert [memory.size_text(n) for n in (512, 24_300_000_000, 1.2e12, 785e9 * 16)] == [
        "512 bytes", "24.3 GB", "1.2 TB", "12.6 TB"]


def test_free_memory_is_meminfo_or_the_cgroup_limit_whichever_is_less(tmp_path, monkeypatch):
    (tmp_path / "meminfo").write_text("MemTotal: 32000000 kB\nMemAvailable: 20000000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(memory, "CGROUP", tmp_path / "none")
    assert memory.host_free() == 20_000_000 * 1024
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "memory.max").write_text("8000000000\n")
    (tmp_path / "cg" / "memory.current").write_text("3000000000\n")
    monkeypatch.setattr(memory, "CGROUP", tmp_path / "cg")
    assert memory.host_free() == 5_000_000_000
    assert memory.room_on("cpu") == memory.Room(5_000_000_000, "this machine")


def test_on_a_gpu_the_device_and_the_host_are_each_asked_for_their_share(monkeypatch):
    rooms = {"cuda": memory.Room(80 * GB, "GPU cuda:0"), "cpu": memory.Room(10 * GB,
                                                                          "this machine")}
    monkeypatch.setattr(memory, "room_on", lambda device: rooms[torch.device(device).type])
    assert memory.short_of(50 * GB, "cuda:0", host=5 * GB) is None
    assert memory.short_of(50 * GB, "cuda:0", host=20 * GB) == (rooms["cpu"], 20 * GB)
    assert memory.short_of(90 * GB, "cuda:0") == (rooms["cuda"], 90 * GB)
    assert memory.short_of(20 * GB, "cpu", host=1) == (rooms["cpu"], 20 * GB)


@pytest.mark.parametrize(("err", "phrase"), [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 80000000000 bytes. Error code 12"),
     "the machine's memory ran out (it tried to allocate 80.0 GB)"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                            "total capacity of 79.1 GiB"),
     "the GPU's memory ran out (it tried to allocate 2.00 GiB)"),
    (MemoryError(), "the machine's memory ran out"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None),
])
def test_a_failed_allocation_is_said_in_words(err, phrase):
    assert memory.ran_out(err) == phrase


# --------------------------------------------------------------------------------------------
# A generated data set too big for memory


def test_data_n_train_beyond_memory_is_refused_before_anything_is_drawn(room, monkeypatch):
    room(24 * GB)
    cfg = {**plain(yaml.safe_load((Path(conf_dir()) / "data" / "moons.yaml").read_text())),
           "n_train": 10**10}
    drawn = []
    moons = SOURCES["moons"]
    monkeypatch.setitem(SOURCES, "moons", type(moons)(
        lambda n, *a, **k: drawn.append(n) or moons.make(n, *a, **k), moons.task, moons.kind,
        classes=2))
    with pytest.raises(ConfigError) as refused:
        build_data(cfg)
    assert str(refused.value) == (
        "data.n_train=10000000000 (16 bytes a sample of data=moons, and the draw's working "
        "memory) needs about 640 GB, and this machine has 24.0 GB free; use a smaller "
        "data.n_train.")
    assert drawn == [2]  # one look at a sample's size, nothing more


def test_an_allocation_failing_while_data_is_made_is_one_sentence(monkeypatch):
    class Failing:
        def build(self, cfg, device):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                               "allocate 80000000000 bytes. Error code 12 (Cannot allocate "
                               "memory)")

    monkeypatch.setitem(SOURCES, "moons", Failing())
    with pytest.raises(ConfigError, match=r"^data=moons does not fit in memory: the machine's "
                                          r"memory ran out \(it tried to allocate 80\.0 GB\); "
                                          r"use a smaller data\.n_train"):
        build_data({"name": "moons"})


# --------------------------------------------------------------------------------------------
# A model too big for memory


@pytest.mark.parametrize(("name", "keys", "spec", "said"), [
    ("mlp", {"hidden": [1_000_000_000]}, MNIST_SPEC,
     "model=mlp has 795,000,000,010 parameters (the largest layer, hidden.0.linear, holds "
     "785,000,000,000): they need about 12.7 TB with their gradients and Adam's two moments, "
     "and this machine has 24.0 GB free; use a smaller model (model.hidden, model.width, "
     "model.depth)."),
    ("cnn", {"channels": [100_000, 100_000]}, MNIST_SPEC,
     "model=cnn has 90,050,100,010 parameters (the largest layer, features.1.conv, holds "
     "90,000,100,000): they need about 1.4 TB"),
    ("resnet", {"width": 100_000}, DataSpec("moons", "classification", "vector", (2,),
                                            num_classes=2),
     "model=resnet has 80,002,200,002 parameters: they need about 1.3 TB with their gradients "
     "and Adam's two moments, and this machine has 24.0 GB free; use a smaller model "
     "(model.channels, model.width, model.depth, model.blocks)."),
    ("transformer", {"width": 100_000}, MNIST_SPEC,
     "model=transformer has 240,010,400,010 parameters: they need about 3.8 TB"),
])
def test_a_model_beyond_memory_is_refused_from_its_config_alone(room, name, keys, spec, said):
    room(24 * GB)
    with pytest.raises(ConfigError) as refused:
        check_parameters(model_node(name, **keys), spec, ADAM, CPU)
    assert str(refused.value).startswith(said)


def test_parameters_are_counted_exactly_without_allocating_or_drawing(room):
    room(24 * GB)
    node = model_node("mlp", hidden=[64, 32])
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    found = parameter_footprint(node, MNIST_SPEC, ADAM)
    assert torch.equal(torch.rand(3), before)  # the global random state is untouched
    real = build_model(node, {"name": "default"}, MNIST_SPEC)
    assert found.params == sum(p.numel() for p in real.parameters()) == 784 * 64 + 64 + 64 * 32 \
        + 32 + 32 * 10 + 10
    assert found.weights == found.params * 4 * 4  # weights, gradients, two moments


@pytest.mark.parametrize(("optim", "copies"), [
    ({"_target_": "torch.optim.Adam"}, 3), ({"_target_": "torch.optim.AdamW"}, 3),
    ({"_target_": "torch.optim.SGD", "momentum": 0.0}, 1),
    ({"_target_": "torch.optim.SGD", "momentum": 0.9}, 2),
    ({"_target_": "torch.optim.RMSprop", "alpha": 0.99}, 2),
    ({"_target_": "torch.optim.LBFGS", "history_size": 20}, 43), (None, 0)])
def test_what_each_optimiser_keeps_besides_the_weights(optim, copies):
    assert optimiser_copies(optim)[0] == copies


def test_a_batch_whose_activations_do_not_fit_is_refused_naming_the_batch_size(room):
    node = model_node("cnn", channels=[512])
    model = build_model(node, {"name": "default"}, MNIST_SPEC)
    weights = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(1)
    before = torch.rand(3)
    torch.manual_seed(1)
    per_sample = activation_bytes(model, MNIST_SPEC, 1)
    assert torch.equal(torch.rand(3), before) and model.training
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    # conv, relu: 512 x 28 x 28 each; pool: 512 x 14 x 14; head: 10 (float32); the flatten
    # and the identities are views of what they are given
    assert per_sample == 4 * (2 * 512 * 784 + 512 * 196 + 10)
    found = parameter_footprint(node, MNIST_SPEC, ADAM)
    room(2 * GB)
    check_activations(model, node, MNIST_SPEC, found, 128, CPU)  # 1 GB: fits
    with pytest.raises(ConfigError) as refused:
        check_activations(model, node, MNIST_SPEC, found, 10_000, CPU)
    assert str(refused.value) == (
        "model=cnn needs about 36.1 GB more to train on batches of 10000: 12.1 MB for the "
        "gradients and Adam's two moments of its 1,008,650 parameters, and about 36.1 GB for "
        "one batch's activations; this machine has 2.0 GB free: use a smaller "
        "data.batch_size or a smaller model (model.channels, model.hidden).")


def _specs() -> dict[str, DataSpec]:
    return {
        "image": MNIST_SPEC,
        "colour": DataSpec("cifar10", "classification", "image", (3, 32, 32), num_classes=10),
        "vector": DataSpec("moons", "classification", "vector", (2,), num_classes=2),
        "signal": DataSpec("series", "regression", "signal", (1, 64), num_outputs=4),
        "tokens": DataSpec("tiny_shakespeare", "language_model", "tokens", (256,),
                           vocab_size=65),
        "generation": DataSpec("glyphs", "generation", "image", (1, 28, 28), num_classes=10),
        "field": DataSpec("darcy", "regression", "image", (1, 32, 32),
                          target_shape=(1, 32, 32)),
    }


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(conf_dir()) / "model")
                                        .glob("*.yaml")))
def test_every_built_in_model_at_its_defaults_fits_a_small_machine(room, name):
    """The estimate refuses no built-in model at its defaults on any kind of data it takes,
    at a batch of 256, on a machine with 2 GB free."""
    room(2 * GB)
    taken = 0
    for spec in _specs().values():
        node = model_node(name)
        try:
            found = check_parameters(node, spec, ADAM, CPU)
        except ConfigError as err:
            assert "free" not in str(err)  # the family refuses this kind of data
            continue
        model = build_model(node, {"name": "default"}, spec)
        check_activations(model, node, spec, found, 256, CPU)
        taken += 1
    assert taken


def test_build_job_refuses_a_model_beyond_memory_before_building_it(make_cfg, room,
                                                                    monkeypatch):
    room(24 * GB)
    built = []
    monkeypatch.setattr("dltrain.job.build_model", lambda *a: built.append(a))
    cfg = make_cfg("data=moons", "data.n_train=200", "model.hidden=[1000000000]")
    with pytest.raises(ConfigError, match=r"^model=mlp has 5,000,000,002 parameters"):
        build_job(cfg, CPU)
    assert built == []


def test_an_allocation_failing_while_the_model_is_built_is_one_sentence(make_cfg,
                                                                         monkeypatch):
    def fail(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")

    monkeypatch.setattr("dltrain.job.build_model", fail)
    cfg = make_cfg("data=moons", "data.n_train=200")
    with pytest.raises(ConfigError) as refused:
        build_job(cfg, CPU)
    assert str(refused.value) == ("Building model=mlp: the GPU's memory ran out (it tried to "
                                  "allocate 2.00 GiB); use a smaller model.")


# --------------------------------------------------------------------------------------------
# Gradient accumulation longer than an epoch


def test_accumulation_longer_than_an_epoch_is_refused_with_both_numbers():
    check_accumulate(7, 7, 64, "moons")  # one step an epoch: fine
    with pytest.raises(ConfigError) as refused:
        check_accumulate(8, 7, 64, "moons")
    assert str(refused.value) == (
        "trainer.accumulate=8 takes 8 batches for one optimiser step, but an epoch of "
        "data=moons has only 7 batches of 64; use trainer.accumulate=7 or less, or a smaller "
        "data.batch_size.")


def test_build_job_refuses_accumulation_longer_than_an_epoch(make_cfg):
    # 200 moons, 160 after validation: 2 batches of 64 (the last, incomplete one dropped)
    cfg = make_cfg("data=moons", "data.n_train=200", "trainer.accumulate=3")
    with pytest.raises(ConfigError, match=r"^trainer\.accumulate=3 takes 3 batches .* only 2 "
                                          r"batches of 64;"):
        build_job(cfg, CPU)
    build_job(make_cfg("data=moons", "data.n_train=200", "trainer.accumulate=2"), CPU)


# --------------------------------------------------------------------------------------------
# Files: NaN and infinities, unreadable files, files and folders confused, constant inputs


def _nan_images(n: int = 50) -> np.ndarray:
    x = np.random.default_rng(0).random((n, 28, 28)).astype(">f4")
    x[3, 4, 5], x[7, 0, 0], x[7, 1, 1] = np.nan, np.inf, -np.inf
    return x


def test_a_float_idx_file_with_nan_or_infinite_pixels_is_named(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", _nan_images())
    for mmap in (False, True):
        with pytest.raises(ConfigError) as refused:
            read_idx(path, 3, mmap=mmap)
        assert str(refused.value) == (
            f"{path} holds 3 NaN or infinite pixels (of 39,200; the first in sample 3): a "
            "model cannot learn from them; fix or remove those samples.")


def test_data_mnist_with_nan_pixels_is_refused_naming_the_file(tmp_path):
    fake_mnist(tmp_path, n_train=50, n_test=20, gz=False)
    write_idx(tmp_path / IDX_FILES[0], _nan_images())
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte holds 3 NaN or infinite "
                                          r"pixels"):
        build_data({"name": "mnist", "root": str(tmp_path), "download": False,
                    "mirror": None, "in_memory": True, "n_train": None, "seed": 0,
                    "val_fraction": 0.1, "workers": 0, "augment": None})


def test_constant_images_are_warned_about(tmp_path, caplog):
    fake_mnist(tmp_path, n_train=50, n_test=20, gz=False)
    write_idx(tmp_path / IDX_FILES[0], np.full((50, 28, 28), 7, dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="dltrain"):
        build_data({"name": "mnist", "root": str(tmp_path), "download": False,
                    "mirror": None, "in_memory": True, "n_train": None, "seed": 0,
                    "val_fraction": 0.1, "workers": 0, "augment": None})
    assert "data=mnist (45 training images): the training inputs are constant (zero " \
           "variance across the whole training set)" in caplog.text


def test_varied_inputs_are_not_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="dltrain"):
        assert not data_checks.constant(torch.tensor([[0.0, 1e-6, 0.3]]), "x")
        assert data_checks.constant(torch.tensor([[1e-6, 1e-6]]), "x")
    assert caplog.text.count("constant") == 1


def test_data_root_that_is_a_file_is_said_to_be_a_file(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for name in ("mnist", "cifar10"):
        with pytest.raises(ConfigError) as refused:
            build_data({"name": name, "root": str(passwd), "download": False, "mirror": None,
                        "in_memory": True, "n_train": None, "seed": 0, "val_fraction": 0.1,
                        "workers": 0, "augment": None})
        assert str(refused.value).startswith(f"data.root={passwd} is a file, not a folder; "
                                             f"data={name} reads its files from a folder")
        assert "/raw" not in str(refused.value).split(";")[0]


def _table_cfg(path: Path, **keys) -> dict:
    node = yaml.safe_load((Path(conf_dir()) / "data" / "table.yaml").read_text())
    return {**node, "path": str(path), "target": "y", **keys}


def _source_cfg(name: str, path: Path) -> dict:
    node = yaml.safe_load((Path(conf_dir()) / "data" / f"{name}.yaml").read_text())
    return {**node, "path": str(path), **({"target": "y"} if name == "table" else {})}


@pytest.mark.parametrize("name", ["table", "arrays", "series", "text"])
def test_a_directory_given_as_data_path_is_a_directory_not_a_file(tmp_path, name):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(ConfigError) as refused:
        build_data(_source_cfg(name, folder))
    assert str(refused.value) == (f"data.path={folder} is a directory, not a file; name a "
                                  "file in it.")


def _deny(monkeypatch, path: Path) -> None:
    """Opening `path` for reading fails as it does for a file without read permission (the
    tests may run as root, whom no permission stops)."""
    real = open

    def guarded(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(data_checks, "open", guarded, raising=False)


@pytest.mark.parametrize("name", ["table", "arrays", "series", "text"])
def test_a_file_that_cannot_be_read_is_one_sentence(tmp_path, monkeypatch, name):
    path = tmp_path / {"table": "t.csv", "arrays": "x.npz", "series": "s.csv",
                       "text": "t.txt"}[name]
    path.write_text("a,y\n1,2\n")
    _deny(monkeypatch, path)
    with pytest.raises(ConfigError) as refused:
        build_data(_source_cfg(name, path))
    assert str(refused.value) == f"data.path={path} cannot be read: permission denied ({path})."


def test_a_device_given_as_data_path_is_not_a_regular_file():
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null here")
    with pytest.raises(ConfigError, match=r"^data\.path=/dev/null\.csv is not a regular file"):
        data_checks.input_file(Path("/dev/null"), "data.path", "/dev/null.csv")


def test_a_data_root_that_cannot_be_listed_is_one_sentence(tmp_path, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data_checks.os, "scandir", denied)
    with pytest.raises(ConfigError) as refused:
        build_data({"name": "mnist", "root": str(tmp_path), "download": False, "mirror": None,
                    "in_memory": True, "n_train": None, "seed": 0, "val_fraction": 0.1,
                    "workers": 0, "augment": None})
    assert str(refused.value) == (f"data.root={tmp_path} cannot be read: permission denied "
                                  f"({tmp_path}).")


def test_an_unreadable_idx_file_is_one_sentence(tmp_path, monkeypatch):
    fake_mnist(tmp_path, n_train=50, n_test=20, gz=False)
    path = tmp_path / IDX_FILES[1]
    _deny(monkeypatch, path)
    with pytest.raises(ConfigError, match=rf"^{path} cannot be read: permission denied"):
        read_idx(path, 1)


def test_a_file_without_read_permission_is_refused_for_real(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "t.csv"
    path.write_text("a,y\n1,2\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot be read: permission denied"):
        build_data(_table_cfg(path))


def test_infinite_values_in_a_table_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "t.csv"
    frame = pd.DataFrame({"a": np.linspace(0, 1, 40), "b": np.linspace(1, 2, 40),
                          "y": np.arange(40) % 2})
    frame.loc[5, "a"] = math.inf
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=rf"^{path} \((training|validation|test) split\) "
                                          r"holds 1 NaN or infinite inputs"):
        build_data(_table_cfg(path))


def test_constant_table_inputs_are_warned_about_and_still_train(tmp_path, caplog):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [3.0] * 40, "y": np.arange(40) % 2}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="dltrain"):
        data = build_data(_table_cfg(path))
    assert len(data.train) > 0
    assert f"{path}: the training inputs are constant" in caplog.text


def test_nan_pixels_of_a_floating_point_image_are_named(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        for i in range(10):
            pixels = np.full((8, 8), float(i), dtype=np.float32)
            if (cls, i) == ("b", 1):
                pixels[2, 2] = np.nan
            folder = tmp_path / cls
            folder.mkdir(exist_ok=True)
            Image.fromarray(pixels, mode="F").save(folder / f"{i}.tif")
    node = yaml.safe_load((Path(conf_dir()) / "data" / "images.yaml").read_text())
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'b' / '1.tif'} holds 1 NaN or "
                                          r"infinite pixels"):
        build_data({**node, "root": str(tmp_path)})


def test_memory_running_out_while_training_is_one_sentence_without_traceback(
        make_cfg, tmp_path, monkeypatch, caplog):
    """An allocation that fails mid-training (the estimate is rough; other processes take
    memory too): status failed, what ran out in one sentence, exit 1, no traceback logged."""
    import dltrain.run
    from dltrain.run import run

    def fit(job, state, *args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                           "not enough memory: you tried to allocate 3435973836800 bytes.")

    monkeypatch.setattr(dltrain.run, "fit", fit)
    cfg = make_cfg("data=moons", "data.n_train=200", "trainer=smoke", "logger=[]")
    with caplog.at_level(logging.ERROR, logger="dltrain"):
        result = run(cfg, tmp_path / "run")
    assert result.exit_code == 1 and result.status == "failed"
    assert result.summary["error"] == ("Training stopped: the machine's memory ran out (it "
                                       "tried to allocate 3.4 TB); use a smaller "
                                       "data.batch_size or model.")
    assert "Traceback" not in caplog.text and "Training stopped" in caplog.text
