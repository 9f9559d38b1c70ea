"""The passes over a table's numbers that assembling a million rows spends its time in: the
rows of a split gathered from the table's own columns, and the per-feature statistics and
standardisation of the training split, a block of rows at a time (in the cache).

The blocks are shared out over torch's threads (torch.get_num_threads(): trainer.threads,
or torch's own choice): numpy lets go of the interpreter in each block's copy, so two cores
gather and standardise twice the rows (pandas' own CSV reader reads on several threads
too). Each block's result is the same whichever thread computes it, and sums are added in
block order: the values do not depend on the number of threads.

dltrain.data.owned assembles every file source's samples with them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

# Rows a block in the passes over a table (gather, sums, standardise): a block of a few dozen
# float32 columns stays in the cache.
_BLOCK_ROWS = 16384
# Blocks a thread takes at least: below that, starting threads costs more than it saves.
_MIN_BLOCKS_A_THREAD = 4


def over_blocks(n: int, step: int, work: Callable[[int, int], object]) -> list:
    """work(start, stop) for every block of `step` rows of n, the blocks shared out in
    contiguous runs over torch's threads; the results in block order."""
    starts = list(range(0, n, step))
    threads = max(1, min(torch.get_num_threads(), len(starts) // _MIN_BLOCKS_A_THREAD))
    if threads == 1:
        return [work(start, min(start + step, n)) for start in starts]

    def run(k: int) -> list:
        mine = starts[k * len(starts) // threads:(k + 1) * len(starts) // threads]
        return [work(start, min(start + step, n)) for start in mine]

    with ThreadPoolExecutor(threads) as pool:
        return [r for part in pool.map(run, range(threads)) for r in part]


@dataclass(frozen=True)
class ColumnInputs:
    """(rows, columns) numeric inputs held as a table's own 1-D columns (ints or floats, as
    read). assemble gathers each split's rows from them straight into row-major float32: no
    float32 copy of the whole table is made first, which on a million rows (80 MB touched for
    the first time) cost about as much as reading the file."""

    columns: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.columns[0]) if self.columns else 0, len(self.columns))

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, index: np.ndarray | None = None) -> np.ndarray:
        """(len(index), columns) float32 of the rows `index` (every row where None): a block
        of rows at a time, each column gathered into a small scratch (in the cache) that is
        then written transposed into the rows: a column written straight into row-major
        output would be a strided write per column, several times slower."""
        n = len(self) if index is None else len(index)
        out = np.empty((n, len(self.columns)), dtype=np.float32)
        dtype = np.result_type(*self.columns)

        def gather(start: int, stop: int) -> None:
            block = np.empty((len(self.columns), stop - start), dtype=dtype)
            for j, column in enumerate(self.columns):
                if index is None:
                    block[j] = column[start:stop]
                elif column.dtype == block.dtype:
                    np.take(column, index[start:stop], out=block[j])
                else:
                    block[j] = column[index[start:stop]]
            out[start:stop] = block.T

        over_blocks(n, max(1, min(_BLOCK_ROWS, n)), gather)
        return out


def rows_of(x: np.ndarray | ColumnInputs, index: np.ndarray | None) -> np.ndarray:
    """A copy of the rows `index` of x (all of them where None): normalised in place later,
    and what the caller handed in stays as it was."""
    if isinstance(x, ColumnInputs):
        return x.rows(index)
    return x.copy() if index is None else x[index]


def _column_sums(x: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """Per-column sums of x (rows, columns), of (x - shift) ** 2 where `shift` is given, in
    float64, a block of rows at a time: no temporary the size of x, and a BLAS dot product
    (ones @ block) per block rather than numpy's axis-0 reduction, which over a few columns
    walks short rows (2-3x slower on a million rows, and float32 all the way)."""
    step = min(_BLOCK_ROWS, len(x))
    ones = np.ones(step, dtype=x.dtype)

    def block_sum(start: int, stop: int) -> np.ndarray:
        block = x[start:stop]
        if shift is not None:
            block = np.square(block - shift)
        return ones[:len(block)] @ block

    total = np.zeros(x.shape[1], dtype=np.float64)
    for part in over_blocks(len(x), step, block_sum):  # in block order, whatever the threads
        total += part
    return total


def statistics(train: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """prepare.standardise's mean and std (per feature for vectors, per channel otherwise):
    on a million rows this is most of assembling them."""
    if kind == "vector" and train.ndim == 2 and len(train) > 1:
        x = np.ascontiguousarray(train.numpy())
        mean = (_column_sums(x) / len(x)).astype(x.dtype)
        var = _column_sums(x, mean) / (len(x) - 1)  # unbiased, as torch.var
        return (torch.from_numpy(mean[None]),
                torch.from_numpy(np.sqrt(var).astype(x.dtype)[None]).clamp_min(1e-6))
    dims = (0,) if kind == "vector" else tuple(d for d in range(train.ndim) if d != 1)
    var_t, mean_t = torch.var_mean(train, dim=dims, keepdim=True)
    return mean_t, var_t.sqrt().clamp_min(1e-6)


def standardise_in_place(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """x = (x - mean) / std in place. A (rows, columns) table on the CPU goes through numpy a
    block of rows at a time, each block subtracted and divided while it is in the cache (one
    pass over memory, on one thread: torch's two broadcast ops over a million short rows were
    5x slower on a busy machine); the same float32 operations, so the same values."""
    if x.ndim != 2 or x.device.type != "cpu" or not x.is_contiguous() or x.dtype != mean.dtype:
        return x.sub_(mean).div_(std)
    a, m, s = x.numpy(), mean.numpy().reshape(-1), std.numpy().reshape(-1)
    if a.shape[1] == 1:  # one column: a flat array and two scalars, no broadcast over rows
        a, m, s = a.reshape(-1), m[0], s[0]
    def standardise(start: int, stop: int) -> None:
        block = a[start:stop]
        np.subtract(block, m, out=block)
        np.divide(block, s, out=block)

    over_blocks(len(a), max(1, _BLOCK_ROWS * 32 // max(1, a.size // len(a))), standardise)
    return x
