"""Runs to predict with, each trained once in-process (`run(cfg, run_dir)`, trainer=smoke) on
files written here in the formats users hand to dltrain; shared by tests/use/test_predict*.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from PIL import Image

from dltrain.cli import CONFIG_NAME, conf_dir
from dltrain.run import run

COLOURS = ("blue", "green", "red")


def train(run_dir: Path, *overrides: str) -> Path:
    """A smoke run of `overrides` in `run_dir`; it must complete."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        cfg = compose(CONFIG_NAME, overrides=["trainer=smoke", *overrides])
    result = run(cfg, run_dir)
    assert result.status == "completed", result.summary.get("error")
    return run_dir


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def regression_table(n: int, seed: int) -> pd.DataFrame:
    """Two numbers and a text column -> y, with an id and a note the model never reads."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    colour = rng.choice(COLOURS, n)
    y = 1.5 * a - 2.0 * b + np.where(colour == "red", 1.0, 0.0) + 0.3 * rng.standard_normal(n)
    return pd.DataFrame({"id": np.arange(n), "a": a, "colour": colour, "b": b, "y": y,
                         "note": [f"row {i}" for i in range(n)]})


def class_table(n: int, seed: int) -> pd.DataFrame:
    """Two moons named 'upper' and 'lower', and a text column that shifts them."""
    rng = np.random.default_rng(seed)
    t = np.pi * rng.random(n)
    label = rng.integers(0, 2, n)
    x = np.where(label[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    x = x + 0.1 * rng.standard_normal((n, 2))
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "site": rng.choice(["north", "south"], n),
                         "shape": np.where(label == 0, "upper", "lower"),
                         "tag": rng.integers(0, 1000, n)})


def table_runs(root: Path) -> dict[str, Path]:
    """A regression (with a text column) and a classification on CSV tables with their own
    test files."""
    root.mkdir(parents=True, exist_ok=True)
    regression_table(600, 0).to_csv(root / "reg_train.csv", index=False)
    regression_table(200, 1).to_csv(root / "reg_test.csv", index=False)
    class_table(600, 0).to_csv(root / "cls_train.csv", index=False)
    class_table(200, 1).to_parquet(root / "cls_test.parquet", index=False)
    return {
        "regression": train(root / "reg_run", "data=table", f"data.path={root}/reg_train.csv",
                            f"data.test_path={root}/reg_test.csv", "data.target=y",
                            "data.features=[a,b,colour]"),
        "classification": train(root / "cls_run", "data=table",
                                f"data.path={root}/cls_train.csv",
                                f"data.test_path={root}/cls_test.parquet",
                                "data.target=shape", "data.features=[x1,x2,site]"),
    }


def fields(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 6) -> y (n, 2): two regression outputs of an array file."""
    rng = np.random.default_rng(seed)
    x = rng.normal(5.0, 2.0, (n, 6)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5 + 100.0], 1).astype(np.float32)
    return x, y


def arrays_run(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    x, y = fields(500, 0)
    np.savez(root / "train.npz", inputs=x, targets=y)
    tx, ty = fields(150, 1)
    np.savez(root / "test.npz", inputs=tx, targets=ty)
    np.save(root / "test_x.npy", tx)
    with h5py.File(root / "test.h5", "w") as f:
        f["group/inputs"] = tx
    return train(root / "run", "data=arrays", f"data.path={root}/train.npz",
                 f"data.test_path={root}/test.npz", "data.x=inputs", "data.y=targets")


def stripes(kind: str, rng: np.random.Generator, size: int = 12) -> np.ndarray:
    """A grey picture of horizontal or vertical stripes, with noise: (size, size) uint8."""
    phase = rng.integers(0, 2)
    line = ((np.arange(size) + phase) % 4 < 2).astype(np.float64) * 180 + 40
    picture = np.tile(line[:, None], (1, size)) if kind == "horizontal" else \
        np.tile(line[None, :], (size, 1))
    noisy = picture + rng.normal(0, 20, (size, size))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def images_run(root: Path) -> Path:
    """ROOT/train/<class>/*.png and ROOT/test/<class>/*.png of grey stripes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for kind in ("horizontal", "vertical"):
            folder = root / "images" / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(stripes(kind, rng), mode="L").save(folder / f"{i:02d}.png")
    return train(root / "run", "data=images", f"data.root={root}/images", "model.hidden=[32]")


def series_frame(steps: int, start: int) -> pd.DataFrame:
    t = np.arange(start, start + steps)
    return pd.DataFrame({"time": t, "load": 50 + 10 * np.sin(t / 5.0),
                         "temp": 20 + 3 * np.cos(t / 7.0)})


def series_run(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    series_frame(400, 0).to_csv(root / "train.csv", index=False)
    series_frame(80, 400).to_csv(root / "test.csv", index=False)
    return train(root / "run", "data=series", f"data.path={root}/train.csv",
                 f"data.test_path={root}/test.csv", "data.columns=[load,temp]",
                 "data.window=12", "data.horizon=3")


def text_run(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "text.txt").write_text("the cat sat on the mat. " * 400, encoding="utf-8")
    return train(root / "run", "data=text", f"data.path={root}/text.txt", "model=transformer",
                 "model.width=32", "model.depth=1", "data.block_size=16", "data.batch_size=16")
