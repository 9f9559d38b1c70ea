"""Collocation points: inside the box, on its faces, on the initial line; each sampling's own
property; draws reproducible from (seed, number) alone."""

from __future__ import annotations

import pytest
import torch

from dltrain.pinn import points
from dltrain.pinn.pde import Box

BOX = Box(("x", "t"), (-1.0, 0.0), (1.0, 2.0), time=1)
COUNTS = points.Counts(domain=64, boundary=10, initial=12)


@pytest.mark.parametrize("sampling", ["uniform", "sobol", "lhs"])
def test_kinds_of_points_lie_where_they_belong(sampling):
    x = points.draw(COUNTS, BOX, sampling, seed=3, number=0)
    rows = COUNTS.slices()
    assert x.shape == (86, 2) and x.dtype == torch.float64
    inside = x[rows["domain"]]
    assert (inside[:, 0] >= -1).all() and (inside[:, 0] <= 1).all()
    assert (inside[:, 1] >= 0).all() and (inside[:, 1] <= 2).all()
    edge = x[rows["boundary"]]
    assert set(edge[:, 0].tolist()) == {-1.0, 1.0}  # both faces of x, alternately
    assert (edge[0::2, 0] == -1).all() and (edge[1::2, 0] == 1).all()
    assert (edge[:, 1] > 0).all()
    start = x[rows["initial"]]
    assert (start[:, 1] == 0).all() and start[:, 0].std() > 0.3


def test_a_draw_depends_on_seed_and_number_only():
    a = points.draw(COUNTS, BOX, "sobol", seed=1, number=5)
    assert torch.equal(a, points.draw(COUNTS, BOX, "sobol", seed=1, number=5))
    assert not torch.equal(a, points.draw(COUNTS, BOX, "sobol", seed=1, number=6))
    assert not torch.equal(a, points.draw(COUNTS, BOX, "sobol", seed=2, number=5))


def test_latin_hypercube_puts_one_point_in_each_slice_of_each_coordinate():
    u = points.unit_cube(50, 3, "lhs", torch.Generator().manual_seed(0))
    for j in range(3):
        assert sorted((u[:, j] * 50).floor().long().tolist()) == list(range(50))


def test_sobol_covers_the_square_more_evenly_than_independent_draws():
    gen = torch.Generator().manual_seed(0)

    def worst_gap(u: torch.Tensor) -> float:  # the emptiest of 8 x 8 cells
        cells = (u * 8).floor().long()
        counts = torch.bincount(cells[:, 0] * 8 + cells[:, 1], minlength=64)
        return float(counts.min())

    assert worst_gap(points.unit_cube(256, 2, "sobol", gen)) >= 3  # 4 expected in each cell
    assert worst_gap(points.unit_cube(256, 2, "uniform", gen)) < 3


def test_the_boundary_of_a_2d_space_uses_all_four_faces():
    box = Box(("x", "y"), (0.0, -1.0), (1.0, 1.0))
    edge = points.boundary(8, box, "uniform", torch.Generator().manual_seed(0))
    on = [(edge[:, 0] == 0), (edge[:, 0] == 1), (edge[:, 1] == -1), (edge[:, 1] == 1)]
    assert [int(m.sum()) for m in on] == [2, 2, 2, 2]


def test_grid_runs_the_first_coordinate_slowest():
    g = points.grid(BOX, (3, 2))
    assert g.tolist() == [[-1, 0], [-1, 2], [0, 0], [0, 2], [1, 0], [1, 2]]


def _numbers(every: int, later: int | None, lbfgs_from: int | None, steps: int = 12
             ) -> list[int]:
    import yaml

    from dltrain.cli import conf_dir
    from dltrain.pinn.problem import draw_number, problem

    node = yaml.safe_load((conf_dir() / "pde" / "burgers1d.yaml").read_text())["pde"]
    p = problem({**node, "resample_every": every, "lbfgs_resample_every": later})
    return [draw_number(p, step, lbfgs_from) for step in range(steps)]


def test_each_phase_draws_at_its_own_rate():
    # Adam every step until the switch at step 5, then L-BFGS on a fresh draw every 3 steps
    assert _numbers(1, 3, 5) == [0, 1, 2, 3, 4, 5, 5, 5, 6, 6, 6, 7]
    assert _numbers(2, 0, 5) == [0, 0, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3]  # 0: one draw for L-BFGS
    assert _numbers(0, 4, 5) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert _numbers(0, 4, 0) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]  # optim=lbfgs throughout
    # no L-BFGS (optim=adam), or no rate of its own: resample_every throughout
    assert _numbers(3, 1, None) == _numbers(3, None, 5) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
