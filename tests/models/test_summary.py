"""The model summary: a row per layer with its measured output shape and its parameters."""

import torch
from rich.console import Console

from dltrain.models import build_model
from dltrain.models.summary import dummy_batch, layer_table
from dltrain.targets import plain
from tests.models.test_models import SPECS


def rendered(table) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def cells(table) -> dict[str, list[str]]:
    return {col.header: list(col.cells) for col in table.columns}


def test_cnn_rows_have_measured_shapes_and_counts(make_cfg):
    cfg = make_cfg("model=cnn")
    model = build_model(plain(cfg.model), plain(cfg.init), SPECS["image"])
    table = cells(layer_table(model, SPECS["image"]))
    rows = dict(zip(table["layer"], zip(table["type"], table["output shape"], table["params"],
                                        strict=True), strict=True))
    assert rows["features.0.conv"] == ("Conv2d", "16 x 28 x 28", "160")  # 16 * (9 + 1)
    assert rows["features.1.pool"] == ("MaxPool2d", "32 x 7 x 7", "0")
    assert rows["flatten"][1] == "1568"
    assert rows["head"] == ("Linear", "10", f"{1568 * 10 + 10:,}")
    total = sum(p.numel() for p in model.parameters())
    assert table["layer"][-1] == "total" and table["params"][-1] == f"{total:,}"


def test_rows_add_up_to_the_total_and_leave_out_placeholders(make_cfg):
    for name, kind in (("transformer", "tokens"), ("resnet", "points"), ("transformer", "image"),
                       ("resnet", "image"), ("mlp", "points")):
        cfg = make_cfg(f"model={name}", "model.readout=cls" if name == "transformer" else
                       "model.dropout=0.0")
        model = build_model(plain(cfg.model), plain(cfg.init), SPECS[kind])
        table = cells(layer_table(model, SPECS[kind]))
        counts = [int(c.replace(",", "")) for c in table["params"]]
        assert sum(counts[:-1]) == counts[-1] == sum(p.numel() for p in model.parameters())
        assert "Identity" not in table["type"]


def test_transformer_rows_for_text(make_cfg):
    cfg = make_cfg("model=transformer")
    model = build_model(plain(cfg.model), plain(cfg.init), SPECS["tokens"])
    text = rendered(layer_table(model, SPECS["tokens"]))
    assert "blocks.1.attn" in text and "SelfAttention" in text
    assert "16 x 30" in text  # the head: a distribution over 30 tokens at each of 16 positions


def test_the_summary_leaves_the_model_and_the_random_state_alone(make_cfg):
    cfg = make_cfg("model=resnet")
    model = build_model(plain(cfg.model), plain(cfg.init), SPECS["image"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    layer_table(model, SPECS["image"])
    assert model.training and torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dummy_batch_has_the_input_shape_and_type():
    assert dummy_batch(SPECS["tokens"], 3).dtype == torch.long
    assert dummy_batch(SPECS["signal"], 3).shape == (3, 3, 20)
