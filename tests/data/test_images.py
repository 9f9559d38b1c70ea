"""data=images: a folder of class folders, written here as real image files, read back.

Pictures of three visually separable kinds (bright noise, dark noise, horizontal stripes) in
mixed sizes, so the class is never told by the size. Unit tests build the Data directly; the
e2e tests run the real `dltrain` command.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dltrain.config import validate
from dltrain.data import build_data
from dltrain.data import images as images_module
from dltrain.data.images import find_layout, split_layout
from dltrain.errors import ConfigError
from dltrain.targets import plain
from dltrain.training.checkpoint import load_checkpoint
from tests.conftest import run_cli

KINDS = ("bright", "dark", "striped")
# (H, W) cycled per image whatever its class: (20, 20) is the most common size
SIZES = ((20, 20), (24, 24), (20, 20), (16, 28))


def picture(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A grey (H, W) uint8 picture of a kind."""
    h, w = size
    if kind == "bright":
        return rng.integers(170, 256, (h, w)).astype(np.uint8)
    if kind == "dark":
        return rng.integers(0, 86, (h, w)).astype(np.uint8)
    a = rng.integers(0, 40, (h, w))
    a[::2] += 200  # stripes: every other row bright
    return a.astype(np.uint8)


def write_folder(root: Path, n: int = 12, kinds: tuple[str, ...] = KINDS, seed: int = 0,
                 mode: str = "L", suffix: str = ".png") -> Path:
    """ROOT/<kind>/<i>.png for each kind: n pictures of mixed sizes."""
    rng = np.random.default_rng(seed)
    for kind in kinds:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.fromarray(picture(kind, rng, SIZES[i % len(SIZES)]))
            img.convert(mode).save(root / kind / f"{i:03d}{suffix}")
    return root


def data_cfg(make_cfg, root: Path, *overrides: str) -> dict:
    cfg = make_cfg("data=images", f"data.root={root}", *overrides)
    validate(cfg)
    return plain(cfg)["data"]


def build(make_cfg, root: Path, *overrides: str):
    return build_data(data_cfg(make_cfg, root, *overrides), "cpu")


def raw(split, norm) -> torch.Tensor:
    """A split's inputs back in [0, 1] pixel units."""
    shape = (1, -1, 1, 1)
    return (split.x * torch.tensor(norm["std"]).view(shape)
            + torch.tensor(norm["mean"]).view(shape))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


# ---------------------------------------------------------------------------------------------
# The folder


def test_class_folders_give_sorted_class_names_and_their_files(tmp_path):
    root = write_folder(tmp_path / "imgs", n=3, kinds=("zebra", "ant"))
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "ant" / ".hidden.png").write_bytes(b"junk")
    (root / ".ipynb_checkpoints").mkdir()
    (root / "zebra" / "more").mkdir()
    Image.new("L", (5, 5)).save(root / "zebra" / "more" / "deep.PNG")  # nested, upper case
    layout = find_layout(str(root))
    assert layout.classes == ("ant", "zebra") and not layout.split_folders
    names = [(p.parent.name, p.name) for p in layout.pool.paths]
    assert names == [("ant", "000.png"), ("ant", "001.png"), ("ant", "002.png"),
                     ("zebra", "000.png"), ("zebra", "001.png"), ("zebra", "002.png"),
                     ("more", "deep.PNG")]
    assert layout.pool.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert layout.val is None and layout.test is None


def test_the_split_is_drawn_by_seed_disjoint_and_n_train_keeps_that_many(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=20)
    layout = find_layout(str(root))
    cfg = data_cfg(make_cfg, root, "data.val_fraction=0.25", "data.test_fraction=0.2")
    train, val, test = split_layout(layout, cfg)
    assert (len(train.paths), len(val.paths), len(test.paths)) == (36, 12, 12)
    assert len(set(train.paths) | set(val.paths) | set(test.paths)) == 60
    again = split_layout(layout, cfg)
    assert again[1].paths == val.paths and again[2].paths == test.paths
    other = split_layout(layout, {**cfg, "seed": 1})
    assert other[1].paths != val.paths
    small = split_layout(layout, {**cfg, "n_train": 10})
    assert len(small[0].paths) == 10 and set(small[0].paths) <= set(train.paths)
    assert small[1].paths == val.paths and small[2].paths == test.paths


