"""owned.py: the splits, classes, target and input standardisation of the user's own samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.data.owned import FEW_CLASSES, Samples, assemble, infer_task
from dltrain.data.spec import TargetScale
from dltrain.errors import ConfigError


def config(**keys):
    base = {"name": "mine", "seed": 0, "n_train": None, "val_fraction": 0.1,
            "test_fraction": 0.2, "augment": None}
    return {**base, **keys}


def numbered(n: int, features: int = 3) -> Samples:
    """Row i holds i in its first feature and as its target: which rows went where is readable."""
    x = np.zeros((n, features))
    x[:, 0] = np.arange(n)
    return Samples(x, np.arange(n, dtype=np.float64), "rows.csv")


def rows(data, split) -> np.ndarray:
    """The row numbers of a split, read back through the input normalisation."""
    x = getattr(data, split).x[:, 0]
    return np.rint((x * data.norm["std"][0] + data.norm["mean"][0]).numpy()).astype(int)


# --- infer_task --------------------------------------------------------------------------------

@pytest.mark.parametrize(("y", "task", "phrase"), [
    (np.array(["a", "b", "c", "a"], dtype=object), "classification", "3 distinct strings"),
    (np.array([True, False, True]), "classification", "booleans"),
    (np.array([0, 1, 2, 1, 0]), "classification", "integers with 3 distinct values"),
    (np.arange(FEW_CLASSES + 1), "regression", f"{FEW_CLASSES + 1} distinct values"),
    (np.array([0.5, 1.25, 2.0]), "regression", "floats"),
    (np.zeros((4, 2)), "regression", "2 numbers a sample"),
])
def test_infer_task_auto(y, task, phrase):
    got, why = infer_task(y, "auto", "column 'y'")
    assert got == task
    assert why.startswith(f"{task}: column 'y' holds") and phrase in why


def test_infer_task_override_and_refusals():
    assert infer_task(np.arange(100), "classification", "column 'y'")[0] == "classification"
    assert infer_task(np.array([0, 1, 0]), "regression", "column 'y'")[0] == "regression"
    with pytest.raises(ConfigError, match=r"data\.task=regression, but column 'y' holds text"):
        infer_task(np.array(["a", "b"], dtype=object), "regression", "column 'y'")
    with pytest.raises(ConfigError, match="a class is one label"):
        infer_task(np.zeros((3, 2)), "classification", "columns 'a', 'b'")


# --- splits ------------------------------------------------------------------------------------

def test_seeded_split_is_a_partition_fixed_by_the_seed():
    data = assemble(config(), "cpu", numbered(100), kind="vector", task="regression", why="r")
    parts = [rows(data, s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [72, 8, 20]  # test 20% of 100, val 10% of the other 80
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert parts[2].tolist() != list(range(80, 100))  # drawn, not the file's tail
    again = assemble(config(), "cpu", numbered(100), kind="vector", task="regression", why="r")
    assert rows(again, "test").tolist() == parts[2].tolist()
    other = assemble(config(seed=1), "cpu", numbered(100), kind="vector", task="regression",
                     why="r")
    assert rows(other, "test").tolist() != parts[2].tolist()


def test_chronological_split_keeps_order():
    data = assemble(config(), "cpu", numbered(100), kind="vector", task="regression", why="r",
                    chronological=True)
    assert rows(data, "train").tolist() == list(range(72))
    assert rows(data, "val").tolist() == list(range(72, 80))
    assert rows(data, "test").tolist() == list(range(80, 100))


def test_given_val_and_test_are_used_as_they_are():
    val = Samples(np.full((5, 3), 7.0), np.full(5, 1.0), "val.csv")
    test = Samples(np.full((6, 3), 9.0), np.full(6, 2.0), "test.csv")
    data = assemble(config(), "cpu", numbered(50), kind="vector", task="regression", why="r",
                    val=val, test=test)
    assert (len(data.train), len(data.val), len(data.test)) == (50, 5, 6)
    restore = data.target_scale.restore
    assert torch.allclose(restore(data.test.y), torch.full((6, 1), 2.0), atol=1e-5)
    assert torch.allclose(restore(data.val.y), torch.full((5, 1), 1.0), atol=1e-5)


def test_given_test_only_carves_validation_from_the_pool():
    test = Samples(np.ones((6, 3)), np.ones(6), "test.csv")
    data = assemble(config(), "cpu", numbered(50), kind="vector", task="regression", why="r",
                    test=test)
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 6)


def test_n_train_subsamples_the_training_split():
    full = assemble(config(), "cpu", numbered(100), kind="vector", task="regression", why="r")
    some = assemble(config(n_train=30), "cpu", numbered(100), kind="vector", task="regression",
                    why="r")
    assert len(some.train) == 30
    assert set(rows(some, "train")) < set(rows(full, "train"))
    assert rows(some, "test").tolist() == rows(full, "test").tolist()  # same held-out rows
    with pytest.raises(ConfigError, match=r"data.n_train=500 is more than the 72 training"):
        assemble(config(n_train=500), "cpu", numbered(100), kind="vector",
                 task="regression", why="r")


def test_fractions_that_leave_nothing_are_refused():
    with pytest.raises(ConfigError, match=r"data\.test_fraction=0\.01 of the 20 samples"):
        assemble(config(test_fraction=0.01), "cpu", numbered(20), kind="vector",
                 task="regression", why="r")


# --- classes -----------------------------------------------------------------------------------

def test_classes_are_sorted_names_mapped_to_ids():
    y = np.array(["cat", "dog", "ant"] * 20, dtype=object)
    data = assemble(config(), "cpu", Samples(np.random.rand(60, 2), y, "pets.csv"),
                    kind="vector", task="classification", why="c")
    assert data.spec.class_names == ("ant", "cat", "dog")
    assert data.spec.num_classes == 3 and data.target_scale is None
    ids = torch.cat([data.train.y, data.val.y, data.test.y])
    assert ids.dtype == torch.int64 and torch.bincount(ids).tolist() == [20, 20, 20]


def test_integer_labels_keep_their_numbers_as_names():
    y = np.array([3, 10, 7] * 10)
    data = assemble(config(), "cpu", Samples(np.random.rand(30, 2), y, "n.csv"), kind="vector",
                    task="classification", why="c")
    assert data.spec.class_names == ("3", "7", "10")  # numeric order, not "10" < "3"


def test_a_class_with_one_example_is_refused():
    y = np.array(["a"] * 10 + ["b"] * 10 + ["lonely"], dtype=object)
    with pytest.raises(ConfigError, match="class 'lonely' has a single example"):
        assemble(config(), "cpu", Samples(np.random.rand(21, 2), y, "x.csv"), kind="vector",
                 task="classification", why="c")


# --- standardisation ---------------------------------------------------------------------------

def test_regression_targets_standardised_by_train_and_restored():
    rng = np.random.default_rng(0)
    y = np.stack([100 + 5 * rng.standard_normal(200), -3 + 0.1 * rng.standard_normal(200)], 1)
    data = assemble(config(), "cpu", Samples(rng.random((200, 4)), y, "y.csv"), kind="vector",
                    task="regression", why="r")
    scale = data.target_scale
    assert isinstance(scale, TargetScale) and scale.mean.shape == (1, 2)
    assert torch.allclose(data.train.y.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.train.y.std(0), torch.ones(2), atol=1e-5)
    assert data.spec.num_outputs == 2 and data.spec.target_shape == ()
    # the round trip gives back the file's values, and the statistics survive a save
    every = np.concatenate([scale.restore(s.y).numpy() for s in (data.train, data.val,
                                                                   data.test)])
    assert np.allclose(np.sort(every, 0), np.sort(y, 0), atol=1e-3)
    again = TargetScale.from_dict(scale.to_dict())
    assert torch.allclose(again.restore(data.test.y), scale.restore(data.test.y))


def test_field_targets_per_channel_and_target_shape():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((40, 2, 6, 6)) * np.array([1.0, 50.0])[None, :, None, None]
    data = assemble(config(), "cpu", Samples(rng.random((40, 6, 6)), y, "f.npz"), kind="image",
                    task="regression", why="r")
    assert data.spec.input_shape == (1, 6, 6)  # the channel axis added
    assert data.spec.target_shape == (2, 6, 6) and data.spec.num_outputs == 72
    assert data.target_scale.std.shape == (1, 2, 1, 1)
    assert 30 < float(data.target_scale.std[0, 1]) < 70


def test_inputs_standardised_by_train_statistics():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 3)) * [1.0, 10.0, 0.01] + [0.0, 50.0, -4.0]
    data = assemble(config(), "cpu", Samples(x, rng.random(300), "x.csv"), kind="vector",
                    task="regression", why="r")
    assert torch.allclose(data.train.x.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(data.train.x.std(0), torch.ones(3), atol=1e-4)
    assert data.norm["mean"][1] == pytest.approx(50, abs=1.5)
    assert data.norm["std"][1] == pytest.approx(10, rel=0.15)


def test_signals_are_standardised_per_channel():
    x = np.random.default_rng(3).standard_normal((50, 2, 16)) * [[1.0], [20.0]]
    data = assemble(config(), "cpu", Samples(x, np.random.rand(50), "s.npy"), kind="signal",
                    task="regression", why="r")
    assert data.spec.kind == "signal" and data.spec.input_shape == (2, 16)
    assert len(data.norm["std"]) == 2 and data.norm["std"][1] > 10 * data.norm["std"][0]


# --- spec, facts, refusals ---------------------------------------------------------------------

def test_spec_and_facts():
    y = np.array(["x", "y"] * 25, dtype=object)
    data = assemble(config(), "cpu", Samples(np.random.rand(50, 5), y, "t.csv"),
                    kind="vector", task="classification", why="classification: because",
                    facts={"categories": {"c": ["p", "q"]}})
    spec = data.spec
    assert (spec.name, spec.task, spec.kind, spec.input_shape) == ("mine", "classification",
                                                                  "vector", (5,))
    assert spec.out_features == 2 and spec.num_outputs is None
    assert data.facts["why"] == "classification: because"
    assert data.facts["categories"] == {"c": ["p", "q"]}
    assert data.facts["samples"] == {"train": 36, "val": 4, "test": 10}


def test_bad_samples_are_refused():
    with pytest.raises(ConfigError, match="x has 10 samples and y 9"):
        assemble(config(), "cpu", Samples(np.zeros((10, 2)), np.zeros(9), "a.npz"),
                 kind="vector", task="regression", why="r")
    with pytest.raises(ConfigError, match=r"inputs of shape \(10, 2, 2\) cannot be read as "
                                          "vector"):
        assemble(config(), "cpu", Samples(np.zeros((10, 2, 2)), np.zeros(10), "a.npz"),
                 kind="vector", task="regression", why="r")
    with pytest.raises(ConfigError, match="NaN or infinite"):
        y = np.ones(20)
        y[3] = np.nan
        assemble(config(), "cpu", Samples(np.zeros((20, 2)), y, "a.npz"), kind="vector",
                 task="regression", why="r")
    with pytest.raises(ConfigError, match="reg=\\[augment\\] augments images"):
        assemble(config(augment={"crop": 0}), "cpu", numbered(20), kind="vector",
                 task="regression", why="r")
