"""Character-level text: vocabulary, contiguous splits, windows, random-window batches."""

import math
import random
import re

import pytest
import torch
from torch import nn

from dltrain.data import DataSpec, build_data
from dltrain.data.batches import WindowBatches, train_batches
from dltrain.data.text import UNKNOWN, build_vocab, decode, encode, windows
from dltrain.errors import ConfigError
from dltrain.targets import plain

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
         "wizards", "quietly", "hum", "an", "old", "song", "about", "rivers", "and", "mountains",
         "far", "away")


def english(n_words: int, seed: int = 0) -> str:
    """Sentences of random words: text with real character statistics, made offline."""
    rng = random.Random(seed)
    sentences, count = [], 0
    while count < n_words:
        k = rng.randint(4, 12)
        words = [rng.choice(WORDS) for _ in range(k)]
        sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
        count += k
    return "\n".join(" ".join(sentences[i:i + 3]) for i in range(0, len(sentences), 3)) + "\n"


def write(tmp_path, text, name="corpus.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def text_data(make_cfg, path, *overrides):
    return build_data(plain(make_cfg("data=text", f"data.path={path}", *overrides).data))


def test_vocabulary_reserves_id_0_and_sorts_the_rest():
    vocab = build_vocab("banana!")
    assert vocab == (UNKNOWN, "!", "a", "b", "n")
    ids = encode("banana?", vocab)
    assert ids.tolist() == [3, 2, 4, 2, 4, 2, 0]  # '?' was never seen: id 0
    assert decode(ids.tolist(), vocab) == "banana" + UNKNOWN


def test_encode_handles_any_unicode():
    text = "naïve café — 東京 🙂"
    vocab = build_vocab(text)
    assert decode(encode(text, vocab).tolist(), vocab) == text


def test_splits_are_contiguous_parts_of_the_file_in_order(make_cfg, tmp_path):
    text = english(3000)
    data = text_data(make_cfg, write(tmp_path, text), "data.block_size=16",
                     "data.val_fraction=0.1", "data.test_fraction=0.2")
    vocab = data.spec.vocab
    n = len(text)
    n_val, n_test = round(0.1 * n), round(0.2 * n)
    assert decode(data.tokens, vocab) == text[:n - n_val - n_test]
    # validation and test windows cover their parts from their first character on
    val = decode(data.val.x.flatten(), vocab)
    test = decode(data.test.x.flatten(), vocab)
    assert text[n - n_val - n_test:].startswith(val) and len(val) > n_val - 17
    assert text[n - n_test:].startswith(test) and len(test) > n_test - 17


def test_the_vocabulary_comes_from_the_train_part_only(make_cfg, tmp_path):
    text = english(2000) + "Zebra" * 50  # 'Z' and 'e'... only in the last part
    data = text_data(make_cfg, write(tmp_path, text), "data.block_size=8",
                     "data.test_fraction=0.1")
    assert "Z" not in data.spec.vocab and "b" in data.spec.vocab
    assert (data.test.x == 0).any()  # unseen characters are the reserved id
    assert data.spec.vocab_size == len(set(text[:len(text) - round(0.1 * len(text))
                                                  - round(0.05 * len(text))])) + 1


def test_the_spec_describes_tokens_and_round_trips_with_its_vocabulary(make_cfg, tmp_path):
    data = text_data(make_cfg, write(tmp_path, english(2000)), "data.block_size=24")
    spec = data.spec
    assert (spec.task, spec.kind, spec.input_shape) == ("language_model", "tokens", (24,))
    assert spec.vocab_size == len(spec.vocab) == spec.out_features and spec.vocab[0] == UNKNOWN
    back = DataSpec.from_dict(spec.to_dict())
    assert back == spec and isinstance(back.vocab, tuple)
    assert spec.to_dict()["vocab"] == list(spec.vocab)  # plain data: JSON and weights_only


def test_windows_are_consecutive_and_targets_are_shifted_by_one():
    tokens = torch.arange(50)
    split = windows(tokens, 8)
    assert split.x.shape == split.y.shape == (6, 8)
    assert torch.equal(split.x.flatten(), tokens[:48]) and torch.equal(split.y.flatten(),
                                                                       tokens[1:49])
    assert split.x.data_ptr() == tokens.data_ptr()  # a view, not a copy


def test_window_batches_draw_shifted_windows_of_the_stream():
    tokens = torch.arange(1000) * 3  # each window is recognisable by its first value
    batches = WindowBatches(tokens, batch_size=4, block_size=10, seed=0)
    assert len(batches) == 1000 // 40
    for x, y in batches.epoch(0):
        assert x.shape == y.shape == (4, 10) and x.dtype == torch.int64
        start = x[:, :1] // 3
        assert torch.equal(x, (start + torch.arange(10)) * 3)
        assert torch.equal(y, x + 3)


def test_window_order_is_reproducible_and_differs_between_epochs_and_seeds():
    tokens = torch.arange(5000)

    def first(seed, epoch):
        return torch.cat([x[:, 0] for x, _ in WindowBatches(tokens, 8, 16, seed).epoch(epoch)])

    assert torch.equal(first(0, 0), first(0, 0))
    assert not torch.equal(first(0, 0), first(0, 1))
    assert not torch.equal(first(0, 0), first(1, 0))


def test_window_batches_resume_exactly_in_the_middle_of_an_epoch():
    batches = WindowBatches(torch.arange(3000), 8, 16, seed=3)
    full = list(batches.epoch(2))
    rest = list(batches.epoch(2, start=5))
    assert len(rest) == len(full) - 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(full[5:], rest, strict=True))