def test_n_train_decodes_only_the_images_it_keeps(make_cfg, tmp_path, monkeypatch):
    root = write_folder(tmp_path / "imgs", n=20)  # 60 images: 12 test, 5 val, 10 train kept
    decoded = []
    real = images_module.decode
    monkeypatch.setattr(images_module, "decode",
                        lambda path, pixels: decoded.append(path) or real(path, pixels))
    data = build(make_cfg, root, "data.n_train=10")
    assert (len(data.train), len(data.val), len(data.test)) == (10, 5, 12)
    assert len(decoded) == 27


def test_train_val_test_folders_are_used_as_they_are(make_cfg, tmp_path):
    root = tmp_path / "imgs"
    write_folder(root / "train", n=8, seed=0)
    write_folder(root / "val", n=2, kinds=("bright", "dark"), seed=1)  # a class may be absent
    write_folder(root / "test", n=3, seed=2)
    layout = find_layout(str(root))
    assert layout.split_folders and layout.classes == KINDS
    assert layout.val is not None and layout.val.labels.tolist() == [0, 0, 1, 1]
    data = build(make_cfg, root)
    assert (len(data.train), len(data.val), len(data.test)) == (24, 4, 9)
    assert data.test.y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.facts["why"].startswith("classification: 37 images in 3 train/val/test folders")


def test_a_missing_test_folder_is_carved_from_train_by_test_fraction(make_cfg, tmp_path):
    root = tmp_path / "imgs"
    write_folder(root / "train", n=10)
    write_folder(root / "val", n=2)
    data = build(make_cfg, root, "data.test_fraction=0.2")
    assert (len(data.train), len(data.val), len(data.test)) == (24, 6, 6)


# ---------------------------------------------------------------------------------------------
# Pixels: size, channels, modes


def test_images_are_resized_to_the_most_common_size_and_normalised(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=12)
    data = build(make_cfg, root)
    assert data.spec.input_shape == (1, 20, 20) and data.spec.kind == "image"
    assert data.spec.class_names == KINDS and data.spec.num_classes == 3
    assert data.train.x.dtype == torch.float32
    assert abs(float(data.train.x.mean())) < 1e-5 and float(data.train.x.std()) == \
        pytest.approx(1.0, abs=1e-3)
    assert data.facts["image_size"] == [20, 20] and data.facts["channels"] == 1
    # the pictures keep what tells them apart: bright > striped > dark on average
    pixels = raw(data.test, data.norm)
    means = {KINDS[c]: float(pixels[data.test.y == c].mean()) for c in range(3)}
    assert means["bright"] > 0.6 > means["striped"] > 0.35 > means["dark"]


