"""Which jobs of a sweep stack, which run alone, and the sentence that says why."""

from __future__ import annotations

import pytest

from dltrain.vectorised.plan import job_numbers, model_reason, plan, stack_key, varying

GENERATED = {"moons", "circles", "sine"}
BASE = ("data=moons", "trainer=smoke")


@pytest.fixture
def cfgs(make_cfg):
    def _cfgs(*variants: str) -> list:
        return [make_cfg(*BASE, *v.split()) for v in variants]
    return _cfgs


def test_seeds_rates_and_regularisation_strengths_stack_together(cfgs):
    jobs = cfgs("trainer.seed=0 optim.lr=0.01", "trainer.seed=1 optim.lr=0.1",
                "trainer.seed=2 optim.weight_decay=0.1 optim.betas=[0.8,0.99]",
                "model.dropout=0.3 penalty.l1=0.001 penalty.l2=0.01 optim.eps=1e-6",
                "init=normal", "init=normal init.std=0.5", "data.noise=0.05 data.seed=3",
                "reg=[batchnorm] trainer.seed=0", "reg=[batchnorm] trainer.seed=1")
    result = plan(jobs, GENERATED)
    # init=normal is another initialisation (a config group), not another value of one;
    # batch norm is another architecture
    assert result.stacks == [[0, 1, 2, 3, 6], [4, 5], [7, 8]]
    assert result.alone == {}
    assert varying([jobs[i] for i in result.stacks[0]]) == [
        "trainer.seed", "optim.lr", "optim.weight_decay", "optim.betas", "optim.eps",
        "model.dropout", "penalty.l1", "penalty.l2", "data.noise", "data.seed"]


def test_a_different_architecture_or_data_set_is_another_stack(cfgs):
    jobs = cfgs("model.hidden=[8] trainer.seed=0", "model.hidden=[16] trainer.seed=0",
                "model.hidden=[8] trainer.seed=1", "model.hidden=[16] trainer.seed=1",
                "data=circles", "data=circles trainer.seed=1", "trainer.max_steps=5")
    result = plan(jobs, GENERATED)
    assert result.stacks == [[0, 2], [1, 3], [4, 5]]
    assert result.alone == {6: "nothing to stack with: no other job of the sweep differs from "
                               "it only in stackable values"}


def test_the_draw_of_data_stacks_only_for_generated_data(make_cfg):
    a, b = make_cfg(*BASE, "data.noise=0.1"), make_cfg(*BASE, "data.noise=0.3")
    assert stack_key(a, GENERATED) == stack_key(b, GENERATED)
    assert stack_key(a, set()) != stack_key(b, set())  # a data set read from files


@pytest.mark.parametrize("overrides, why", [
    ("optim=lbfgs", "optim=lbfgs: L-BFGS runs a line search of its own length in every "
                    "step, which members cannot share (optim=adam stacks)"),
    ("optim=rmsprop", "optim=rmsprop: only SGD, Adam, AdamW steps are vectorised"),
    ("+optim.amsgrad=true", "optim.amsgrad=true is not implemented by the vectorised optimiser"),
    ("model=transformer", "model=transformer: not stacked (the transformer's attention draws "
                          "its dropout inside one kernel)"),
    ("trainer.precision=bf16", "trainer.precision=bf16: mixed precision runs alone"),
    ("trainer.accumulate=2", "trainer.accumulate: gradient accumulation runs alone"),
    ("trainer.nan_policy=skip", "trainer.nan_policy=skip looks at every step's loss, so it "
                                "runs alone"),
    ("trainer.resume=auto", "trainer.resume=auto: a run that may continue a checkpoint runs "
                            "alone"),
    ("+trainer.ema=0.99", "trainer.ema is not implemented by the vectorised training loop"),
    ("data=glyphs reg=[augment]", "data augmentation (reg=[augment]) draws per batch: it runs "
                                  "alone"),
    ("probe=[activations]", "probes look into one model's training loop: it runs alone (of "
                            "them only probe=[fit] with probe.fit.images=false, which looks at "
                            "the end, stacks)"),
    ("data=sine probe=[fit]", "probes look into one model's training loop: it runs alone (of "
                              "them only probe=[fit] with probe.fit.images=false, which looks "
                              "at the end, stacks)"),
    ("task=reconstruction model.latent=2", "task=reconstruction: autoencoders, VAEs and "
                                           "generative models are not stacked"),
    ("pde=poisson1d", "optim=adam_lbfgs: L-BFGS runs a line search of its own length in "
                      "every step, which members cannot share (optim=adam stacks)"),
    ("pde=poisson1d optim=adam pde.learn=[k] pde.observations=50",
     "pde.learn=[k]: an inverse problem's learnt coefficients are not stacked (a stack trains "
     "forward problems that differ in seed, learning rate and loss weights)"),
    ("trainer.channels_last=true", "trainer.channels_last=true: the channels-last layout runs "
                                   "alone"),
])
def test_what_cannot_stack_runs_alone_and_says_why(make_cfg, overrides, why):
    jobs = [make_cfg(*BASE, *overrides.split(), f"trainer.seed={s}") for s in (0, 1)]
    assert plan(jobs, GENERATED) == type(plan(jobs, GENERATED))(stacks=[], alone={0: why, 1: why})


def test_a_model_class_is_stacked_only_where_it_declares_so():
    # a stack computes a class's forward exactly only where its author said so
    assert model_reason({"name": "mlp", "_target_": "dltrain.models.mlp.MLP"}) is None
    assert model_reason({"name": "mine", "_target_": "torch.nn.Linear"}) == (
        "model=mine: not stacked (torch.nn.Linear does not declare itself stackable)")
    assert model_reason({"name": "gone", "_target_": "nowhere.Model"}) == (
        "model=gone: not stacked (nowhere.Model does not declare itself stackable)")


def test_dropout_stacks_on_the_cpu_only(make_cfg):
    jobs = [make_cfg(*BASE, "model.dropout=0.2", f"trainer.seed={s}") for s in (0, 1)]
    assert plan(jobs, GENERATED, ["cpu", "cpu"]).stacks == [[0, 1]]
    assert plan(jobs, GENERATED, ["cuda", "cuda"]).alone[0] == (
        "model.dropout on cuda: dropout masks there come from a fused kernel whose random "
        "stream a member cannot reproduce (on cpu it can)")


def test_a_large_group_trains_as_several_stacks(cfgs):
    jobs = cfgs(*(f"trainer.seed={s}" for s in range(7)))
    result = plan(jobs, GENERATED, max_members=3)
    assert result.stacks == [[0, 1, 2], [3, 4, 5]]
    assert result.alone == {6: "left over after stacks of max_members=3"}


def test_job_numbers_are_short():
    assert job_numbers([0, 1, 2, 3]) == "#0-#3"
    assert job_numbers([1, 3]) == "#1, #3"
    assert job_numbers(list(range(0, 40, 2))) == "#0, #2, #4, #6, #8, #10, #12, #14 and 12 more"


def test_the_fit_probe_without_images_stacks(make_cfg):
    # it looks once, at each member's end; with images it looks during training too
    quiet = [make_cfg("data=sine", "probe=[fit]", "probe.fit.images=false", f"trainer.seed={s}")
             for s in (0, 1)]
    assert plan(quiet, GENERATED).stacks == [[0, 1]]
    drawn = [make_cfg("data=sine", "probe=[fit]", f"trainer.seed={s}") for s in (0, 1)]
    assert plan(drawn, GENERATED).stacks == []
