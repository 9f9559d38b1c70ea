import pytest

from dltrain.choices import ACTIVATIONS, MONITORS, POOLINGS
from dltrain.cli import list_options
from dltrain.cli.preflight import preflight
from dltrain.config import dotted_keys, suggest, validate
from dltrain.errors import ConfigError


def test_suggest_finds_the_nearest_name_or_nothing():
    assert suggest("lrr", ["lr", "momentum"]) == "lr"
    assert suggest("cnnn", ["mlp", "cnn", "resnet"]) == "cnn"
    assert suggest("zzz", ["mlp", "cnn"]) is None


def test_dotted_keys(make_cfg):
    keys = dotted_keys(make_cfg())
    assert {"optim", "optim.lr", "data.batch_size", "trainer.max_epochs"} <= set(keys)


def test_the_default_config_is_valid(make_cfg):
    validate(make_cfg())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr=-1 must be a number > 0"),
        ("optim.lr=0", "optim.lr=0 must be a number > 0"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5 must be a number in (0, 1)"),
        ("data.batch_size=0", "data.batch_size=0 must be a whole number >= 1"),
        ("data.batch_size=2.5", "data.batch_size=2.5 must be a whole number >= 1"),
        ("trainer.max_epochs=abc", "trainer.max_epochs=abc must be a whole number"),
        ("trainer.device=gpu", "trainer.device=gpu must be auto, cpu, cuda, cuda:N or mps"),
        ("trainer.precision=8", "trainer.precision=8 must be one of: 32, bf16, 16"),
        ("model.activation=rleu", "did you mean relu?"),
        ("model.hidden=[64,0]", "model.hidden=[64, 0] must be null or a list of positive"),
        ("model.dropout=1.0", "model.dropout=1.0 must be a number in [0, 1)"),
        ("trainer.compile=yes", "trainer.compile=yes must be true or false"),
        ("model.width=true", "model.width=true must be a whole number >= 1"),  # as written
        ("trainer.max_steps=false", "trainer.max_steps=false must be a whole number >= 1"),
        ("model=cnn model.pooling=maxx", "model.pooling=maxx must be one of: max, avg, none; "
                                         "did you mean max?"),
        ("model=cnn model.channels=[]", "model.channels=[] must be a non-empty list"),
        ("model=cnn model.kernel_size=0", "model.kernel_size=0 must be a whole number >= 1"),
        ("model=resnet model.blocks=0", "model.blocks=0 must be a whole number >= 1"),
        ("model=transformer model.readout=first", "must be one of: mean, cls"),
        ("model=transformer model.heads=0", "model.heads=0 must be a whole number >= 1"),
        ("optim.betas=[0.9,1.0]", "optim.betas=[0.9, 1.0] must be a pair of numbers in [0, 1)"),
        ("optim=nesterov optim.nesterov=1", "optim.nesterov=1 must be true or false"),
        ("optim=lbfgs optim.line_search_fn=wolfe", "must be null or one of: strong_wolfe"),
        ("sched=onecycle sched.anneal_strategy=cosine", "must be one of: cos, linear"),
        ("sched=onecycle sched.div_factor=0", "sched.div_factor=0 must be a number > 0"),
        ("sched=plateau sched.mode=up", "sched.mode=up must be one of: min, max"),
        ("sched=cosine sched.eta_min=-1", "sched.eta_min=-1 must be a number >= 0"),
        ("trainer.monitor=accuracy", "did you mean val/accuracy?"),
        ("data=spirals data.classes=1", "data.classes=1 must be a whole number >= 2"),
        ("data=circles data.factor=1", "data.factor=1 must be a number in [0, 1)"),
        ("data=sine data.periods=0", "data.periods=0 must be a number > 0"),
        ("data=poly data.x_range=[1,-1]", "data.x_range=[1, -1] must be a pair [low, high]"),
        ("data=poly data.coefficients=[]", "data.coefficients=[] must be a non-empty list"),
    ],
)
def test_validate_names_the_key_and_the_allowed_range(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*override.split()))
    assert message in str(err.value)


def test_activation_names_match_the_model_table():
    from dltrain.models.layers import ACTIVATIONS as TORCH_ACTIVATIONS

    assert set(ACTIVATIONS) == set(TORCH_ACTIVATIONS)


def test_monitor_names_match_the_metric_table():
    from dltrain.losses import METRICS

    assert set(MONITORS) == {"auto", "val/loss", *(f"val/{m}" for ms in METRICS.values()
                                                   for m in ms)}


def test_pooling_names_match_the_model_table():
    from dltrain.models.layers import POOLS

    assert set(POOLINGS) == {*POOLS, "none"}