def test_pixels_are_the_files_own_values(make_cfg, tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(3)
    arrays = {}
    for kind in ("a", "b"):
        (root / kind).mkdir(parents=True)
        for i in range(4):
            arrays[(kind, i)] = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
            Image.fromarray(arrays[(kind, i)]).save(root / kind / f"{i}.png")
    data = build(make_cfg, root, "data.val_fraction=0.25", "data.test_fraction=0.25")
    assert data.spec.input_shape == (3, 6, 5)
    got = torch.cat([raw(s, data.norm) for s in (data.train, data.val, data.test)])
    want = {tuple(np.round(a.transpose(2, 0, 1).astype(np.float32).ravel() / 255, 5))
            for a in arrays.values()}
    assert {tuple(np.round(x.numpy().ravel(), 5)) for x in got} == want


@pytest.mark.parametrize(("overrides", "shape"), [
    (("data.size=12",), (1, 12, 12)),
    (("data.size=[10,14]",), (1, 10, 14)),
    (("data.channels=3",), (3, 20, 20)),
    (("data.channels=3", "data.size=8"), (3, 8, 8)),
])
def test_size_and_channels_override_what_the_files_say(make_cfg, tmp_path, overrides, shape):
    data = build(make_cfg, write_folder(tmp_path / "imgs", n=4), *overrides)
    assert data.spec.input_shape == shape and tuple(data.train.x.shape[1:]) == shape
    if shape[0] == 3:  # grey replicated into three equal channels
        assert torch.equal(data.train.x[:, 0] * data.norm["std"][0] + data.norm["mean"][0],
                           data.train.x[:, 2] * data.norm["std"][2] + data.norm["mean"][2])


def test_grey_and_colour_files_mix_into_rgb_and_odd_modes_are_converted(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=4)
    Image.new("RGB", (20, 20), (250, 10, 10)).save(root / "bright" / "red.png")
    Image.new("RGBA", (20, 20), (10, 10, 250, 128)).save(root / "dark" / "blue.png")
    Image.new("L", (20, 20), 200).convert("P").save(root / "striped" / "palette.gif")
    Image.new("1", (20, 20), 1).save(root / "striped" / "bilevel.bmp")
    Image.new("RGB", (20, 20), (0, 200, 0)).save(root / "dark" / "green.jpg")
    data = build(make_cfg, root, "data.test_fraction=0.25")
    assert data.spec.input_shape == (3, 20, 20)
    assert data.facts["modes"] == ["1", "L", "P", "RGB", "RGBA"]
    grey = build(make_cfg, root, "data.channels=1", "data.test_fraction=0.25")
    assert grey.spec.input_shape == (1, 20, 20)


def test_a_grey_palette_stays_grey(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=4, suffix=".gif", mode="P")
    assert build(make_cfg, root).spec.input_shape == (1, 20, 20)


def test_16_bit_images_keep_their_values(make_cfg, tmp_path):
    root = tmp_path / "imgs"
    values = {}
    for c, kind in enumerate(("low", "high")):
        (root / kind).mkdir(parents=True)
        for i in range(5):
            a = np.full((4, 4), 1000 + 20000 * c + 7 * i, dtype=np.uint16)
            values[(kind, i)] = a
            Image.fromarray(a).save(root / kind / f"{i}.png")
    data = build(make_cfg, root, "data.val_fraction=0.2", "data.test_fraction=0.2")
    assert data.facts["pixel_scale"] == 1.0 and data.facts["modes"] == ["I;16"]
    got = {round(float(v)) for s in (data.train, data.val, data.test)
           for v in raw(s, data.norm).flatten()}
    assert got == {int(a[0, 0]) for a in values.values()}


# ---------------------------------------------------------------------------------------------
# reg=[augment]


def test_augment_does_not_flip_a_folder_of_unknown_content_unless_asked(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=4)
    auto = build(make_cfg, root, "reg=[augment]")
    assert auto.augment is not None and auto.augment.flip is False and auto.augment.crop == 2
    assert auto.augment.fill == pytest.approx((-auto.norm["mean"][0] / auto.norm["std"][0],))
    asked = build(make_cfg, root, "reg=[augment]", "data.augment.flip=true")
    assert asked.augment.flip is True
    gen = torch.Generator().manual_seed(0)
    out = asked.augment(asked.train.x[:8], gen)
    assert out.shape == asked.train.x[:8].shape and not torch.equal(out, asked.train.x[:8])


# ---------------------------------------------------------------------------------------------
# Bad folders and bad settings: one sentence each


def _bad(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A bad folder and (a regex of) what its refusal says."""
    root = tmp_path / "imgs"
    if case == "missing":
        return root, r"data.root=\S*imgs does not exist"
    if case == "file":
        root.write_text("x")
        return root, r"data.root=\S*imgs is a file"
    if case == "no_classes":
        root.mkdir()
        Image.new("L", (4, 4)).save(root / "loose.png")
        return root, r"holds no class folders; put each class's images in a folder"
    if case == "no_images":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        (root / "b" / "readme.txt").write_text("x")
        return root, r"holds no images \(\.png, .*\) in its class folders a, b\."
    if case == "empty_class":
        write_folder(root, n=3, kinds=("a", "b"))
        (root / "c").mkdir()
        return root, r"Class folder \S*imgs/c holds no images"
    if case == "unreadable":
        write_folder(root, n=3)
        (root / "dark" / "broken.png").write_bytes(b"this is not a png")
        return root, r"\S*imgs/dark/broken\.png is not a readable image"
    if case == "truncated":
        write_folder(root, n=3)
        whole = (root / "dark" / "001.png").read_bytes()
        (root / "dark" / "001.png").write_bytes(whole[:len(whole) // 2])
        return root, r"\S*imgs/dark/001\.png is not a readable image"
    if case == "single":
        write_folder(root, n=3, kinds=("bright", "dark"))
        write_folder(root, n=1, kinds=("striped",))
        return root, r"Class 'striped' has a single image \(\S*striped/000\.png\)"
    if case == "unknown_val_class":
        write_folder(root / "train", n=3)
        write_folder(root / "val", n=2, kinds=("brigth",))
        return root, (r"\S*imgs/val holds class folder brigth that \S*imgs/train does not "
                      r"have \(its classes: bright, dark, striped\); did you mean bright\?")
    if case == "val_without_train":
        write_folder(root / "val", n=3)
        write_folder(root / "test", n=3)
        return root, r"holds val/ and test/ but no train/: split folders need ROOT/train/<class>/"
    if case == "stray_beside_train":
        write_folder(root / "train", n=3)
        write_folder(root / "extra", n=3)
        return root, r"holds train/ and also extra/: beside train/, only val/ and test/"
    if case == "mixed_depth":
        write_folder(root, n=3)
        Image.fromarray(np.full((4, 4), 3000, np.uint16)).save(root / "dark" / "deep.png")
        return root, (r"mixes 8-bit images \(\S*, mode L\) with 16-bit or floating-point ones "
                      r"\(\S*deep\.png, mode I;16\), which share no scale")
    raise AssertionError(case)


BAD = ("missing", "file", "no_classes", "no_images", "empty_class", "unreadable", "truncated",
       "single", "unknown_val_class", "val_without_train", "stray_beside_train", "mixed_depth")


@pytest.mark.parametrize("case", BAD)
def test_a_bad_folder_is_one_sentence(make_cfg, tmp_path, case):
    root, message = _bad(tmp_path, case)
    with pytest.raises(ConfigError, match=message):
        build(make_cfg, root)


@pytest.mark.parametrize(("override", "message"), [
    ("data.size=0", r"data.size=0 must be null \(the most common size\), a whole number"),
    ("data.size=[1,2,3]", r"data.size=\[1, 2, 3\] must be null"),
    ("data.channels=2", r"data.channels=2 must be null \(decided from the files\), 1 \(grey\) "
                        r"or 3 \(RGB\)"),
])
def test_bad_size_and_channels_settings_are_refused(make_cfg, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        data_cfg(make_cfg, tmp_path, override)


def test_n_train_beyond_the_training_images_is_refused(make_cfg, tmp_path):
    root = write_folder(tmp_path / "imgs", n=4)
    with pytest.raises(ConfigError, match=r"data.n_train=50 is more than the 9 training"):
        build(make_cfg, root, "data.n_train=50")


# ---------------------------------------------------------------------------------------------
# The real command


@pytest.mark.e2e
def test_dltrain_learns_a_folder_of_pngs(tmp_path):
    root = write_folder(tmp_path / "imgs", n=40)  # 120 images; 24 tested
    before = snapshot(root)
    run_dir = tmp_path / "run"
    proc = run_cli("data=images", f"data.root={root}", "trainer=smoke", "model=cnn",
                   "data.batch_size=16", "trainer.max_epochs=4", "logger=none",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["task"] == "classification"
    assert summary["test"]["accuracy"] > 0.95
    spec = load_checkpoint(run_dir / "checkpoints" / "best.pt")["spec"]
    assert spec["class_names"] == list(KINDS) and spec["input_shape"] == [1, 20, 20]
    out = proc.stdout + proc.stderr
    assert "classification: 120 images in 3 class folders" in out
    assert "86/10/24 train/val/test" in out  # test 20% of 120, val 10% of the 96 left
    assert snapshot(root) == before  # nothing written into the data folder


@pytest.mark.e2e
def test_dltrain_on_split_folders_with_size_channels_and_augment(tmp_path):
    root = tmp_path / "imgs"
    write_folder(root / "train", n=16, seed=0)
    write_folder(root / "val", n=3, seed=1)
    write_folder(root / "test", n=4, seed=2)
    run_dir = tmp_path / "run"
    proc = run_cli("data=images", f"data.root={root}", "trainer=smoke", "model=cnn",
                   "data.size=16", "data.channels=3", "reg=[augment]", "logger=none",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "input (3, 16, 16), 3 classes, 48/9/12 train/val/test" in proc.stdout + proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] > 0
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["missing", "no_classes", "no_images", "unreadable", "single",
                                  "unknown_val_class", "mixed_depth"])
def test_a_bad_folder_exits_2_with_one_sentence(tmp_path, case):
    root, message = _bad(tmp_path, case)
    proc = run_cli("data=images", f"data.root={root}", "trainer=smoke", "model=cnn",
                   "logger=none", cwd=tmp_path)
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
