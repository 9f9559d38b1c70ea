"""The TensorBoard sink: what TensorBoard reads back from its event file, HParams records (how a
run ended, which runs TensorBoard groups together)."""

from __future__ import annotations

import pytest
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from dltrain.log.tensorboard import hparams_summaries


def plugin_data(summary) -> plugin_data_pb2.HParamsPluginData:
    (value,) = summary.value
    return plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)


def test_the_session_group_is_the_one_the_caller_names():
    hparams = {"optim.lr": 0.01}
    named = plugin_data(hparams_summaries(hparams, "completed", "abc")[0]).session_start_info
    assert named.group_name == "abc"
    alone = plugin_data(hparams_summaries(hparams, "completed", None)[0]).session_start_info
    assert alone.group_name == ""  # TensorBoard then makes the run a group of its own


@pytest.mark.parametrize(("status", "end"), [
    ("completed", api_pb2.STATUS_SUCCESS),
    ("failed", api_pb2.STATUS_FAILURE),
    ("diverged", api_pb2.STATUS_FAILURE),
    ("interrupted", None),  # not ended: `dltrain resume` writes the end into the same run
])
def test_hparams_records_say_how_the_run_ended(status, end):
    summaries = hparams_summaries({"optim.lr": 0.01, "model.name": "mlp", "trainer.compile": False,
                                   "model.hidden": [64, 32]}, status, None)
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


def test_tensorboard_reads_back_what_the_logger_wrote_in_the_callers_thread(tmp_path):
    import threading

    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dltrain.log.tensorboard import TensorBoardLogger

    threads = threading.active_count()
    loggers = [TensorBoardLogger(tmp_path / str(i)) for i in range(8)]
    assert threading.active_count() == threads  # no writer thread per run
    logger = loggers[0]
    logger.log_metrics({"train/loss": 0.5, "val/accuracy": 0.75}, 10)
    logger.log_metrics({"train/loss": 0.25}, 20)
    logger.log_histogram("acts/layer1", np.array([-1.0, 0.0, 0.5, 0.5, 2.0]), 20)
    logger.log_image("pictures/array", np.full((4, 6, 3), 0.5), 20)
    logger.log_text("samples", "**hello**", 20)
    for each in loggers:
        each.close()

    acc = EventAccumulator(str(tmp_path / "0"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(10, 0.5), (20, 0.25)]
    assert [(e.step, e.value) for e in acc.Scalars("val/accuracy")] == [(10, 0.75)]
    (hist,) = acc.Histograms("acts/layer1")
    assert (hist.step, hist.histogram_value.num, hist.histogram_value.sum) == (20, 5, 2.0)
    assert (hist.histogram_value.min, hist.histogram_value.max) == (-1.0, 2.0)
    (image,) = acc.Images("pictures/array")
    assert (image.step, image.width, image.height) == (20, 6, 4)
    (text,) = acc.Tensors("samples/text_summary")
    assert text.tensor_proto.string_val == [b"**hello**"]


def test_a_resumed_run_purges_what_was_logged_after_its_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dltrain.log.tensorboard import TensorBoardLogger

    first = TensorBoardLogger(tmp_path)
    for step in (10, 20, 30):
        first.log_metrics({"train/loss": step / 100}, step)
    first.close()
    resumed = TensorBoardLogger(tmp_path, purge_step=20)  # its checkpoint was at step 10
    resumed.log_metrics({"train/loss": 0.9}, 20)
    resumed.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("train/loss")] == [
        (10, 0.1), (20, 0.9)]