def test_train_batches_of_text_are_window_batches_on_the_train_stream(make_cfg, tmp_path):
    text = english(3000)
    data = text_data(make_cfg, write(tmp_path, text), "data.block_size=32")
    batches = train_batches(data, 16, seed=0)
    assert isinstance(batches, WindowBatches)
    assert len(batches) == len(data.tokens) // (16 * 32)  # the documented epoch
    x, _ = next(batches.epoch(0))
    train_text = decode(data.tokens, data.spec.vocab)
    for row in range(16):
        assert decode(x[row], data.spec.vocab) in train_text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.val_fraction=0.001"], "data.val_fraction=0.001 leaves"),
        (["data.test_fraction=0.001"], "data.test_fraction=0.001 leaves"),
        (["data.val_fraction=0.5", "data.test_fraction=0.5"], "for training, fewer than"),
        (["data.block_size=100000"], "fewer than data.block_size+1=100001"),
    ],
)
def test_parts_too_short_for_one_window_are_refused(make_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        text_data(make_cfg, write(tmp_path, english(2000)), *overrides)


def test_bad_text_input_is_named(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"data=text needs data\.path=FILE"):
        build_data(plain(make_cfg("data=text").data))
    with pytest.raises(ConfigError, match="there is no such file"):
        text_data(make_cfg, tmp_path / "missing.txt")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    with pytest.raises(ConfigError, match=r"latin1.txt is not UTF-8 text \(byte 0xe9 at offset 3"):
        text_data(make_cfg, latin1)


# ---------------------------------------------------------------------------------------------
# A language model trained through run(): the perplexity the summary reports is right


class Bigram(nn.Module):
    """Test double of a language model: next-character logits from the current one alone."""

    def __init__(self, spec: DataSpec, **_hyperparameters: object) -> None:
        super().__init__()
        self.table = nn.Embedding(spec.vocab_size, spec.vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x)  # (B, T, V)


def bigram_perplexity(train: torch.Tensor, test: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on `test` of the add-one-smoothed bigram counts of `train`."""
    counts = torch.ones(vocab_size, vocab_size)
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1), accumulate=True)
    logp = (counts / counts.sum(1, keepdim=True)).log()
    return math.exp(-logp[test[:-1], test[1:]].mean().item())


def test_a_bigram_model_reaches_the_counted_bigram_perplexity(make_cfg, tmp_path):
    from dltrain.run import run
    from dltrain.training.checkpoint import load_checkpoint

    path = write(tmp_path, english(12000))
    cfg = make_cfg("data=text", f"data.path={path}", "data.block_size=32", "data.batch_size=32",
                   "model._target_=tests.data.test_text.Bigram", "optim.lr=0.05",
                   "trainer.max_epochs=4", "trainer.device=cpu", "logger=none")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    test = result.summary["test"]
    assert test["perplexity"] == pytest.approx(math.exp(test["loss"]))
    data = build_data(plain(cfg.data))
    counted = bigram_perplexity(data.tokens, data.test.x.flatten(), data.spec.vocab_size)
    assert data.spec.vocab_size > 20
    assert test["perplexity"] == pytest.approx(counted, rel=0.05)  # far below uniform (vocab)
    # the run keeps the vocabulary: a checkpoint decodes on its own
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["spec"]
    assert DataSpec.from_dict(saved).vocab == data.spec.vocab
