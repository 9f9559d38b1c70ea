"""The fast path of data=table (issue 19): a numeric table's columns gathered straight into each
split, statistics and standardisation in blocks, Parquet read without copies; every result the
same as the straightforward computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.data import columns
from dltrain.data.owned import ColumnInputs, Samples, assemble
from dltrain.data.table import Columns, inputs_of, read_frame


def config(**keys):
    base = {"name": "mine", "seed": 0, "n_train": None, "val_fraction": 0.1,
            "test_fraction": 0.2, "augment": None}
    return {**base, **keys}


def mixed_columns(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Columns of the dtypes a table holds: float64 (CSV), float32 (Parquet), int64, int8."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n), rng.standard_normal(n).astype(np.float32),
            rng.integers(-1000, 1000, n), rng.integers(-100, 100, n).astype(np.int8))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 7 rows: every gather, sum and standardisation crosses many block edges and
    ends on a partial block."""
    monkeypatch.setattr(columns, "_BLOCK_ROWS", 7)


@pytest.mark.parametrize("blocks", ["default", "small"])
def test_column_inputs_gather_the_rows_as_a_float32_matrix(blocks, request):
    if blocks == "small":
        request.getfixturevalue("small_blocks")
    columns = mixed_columns(100)
    expected = np.column_stack(columns).astype(np.float32)
    inputs = ColumnInputs(columns)
    index = np.array([0, 3, 4, 50, 51, 52, 99])
    assert inputs.shape == (100, 4) and len(inputs) == 100 and inputs.ndim == 2
    assert np.array_equal(inputs.rows(index), expected[index])
    every = inputs.rows()
    assert every.dtype == np.float32 and every.flags["C_CONTIGUOUS"]
    assert np.array_equal(every, expected)
    assert inputs.rows(np.array([], dtype=np.int64)).shape == (0, 4)


def test_assemble_of_columns_equals_assemble_of_the_matrix(small_blocks):
    columns = mixed_columns(500, seed=1)
    y = np.random.default_rng(2).standard_normal(500)
    matrix = np.column_stack(columns)
    a = assemble(config(), "cpu", Samples(ColumnInputs(columns), y, "t.csv"), kind="vector",
                 task="regression", why="")
    b = assemble(config(), "cpu", Samples(matrix, y, "t.csv"), kind="vector",
                 task="regression", why="")
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)
        assert getattr(a, split).x.is_contiguous()
    assert a.norm == b.norm
    assert len(a.train.x) == 360 and len(a.val.x) == 40 and len(a.test.x) == 100


def test_the_passes_give_the_same_values_on_one_thread_and_on_several(small_blocks):
    """Blocks shared out over threads: gather, statistics and standardisation are the same,
    bit for bit, on 1 thread and on 3 (the blocks of 7 rows are many, so 3 threads run)."""
    cols = mixed_columns(2000, seed=3)
    index = np.flatnonzero(np.random.default_rng(4).random(2000) < 0.7)
    threads = torch.get_num_threads()
    results = []
    calls = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            calls.append(len(columns.over_blocks(70, 7, lambda a, b: (a, b))))
            x = torch.from_numpy(ColumnInputs(cols).rows(index))
            mean, std = columns.statistics(x, "vector")
            results.append((x.clone(), mean, std,
                            columns.standardise_in_place(x, mean, std)))
    finally:
        torch.set_num_threads(threads)
    assert calls == [10, 10]
    for one, several in zip(*results, strict=True):
        assert torch.equal(one, several)
    expected = np.column_stack(cols).astype(np.float32)[index]
    assert np.array_equal(results[0][0].numpy(), expected)


def test_over_blocks_keeps_block_order_across_threads(monkeypatch):
    seen = []
    monkeypatch.setattr(columns, "_MIN_BLOCKS_A_THREAD", 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        out = columns.over_blocks(23, 5, lambda a, b: seen.append(a) or (a, b))
    finally:
        torch.set_num_threads(threads)
    assert out == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert sorted(seen) == [0, 5, 10, 15, 20]


def test_statistics_are_accurate_far_from_zero(small_blocks):
    """Block sums in float64: a large offset no longer costs float32 digits of the std."""
    rng = np.random.default_rng(0)
    x = (1000 + 3 * rng.standard_normal((300_000, 3))).astype(np.float32)
    mean, std = columns.statistics(torch.from_numpy(x), "vector")
    exact = x.astype(np.float64)
    assert np.allclose(mean.numpy()[0], exact.mean(axis=0), rtol=1e-7, atol=0)
    assert np.allclose(std.numpy()[0], exact.std(axis=0, ddof=1), rtol=1e-5, atol=0)
    assert mean.shape == (1, 3) and std.shape == (1, 3) and mean.dtype == torch.float32


@pytest.mark.parametrize("shape", [(1000, 5), (1000, 1)])
def test_standardise_is_torch_sub_then_div_to_the_bit(shape, small_blocks):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True)
    expected = x.clone().sub_(mean).div_(std)
    result = columns.standardise_in_place(x, mean, std)
    assert result is x  # in place
    assert torch.equal(result, expected)


def test_a_numeric_table_is_kept_as_its_columns_one_hot_is_a_matrix():
    frame = pd.DataFrame({"a": [1.5, 2.5, 3.5], "b": [1, 2, 3], "c": ["x", "y", "x"]})
    numeric = inputs_of(frame, Columns(("t",), ("a", "b"), {}), "t.csv")
    assert isinstance(numeric, ColumnInputs)
    assert np.array_equal(numeric.rows(), [[1.5, 1], [2.5, 2], [3.5, 3]])
    encoded = inputs_of(frame, Columns(("t",), ("a", "c"), {"c": ["x", "y"]}), "t.csv")
    assert isinstance(encoded, np.ndarray)
    assert np.array_equal(encoded, [[1.5, 1, 0], [2.5, 0, 1], [3.5, 1, 0]])


def test_parquet_reads_as_pandas_reads_it(tmp_path):
    frame = pd.DataFrame({"f": np.linspace(0, 1, 50, dtype=np.float32),
                          "d": np.linspace(0, 1, 50), "i": np.arange(50),
                          "s": [f"s{i % 3}" for i in range(50)],
                          "c": pd.Categorical([("a", "b")[i % 2] for i in range(50)]),
                          "b": [i % 2 == 0 for i in range(50)]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, index=False, row_group_size=16)  # several row groups
    read = read_frame(path)
    pd.testing.assert_frame_equal(read, pd.read_parquet(path), check_like=False)
