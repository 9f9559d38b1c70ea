import torch

from dltrain.data.batches import ShuffledBatches, sequential_batches
from dltrain.data.spec import Split


def split(n: int) -> Split:
    return Split(torch.arange(n).float().unsqueeze(1), torch.arange(n))


def test_each_sample_once_per_epoch_in_full_batches():
    batches = ShuffledBatches(split(100), 10, seed=0)
    seen = torch.cat([y for _, y in batches.epoch(0)])
    assert len(batches) == 10
    assert sorted(seen.tolist()) == list(range(100))


def test_the_incomplete_last_batch_is_dropped():
    batches = ShuffledBatches(split(105), 10, seed=0)
    sizes = [len(y) for _, y in batches.epoch(0)]
    assert sizes == [10] * 10


def test_inputs_and_targets_stay_paired():
    for x, y in ShuffledBatches(split(50), 7, seed=1).epoch(3):
        assert torch.equal(x.squeeze(1).long(), y)


def test_order_is_reproducible_and_differs_between_epochs_and_seeds():
    a = ShuffledBatches(split(100), 10, seed=0)
    b = ShuffledBatches(split(100), 10, seed=0)
    c = ShuffledBatches(split(100), 10, seed=1)
    order = lambda batches, e: torch.cat([y for _, y in batches.epoch(e)])  # noqa: E731
    assert torch.equal(order(a, 0), order(b, 0))
    assert not torch.equal(order(a, 0), order(a, 1))
    assert not torch.equal(order(a, 0), order(c, 0))


def test_starting_in_the_middle_continues_the_same_epoch():
    batches = ShuffledBatches(split(100), 10, seed=5)
    full = [y for _, y in batches.epoch(2)]
    rest = [y for _, y in batches.epoch(2, start=4)]
    assert len(rest) == 6
    assert all(torch.equal(p, q) for p, q in zip(full[4:], rest, strict=True))


def test_a_split_smaller_than_a_batch_is_one_batch():
    batches = ShuffledBatches(split(5), 64, seed=0)
    assert len(batches) == 1 and len(next(iter(batches.epoch(0)))[1]) == 5


def test_sequential_batches_cover_the_split_in_order():
    ys = [y for _, y in sequential_batches(split(25), 10)]
    assert [len(y) for y in ys] == [10, 10, 5]
    assert torch.equal(torch.cat(ys), torch.arange(25))
