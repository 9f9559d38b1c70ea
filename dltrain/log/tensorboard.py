"""TensorBoard event files: a run's scalars and HParams record in RUN_DIR/tb, and the sweep-level
run (report plots and text) in SWEEP_DIR/tb.

HParams. Each run writes its hyperparameters (a session start, in the session group its caller
names: dltrain.hparams puts runs that differ only in the seed together) and how it ended (a
session end), and no experiment summary of its own: TensorBoard then builds the HParams table
from all runs together, every hyperparameter any run has, and as metrics the final value of
every scalar tag the runs log (test/..., val/...).
An experiment summary per run would be taken from one run, arbitrarily chosen, for all of them:
its hyperparameters and metrics only, columns left empty for every run unlike it.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dltrain.hparams import hparam_value
from dltrain.log import NullLogger

# How a run ended, as the HParams plugin's session status. An interrupted run has no end yet:
# `dltrain resume` continues the same TensorBoard run and writes its end.
_SESSION_STATUS = {"completed": "STATUS_SUCCESS", "failed": "STATUS_FAILURE",
                   "diverged": "STATUS_FAILURE"}


def hparams_summaries(hparams: Mapping[str, Any], status: str, group: str | None
                      ) -> list[Any]:
    """Summary protos of the HParams plugin: the session start and, once a run has ended, its
    end (torch-free; tensorboard's own protos).

    `group` is the run's session group, decided by the caller (dltrain.hparams.session_group
    puts runs that differ only in the seed together); None leaves the run a group of its own.
    """
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    if group is not None:
        start.group_name = group
    for name, value in sorted(hparams.items()):
        value = hparam_value(value)
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = value
    infos = [(metadata.SESSION_START_INFO_TAG,
              plugin_data_pb2.HParamsPluginData(session_start_info=start))]
    if status in _SESSION_STATUS:
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(_SESSION_STATUS[status]),
                                             end_time_secs=time.time())
        infos.append((metadata.SESSION_END_INFO_TAG,
                      plugin_data_pb2.HParamsPluginData(session_end_info=end)))
    summaries = []
    for tag, data in infos:
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data),
                          tensor=metadata.NULL_TENSOR)
        summaries.append(summary)
    return summaries


class EventFile:
    """An event file, written in the caller's thread.

    tensorboard's EventFileWriter (torch's SummaryWriter uses it) hands every event to a
    thread of its own. A run logs a few events per log point, where that costs nothing; a
    vectorised stack logs for 64 runs at every point, and 64 writer threads woken for every
    event, all wanting the GIL the training thread holds, made the logging cost a third of
    the stack's time. Here an event is serialised, framed by tensorboard's RecordWriter
    and appended to a buffered file, flushed every `flush_secs` seconds and on close.
    """

    def __init__(self, log_dir: Path, flush_secs: float = 10.0) -> None:
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        # tensorboard's naming, which TensorBoard reads in the order of the names; the
        # counter padded, so that file 10 of a second does not come before file 9
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_FILE_NUMBERS):06d}")
        self.path = log_dir / name
        self.file = open(self.path, "wb")  # noqa: SIM115 (lives with the run)
        self.records = RecordWriter(self.file)
        self.flush_secs = flush_secs
        self.flush_at = 0.0  # the first event is on disk at once: the run shows up
        self.add(event_pb2.Event(file_version="brain.Event:2"))

    def add(self, event: Any, step: int | None = None) -> None:
        """Append an event (tensorboard's Event proto), stamped with the time and `step`."""
        event.wall_time = time.time()
        if step is not None:
            event.step = int(step)
        self.records.write(event.SerializeToString())
        if time.monotonic() >= self.flush_at:
            self.flush()

    def add_summary(self, summary: Any, step: int | None = None) -> None:
        from tensorboard.compat.proto import event_pb2

        self.add(event_pb2.Event(summary=summary), step)

    def flush(self) -> None:
        self.file.flush()
        self.flush_at = time.monotonic() + self.flush_secs

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


_FILE_NUMBERS = itertools.count()  # event files this process opened (tensorboard's counter)


class TensorBoardLogger(NullLogger):
    """A run's event file. `group` is its HParams session group, told by the caller (which
    knows what makes runs one configuration); None: the run is a group of its own."""

    def __init__(self, log_dir: Path, purge_step: int | None = None,
                 group: str | None = None, flush_secs: float = 10.0) -> None:
        from tensorboard.compat.proto import event_pb2

        self.group = group
        self.events = EventFile(log_dir, flush_secs)
        if purge_step is not None:
            # a resumed run discards what an earlier attempt logged after its checkpoint, so
            # the curves continue without a doubled stretch (SummaryWriter's purge_step)
            self.events.add(event_pb2.Event(file_version="brain.Event:2"), purge_step)
            self.events.add(event_pb2.Event(session_log=event_pb2.SessionLog(
                status=event_pb2.SessionLog.START)), purge_step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One event holding every value of the point (add_scalar would write one each)."""
        from tensorboard.compat.proto import summary_pb2

        self.events.add_summary(summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in metrics.items()]), step)

    def log_histogram(self, tag: str, values: Any, step: int) -> None:
        from torch.utils.tensorboard.summary import histogram

        self.events.add_summary(histogram(tag, values, _histogram_edges()), step)

    def log_image(self, tag: str, image: bytes | Any, step: int) -> None:
        if isinstance(image, bytes):  # an encoded PNG, e.g. a matplotlib figure
            from tensorboard.compat.proto import summary_pb2

            width, height = _png_size(image)
            summary = summary_pb2.Summary()
            summary.value.add(tag=tag, image=summary_pb2.Summary.Image(
                height=height, width=width, colorspace=4, encoded_image_string=image))
        else:
            from torch.utils.tensorboard.summary import image as image_summary

            summary = image_summary(tag, image, dataformats="HWC")
        self.events.add_summary(summary, step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        from torch.utils.tensorboard.summary import text as text_summary

        self.events.add_summary(text_summary(tag, text), step)

    def log_hparams(self, hparams: Mapping[str, Any], status: str) -> None:
        """The run's HParams records, in its own event file (not a sub-run)."""
        for summary in hparams_summaries(hparams, status, self.group):
            self.events.add_summary(summary)
        self.events.flush()

    def close(self) -> None:
        self.events.close()


@functools.cache
def _histogram_edges() -> list[float]:
    """SummaryWriter's default histogram buckets (TensorFlow's): edges at +-1e-12 * 1.1^k up
    to 1e20, and 0, so that distributions look as TensorBoard users know them."""
    edges, v = [], 1e-12
    while v < 1e20:
        edges.append(v)
        v *= 1.1
    return [-e for e in reversed(edges)] + [0.0] + edges


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    return struct.unpack(">II", png[16:24])


def write_sweep_run(log_dir: Path, images: Mapping[str, bytes], texts: Mapping[str, str]
                    ) -> None:
    """A TensorBoard run of the sweep itself: PNG images and markdown texts at step 0.

    Torch-free, so that `dltrain report` needs none. Replaces what an earlier report wrote.
    """
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.plugins.text import plugin_data_pb2 as text_pb2

    log_dir = Path(log_dir)
    for old in log_dir.glob("events.out.tfevents.*"):
        old.unlink()
    log_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_pb2.Summary()
    for tag, png in images.items():
        width, height = _png_size(png)
        summary.value.add(tag=tag, image=summary_pb2.Summary.Image(
            height=height, width=width, colorspace=4, encoded_image_string=png))
    text_meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name="text", content=text_pb2.TextPluginData(version=0).SerializeToString()))
    for tag, text in texts.items():
        tensor = tensor_pb2.TensorProto(
            dtype="DT_STRING", string_val=[text.encode("utf-8")],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        summary.value.add(tag=tag, metadata=text_meta, tensor=tensor)
    events = EventFile(log_dir)
    try:
        events.add_summary(summary, 0)
    finally:
        events.close()
