"""Batched augmentation: what each transform does, training batches only, flip off for digits."""

import pytest
import torch

from dltrain.data import build_data
from dltrain.data.augment import Augment
from dltrain.data.batches import AugmentedBatches, ShuffledBatches, train_batches
from dltrain.errors import ConfigError
from dltrain.targets import plain
from tests.data.files import cifar_batches, fake_mnist, write_cifar_folder


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=64, c=1, size=12, seed=0):
    return torch.rand(n, c, size, size, generator=gen(seed))


def test_shapes_and_dtype_are_kept():
    x = images(c=3)
    out = Augment(crop=2, flip=True, rotate=10, translate=0.1, noise=0.1)(x, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)


def test_nothing_asked_nothing_changed():
    x = images()
    assert torch.equal(Augment()(x, gen()), x)


def test_a_crop_is_a_shift_of_at_most_the_padding_filled_with_the_blank():
    x, p, blank = images(n=32, size=10), 2, -0.5
    out = Augment(crop=p, fill=(blank,))(x, gen())
    shifts = set()
    for image, result in zip(x[:, 0], out[:, 0], strict=True):
        padded = torch.full((10 + 2 * p, 10 + 2 * p), blank)
        padded[p:-p, p:-p] = image
        found = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.allclose(padded[dy:dy + 10, dx:dx + 10], result, atol=1e-6)]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 10  # offsets vary from image to image


def test_a_flip_mirrors_about_half_the_images():
    x = images(n=400)
    out = Augment(flip=True)(x, gen())
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((mirrored | kept).all())
    assert 150 < mirrored.sum().item() < 250


def test_a_rotation_turns_a_bar_by_at_most_the_limit():
    x = torch.zeros(200, 1, 33, 33)
    x[:, :, 16, 4:29] = 1.0  # a horizontal bar through the centre
    out = Augment(rotate=20)(x, gen())
    ys, xs = torch.meshgrid(torch.arange(33.0) - 16, torch.arange(33.0) - 16, indexing="ij")
    w = out[:, 0].clamp_min(0)
    # the angle of the bar from the second moments of its ink
    sxx = (w * xs * xs).sum((1, 2))
    syy = (w * ys * ys).sum((1, 2))
    sxy = (w * xs * ys).sum((1, 2))
    angle = 0.5 * torch.atan2(2 * sxy, sxx - syy).rad2deg()
    assert angle.abs().max() < 21 and angle.abs().max() > 12 and angle.std() > 5
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.05)  # ink is kept


def test_a_translation_moves_the_centre_of_mass_by_at_most_the_limit():
    x = torch.zeros(200, 1, 40, 40)
    x[:, :, 16:24, 16:24] = 1.0
    out = Augment(translate=0.1)(x, gen())
    coords = torch.arange(40.0)
    mass = out[:, 0].sum((1, 2))
    cx = (out[:, 0].sum(1) * coords).sum(1) / mass
    assert (cx - 19.5).abs().max() <= 4.0 + 1e-3 and (cx - 19.5).abs().max() > 2.5


def test_noise_has_the_asked_std():
    x = torch.zeros(100, 1, 20, 20)
    out = Augment(noise=0.3)(x, gen())
    assert out.std().item() == pytest.approx(0.3, rel=0.03)


def test_rotations_fill_with_the_blank_not_with_zero():
    x = torch.full((8, 1, 16, 16), -0.4)  # an all-blank (black) image, normalised
    out = Augment(rotate=30, translate=0.2, fill=(-0.4,))(x, gen())
    assert torch.allclose(out, x, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# In the data: training batches only, flip by data set


def test_only_training_batches_are_augmented(make_cfg):
    bare = build_data(plain(make_cfg("data.n_train=600", "data.n_test=100").data))
    augmented = build_data(plain(make_cfg("data.n_train=600", "data.n_test=100",
                                          "reg=[augment]").data))
    assert bare.augment is None and isinstance(augmented.augment, Augment)
    # evaluation sees the very same tensors with or without reg=[augment]
    assert torch.equal(bare.val.x, augmented.val.x)
    assert torch.equal(bare.test.x, augmented.test.x)
    assert torch.equal(bare.train.x, augmented.train.x)
    a = train_batches(augmented, 32, seed=0)
    p = train_batches(bare, 32, seed=0)
    assert isinstance(a, AugmentedBatches) and isinstance(p, ShuffledBatches)
    (xa, ya), (xp, yp) = next(a.epoch(0)), next(p.epoch(0))
    assert torch.equal(ya, yp) and xa.shape == xp.shape and not torch.equal(xa, xp)


def test_augmented_batches_are_reproducible_and_resume_exactly(make_cfg):
    data = build_data(plain(make_cfg("data.n_train=600", "data.n_test=100", "reg=[augment]").data))
    batches = train_batches(data, 32, seed=4)
    first = [x for x, _ in batches.epoch(1)]
    again = [x for x, _ in train_batches(data, 32, seed=4).epoch(1)]
    rest = [x for x, _ in batches.epoch(1, start=6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first[6:], rest, strict=True))
    other = next(train_batches(data, 32, seed=5).epoch(1))[0]
    assert not torch.equal(first[0], other)


def test_flip_is_off_for_digits_and_on_for_other_images(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=60, n_test=10)
    write_cifar_folder(tmp_path, cifar_batches(4))

    def augment(*overrides):
        root = [] if "data=glyphs" in overrides else [f"data.root={tmp_path}"]
        return build_data(plain(make_cfg(*overrides, *root, "reg=[augment]").data)).augment

    assert augment("data=glyphs", "data.n_train=100", "data.n_test=10").flip is False
    assert augment("data=mnist").flip is False
    assert augment("data=fashion_mnist").flip is True
    assert augment("data=cifar10").flip is True
    assert augment("data=mnist", "data.augment.flip=true").flip is True
    assert augment("data=cifar10", "data.augment.flip=false").flip is False


def test_the_blank_is_what_a_black_pixel_became(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=60, n_test=10)
    data = build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}", "reg=[augment]").data))
    mean, std = data.norm["mean"][0], data.norm["std"][0]
    assert data.augment.fill == pytest.approx((-mean / std,))
    assert data.train.x.min().item() == pytest.approx(-mean / std, abs=1e-5)


def test_augmenting_points_or_text_is_refused(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="data=moons holds vectors"):
        build_data(plain(make_cfg("data=moons", "reg=[augment]").data))
    (tmp_path / "t.txt").write_text("abc " * 500)
    with pytest.raises(ConfigError, match="data=text holds token sequences"):
        build_data(plain(make_cfg("data=text", f"data.path={tmp_path / 't.txt'}",
                                  "reg=[augment]").data))
