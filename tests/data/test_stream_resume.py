"""Streamed data (`data.in_memory=false`) with dropout resumes bit-exact: a run stopped in
the middle of an epoch and resumed ends with the weights of an uninterrupted run, with and
without DataLoader workers.

Dropout draws from torch's global random stream, which a checkpoint saves and a resume
restores; the streamed batches must draw nothing from it (a DataLoader's iterator takes its
workers' base seed from it unless given a generator of its own), or the resumed run's masks
are shifted by the draws of the epochs' loaders."""

import pytest
import torch

from dltrain.data.batches import StreamedBatches
from dltrain.data.spec import HostSplit
from tests.data.files import fake_mnist
from tests.train.test_resume import assert_resumes_exactly

COMMON = ("data=mnist", "data.in_memory=false", "data.batch_size=32", "model=mlp",
          "model.dropout=0.2", "model.width=32", "trainer.device=cpu",
          "trainer.deterministic=true", "logger=none", "trainer.log_every=5",
          "trainer.max_epochs=2", "sched=none")


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_with_dropout_stopped_mid_epoch_resumes_bit_exact(make_cfg, tmp_path, workers):
    fake_mnist(tmp_path / "mnist", n_train=320, n_test=40, gz=False)
    cfg = make_cfg(*COMMON, f"data.root={tmp_path / 'mnist'}", f"data.workers={workers}")
    assert_resumes_exactly(cfg, tmp_path)


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_an_epoch_draws_nothing_from_the_global_random_stream(workers):
    x = torch.arange(40 * 4, dtype=torch.uint8).view(40, 4).numpy()
    split = HostSplit(x=x, y=torch.arange(40).numpy(), index=torch.arange(40).numpy(),
                      mean=(0.0,), std=(1.0,), scale=1.0, device="cpu", workers=workers)
    batches = StreamedBatches(split, batch_size=8, seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    got = [x for x, _ in batches.epoch(1, start=2)]
    assert len(got) == 3
    assert torch.equal(torch.get_rng_state(), before)
