"""HParams records: how a run ended, and which runs TensorBoard groups together."""

from __future__ import annotations

import pytest
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from dltrain.log.tensorboard import hparams_summaries, session_group


def plugin_data(summary) -> plugin_data_pb2.HParamsPluginData:
    (value,) = summary.value
    return plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)


def test_runs_that_differ_only_in_the_seed_share_a_session_group():
    run = {"optim.lr": 0.01, "trainer.seed": 0, "model.hidden": "None"}
    assert session_group(run) == session_group({**run, "trainer.seed": 7})
    assert session_group(run) != session_group({**run, "optim.lr": 0.1})


@pytest.mark.parametrize(("status", "end"), [
    ("completed", api_pb2.STATUS_SUCCESS),
    ("failed", api_pb2.STATUS_FAILURE),
    ("diverged", api_pb2.STATUS_FAILURE),
    ("interrupted", None),  # not ended: `dltrain resume` writes the end into the same run
])
def test_hparams_records_say_how_the_run_ended(status, end):
    summaries = hparams_summaries({"optim.lr": 0.01, "model.name": "mlp", "trainer.compile": False,
                                   "model.hidden": [64, 32]}, status)
    start = plugin_data(summaries[0]).session_start_info
    assert summaries[0].value[0].tag == metadata.SESSION_START_INFO_TAG
    assert start.hparams["optim.lr"].number_value == 0.01
    assert start.hparams["model.name"].string_value == "mlp"
    assert start.hparams["trainer.compile"].HasField("bool_value")
    assert start.hparams["model.hidden"].string_value == "[64, 32]"
    if end is None:
        assert len(summaries) == 1
    else:
        assert summaries[1].value[0].tag == metadata.SESSION_END_INFO_TAG
        assert plugin_data(summaries[1]).session_end_info.status == end


def test_a_diverged_run_still_has_its_hparams_record(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dltrain.run import run

    result = run(make_cfg("data=sine", "optim=sgd", "optim.lr=1e6", "trainer=smoke"), tmp_path)
    assert result.status == "diverged"
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    end = plugin_data_pb2.HParamsPluginData.FromString(
        content[metadata.SESSION_END_INFO_TAG]).session_end_info
    assert end.status == api_pb2.STATUS_FAILURE
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content[metadata.SESSION_START_INFO_TAG]).session_start_info
    assert start.hparams["optim.lr"].number_value == 1e6
