import signal

import pytest
import torch

from dltrain.errors import ConfigError
from dltrain.runtime import resolve_device
from dltrain.training.signals import StopRequest


def test_first_signal_requests_a_stop_and_a_second_sigint_stops_at_once():
    stop = StopRequest()
    with stop.on_signals():
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested and stop.signal == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_handlers_are_restored_afterwards():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest().on_signals():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_is_a_config_error():
    with pytest.raises(ConfigError, match=r"trainer\.device=cuda:1 is not available"):
        resolve_device("cuda:1")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "mps")
