import torch

from dltrain.data.glyphs import IMAGE_SIZE, glyphs


def test_glyphs_are_28x28_images_in_unit_range_with_all_ten_digits():
    x, y = glyphs(2000, 0.2, torch.Generator().manual_seed(0))
    assert x.shape == (2000, 1, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert set(y.tolist()) == set(range(10))
    counts = torch.bincount(y, minlength=10).float()
    assert counts.min() > 0.7 * counts.mean()  # roughly uniform over digits


def test_glyphs_are_reproducible_from_the_generator():
    a = glyphs(100, 0.2, torch.Generator().manual_seed(3))
    b = glyphs(100, 0.2, torch.Generator().manual_seed(3))
    c = glyphs(100, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_digits_have_ink_and_differ_between_classes():
    x, y = glyphs(3000, 0.0, torch.Generator().manual_seed(0))
    ink = x.flatten(1).sum(1)
    assert (ink > 20).all()  # every image has a drawn stroke, none is blank
    means = torch.stack([x[y == d].mean(0).flatten() for d in range(10)])
    distances = torch.cdist(means, means)
    off_diagonal = distances[~torch.eye(10, dtype=torch.bool)]
    assert off_diagonal.min() > 1.0  # class means are distinct pictures


def test_images_vary_within_a_class():
    x, y = glyphs(500, 0.0, torch.Generator().manual_seed(0))
    sevens = x[y == 7].flatten(1)
    assert sevens.std(0).mean() > 0.1  # not one stamp repeated: positions and shapes vary
