"""Exact resume on the new kinds of training batches: k steps + interruption + resume equals
an uninterrupted run, bit for bit, for augmented, streamed and random-window batches."""

import pytest

from tests.data.files import fake_mnist
from tests.data.test_text import english
from tests.train.test_resume import assert_resumes_exactly

COMMON = ("trainer.device=cpu", "trainer.deterministic=true", "logger=none",
          "trainer.log_every=5", "trainer.max_epochs=2")


def cases(tmp_path):
    fake_mnist(tmp_path / "mnist", n_train=400, n_test=50, gz=False)
    (tmp_path / "corpus.txt").write_text(english(4000))
    return {
        "augmented": ["data=glyphs", "data.n_train=600", "data.n_test=100", "reg=[augment]",
                      "data.augment.noise=0.05", "data.batch_size=32"],
        "streamed": ["data=mnist", f"data.root={tmp_path / 'mnist'}", "data.in_memory=false",
                     "data.workers=0", "data.batch_size=32", "reg=[augment]"],
        "windows": ["data=text", f"data.path={tmp_path / 'corpus.txt'}", "data.block_size=16",
                    "data.batch_size=16", "model._target_=tests.data.test_text.Bigram"],
    }


@pytest.mark.parametrize("kind", ["augmented", "streamed", "windows"])
def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(make_cfg, tmp_path, kind):
    assert_resumes_exactly(make_cfg(*cases(tmp_path)[kind], *COMMON), tmp_path)