@pytest.mark.parametrize(
    ("overrides", "multirun", "message"),
    [
        (["optim.lrr=0.1"], False, "optim.lrr is not a key of the config; did you mean optim.lr?"),
        (["trainr.seed=3"], False, "did you mean trainer.seed?"),
        (["model=mlpp"], False, "model=mlpp: there is no such option in group model; "
                                "did you mean model=mlp?"),
        (["reg=[dropot]"], False, "did you mean reg=dropout?"),
        (["optim=sgd", "optim.betas=[0.9,0.9]"], False, "optim has: name, lr, momentum"),
        (["optim.lr=0.1,0.2"], False, "add -m to run one job per value"),
        (["optim.lr=0.1,-2"], True, "optim.lr=-2 must be a number > 0"),
        (["model=mlp,nope"], True, "model=nope: there is no such option in group model"),
        (["model.width=[1,2"], False, "Cannot read the overrides"),
    ],
)
def test_preflight_answers_in_one_sentence(overrides, multirun, message):
    with pytest.raises(ConfigError) as err:
        preflight(overrides, multirun)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_preflight_accepts_good_sweeps():
    preflight(["optim.lr=0.001,0.01", "model=mlp", "trainer=smoke", "reg=[dropout,l2]"], True)


@pytest.fixture
def composed(monkeypatch) -> list[list[str]]:
    """The override lists that Hydra's compose is called with, in order."""
    import hydra

    calls: list[list[str]] = []
    compose = hydra.compose

    def counting(config_name, overrides, return_hydra_config=False):
        calls.append(list(overrides))
        return compose(config_name, overrides=overrides, return_hydra_config=return_hydra_config)

    monkeypatch.setattr(hydra, "compose", counting)
    return calls


def test_preflight_composes_a_single_run_once(composed):
    preflight(["trainer=smoke", "optim=sgd", "optim.lr=0.05"], False)
    assert composed == [["trainer=smoke", "optim=sgd", "optim.lr=0.05"]]
    # the one composition is validated (its hydra node left out, as the job sees it)
    composed.clear()
    with pytest.raises(ConfigError) as err:
        preflight(["optim=sgd", "optim.lr=-1"], False)
    assert str(err.value) == "optim.lr=-1 must be a number > 0."
    assert composed == [["optim=sgd", "optim.lr=-1"]]
    composed.clear()
    preflight(["trainer=smoke"], True)  # -m without a sweep: one job, one composition
    assert composed == [["trainer=smoke"]]


def test_preflight_composes_only_what_differs_in_more_than_values(composed):
    preflight(["trainer.seed=0,1,2", "optim.lr=0.1,0.2", "model=mlp,cnn"], True)
    # the base (no sweeps), the first variant, and the variant that chooses another model
    assert composed == [[], ["trainer.seed=0", "optim.lr=0.1", "model=mlp"],
                        ["trainer.seed=0", "optim.lr=0.1", "model=cnn"]]
    with pytest.raises(ConfigError, match=r"trainer\.seed=-1 must be a whole number >= 0"):
        preflight(["trainer.seed=0,1,-1", "optim.lr=0.1,0.2"], True)


def test_list_shows_every_option_with_a_description(capsys):
    assert list_options([]) == 0
    out = capsys.readouterr().out
    assert "data  (default: glyphs)" in out
    lines = {line.split()[1] if line.startswith("  *") else line.split()[0]: line
             for line in out.splitlines() if line.startswith("  ")}
    for option in ("glyphs", "moons", "sine", "mlp", "adam", "sgd", "cosine", "smoke", "dropout"):
        assert option in lines and len(lines[option].split()) > 3  # name plus a description
    assert lines["glyphs"].startswith("  *")  # the default is marked


def test_list_of_one_group_and_of_a_typo(capsys):
    assert list_options(["optim"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("optim") and "data" not in out
    with pytest.raises(ConfigError, match="did you mean optim"):
        list_options(["optm"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=mnist", "data.in_memory=yes"], "data.in_memory=yes must be true or false"),
        (["data=mnist", "data.workers=-1"], "data.workers=-1 must be a whole number >= 0"),
        (["data=mnist", "data.download=1"], "data.download=1 must be true or false"),
        (["data=mnist", "data.mirror=example.org/mnist"], "must be null or a base URL"),
        (["data=mnist", "data.root=''"], "data.root= must be a path"),
        (["data=text", "data.block_size=0"], "data.block_size=0 must be a whole number >= 1"),
        (["data=text", "data.test_fraction=0"], "data.test_fraction=0 must be a number in (0, 1)"),
        (["data=mnist", "data.augment=5"], "data.augment=5 must be null or set by reg=[augment]"),
        (["data=mnist", "reg=[augment]", "data.augment.flip=maybe"],
         "data.augment.flip=maybe must be auto, true or false"),
        (["data=mnist", "reg=[augment]", "data.augment.rotate=270"],
         "data.augment.rotate=270 must be a number in [0, 180]"),
        (["data=cifar10", "reg=[augment]", "data.augment.crop=-2"],
         "data.augment.crop=-2 must be a whole number >= 0"),
    ],
)
def test_data_keys_of_real_data_are_validated(make_cfg, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert message in str(err.value)


@pytest.mark.parametrize("name", ["glyphs", "mnist", "fashion_mnist", "cifar10", "text",
                                  "tiny_shakespeare", "moons"])
def test_every_data_option_takes_the_augment_preset_under_struct_mode(make_cfg, name):
    cfg = make_cfg(f"data={name}", "reg=[augment]", "data.augment.noise=0.1")
    validate(cfg)
    assert cfg.data.augment.flip == "auto" and cfg.data.augment.noise == 0.1
    assert make_cfg(f"data={name}").data.augment is None
