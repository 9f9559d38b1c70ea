"""One torch thread for these tests: their models are tiny, and on a busy machine two threads
per process spend more time waiting for each other than computing."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
