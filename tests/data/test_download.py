"""Downloads against a local HTTP server on 127.0.0.1: good checksum, bad checksum, no server."""

import hashlib
import time

import pytest
import torch

from dltrain.data import SOURCES, build_data
from dltrain.data.download import Remote, Unreachable, fetch
from dltrain.data.text import TextFile
from dltrain.data.vision import IDX_FILES, MNIST, IdxFiles, ImageFiles
from dltrain.errors import ConfigError
from dltrain.targets import plain
from tests.conftest import run_cli
from tests.data.files import dead_url, fake_mnist, md5, serve


def remote_for(path, algorithm="md5", name=None):
    digest = hashlib.new(algorithm, path.read_bytes()).hexdigest()
    return Remote(name or path.name, (), f"{algorithm}:{digest}")


def test_a_file_with_the_published_checksum_is_kept(tmp_path):
    served, dest = tmp_path / "served", tmp_path / "dest"
    served.mkdir()
    (served / "a.bin").write_bytes(bytes(range(256)) * 1000)
    remote = remote_for(served / "a.bin", "sha256")
    with serve(served) as url:
        path = fetch(remote, dest, mirror=url)
    assert path == dest / "a.bin" and path.read_bytes() == (served / "a.bin").read_bytes()
    assert [p.name for p in dest.iterdir()] == ["a.bin"]  # no temporary file left behind


def test_a_file_with_another_checksum_is_not_kept(tmp_path):
    served, dest = tmp_path / "served", tmp_path / "dest"
    served.mkdir()
    (served / "a.bin").write_bytes(b"not what was published")
    remote = Remote("a.bin", (), "md5:" + "0" * 32)
    with serve(served) as url, pytest.raises(ConfigError) as err:
        fetch(remote, dest, mirror=url)
    message = str(err.value)
    assert "a.bin is corrupt and was not kept" in message
    assert f"not the published {'0' * 32}" in message
    assert not dest.exists() or not list(dest.iterdir())


def test_no_server_is_unreachable_at_once(tmp_path):
    started = time.perf_counter()
    with pytest.raises(Unreachable, match="Connection refused"):
        fetch(Remote("a.bin", (), "md5:" + "0" * 32), tmp_path, mirror=dead_url())
    assert time.perf_counter() - started < 5
    assert not list(tmp_path.iterdir())


def test_the_next_url_is_tried_when_one_fails(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.bin").write_bytes(b"payload")
    remote = remote_for(served / "a.bin")
    with serve(served) as url:
        remote = Remote("a.bin", (url + "missing/a.bin", url + "a.bin"), remote.checksum)
        assert fetch(remote, tmp_path / "dest").read_bytes() == b"payload"


# ---------------------------------------------------------------------------------------------
# Through build_data: what a user sees


def fake_mnist_source(served):
    """MNIST as SOURCES knows it, but with the checksums of the fake files being served."""
    return ImageFiles(IdxFiles("MNIST", MNIST.files.mirrors,
                               tuple(md5(served / f"{stem}.gz") for stem in IDX_FILES)),
                      MNIST.class_names, MNIST.mirror_safe)


def test_missing_mnist_files_are_downloaded_into_torchvisions_layout(make_cfg, tmp_path,
                                                                     monkeypatch):
    served, root = tmp_path / "served", tmp_path / "root"
    arrays = fake_mnist(served, n_train=60, n_test=20, gz=True)
    monkeypatch.setitem(SOURCES, "mnist", fake_mnist_source(served))
    with serve(served) as url:
        data = build_data(plain(make_cfg("data=mnist", f"data.root={root}",
                                         f"data.mirror={url}").data))
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(
        f"{stem}.gz" for stem in IDX_FILES)
    assert torch.equal(data.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # the second time, the files are there: no server needed
    again = build_data(plain(make_cfg("data=mnist", f"data.root={root}",
                                      f"data.mirror={dead_url()}").data))
    assert torch.equal(again.test.x, data.test.x)


def test_only_the_missing_files_are_downloaded(make_cfg, tmp_path, monkeypatch):
    served, root = tmp_path / "served", tmp_path / "root"
    fake_mnist(served, n_train=60, n_test=20, gz=True)
    fake_mnist(root, n_train=60, n_test=20, gz=False)
    (root / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setitem(SOURCES, "mnist", fake_mnist_source(served))
    with serve(served) as url:
        build_data(plain(make_cfg("data=mnist", f"data.root={root}", f"data.mirror={url}").data))
    assert [p.name for p in (root / "MNIST" / "raw").iterdir()] == ["t10k-labels-idx1-ubyte.gz"]


def test_served_files_with_other_checksums_are_refused(make_cfg, tmp_path):
    served, root = tmp_path / "served", tmp_path / "root"
    fake_mnist(served, n_train=60, n_test=20)  # not the real MNIST: its MD5s are not published
    with serve(served) as url, pytest.raises(ConfigError) as err:
        build_data(plain(make_cfg("data=mnist", f"data.root={root}", f"data.mirror={url}").data))
    assert "train-images-idx3-ubyte.gz is corrupt and was not kept" in str(err.value)
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in str(err.value)  # the published MD5
    assert not (root / "MNIST" / "raw").exists() or not list((root / "MNIST" / "raw").iterdir())


def test_no_network_names_the_folder_and_the_files_within_seconds(make_cfg, tmp_path):
    started = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}",
                                  f"data.mirror={dead_url()}").data))
    assert time.perf_counter() - started < 5
    message = str(err.value)
    assert f"in {tmp_path.resolve() / 'MNIST' / 'raw'} or directly in {tmp_path.resolve()}" \
        in message
    for stem in IDX_FILES:
        assert f"{stem}.gz" in message
    assert "downloading them failed" in message and "Connection refused" in message
    assert not (tmp_path / "MNIST").exists()  # nothing half-made left behind


def test_download_off_says_so_without_trying(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"downloading is off \(data.download=false\)") as err:
        build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path}",
                                  "data.download=false").data))
    assert "cifar-10-python.tar.gz" in str(err.value)
    assert "data_batch_1, data_batch_2" in str(err.value)  # or the extracted batches


def test_tiny_shakespeare_is_downloaded_once_with_its_checksum(make_cfg, tmp_path, monkeypatch):
    served, root = tmp_path / "served", tmp_path / "root"
    served.mkdir()
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 200
    (served / "tiny_shakespeare.txt").write_text(text)
    monkeypatch.setitem(SOURCES, "tiny_shakespeare",
                        TextFile(remote_for(served / "tiny_shakespeare.txt", "sha256")))
    with serve(served) as url:
        data = build_data(plain(make_cfg("data=tiny_shakespeare", f"data.root={root}",
                                         f"data.mirror={url}", "data.block_size=32").data))
    assert (root / "tiny_shakespeare.txt").read_text() == text
    assert data.spec.name == "tiny_shakespeare" and data.spec.vocab_size == len(set(text)) + 1


def test_tiny_shakespeare_without_network_names_its_file(make_cfg, tmp_path):
    with pytest.raises(ConfigError) as err:
        build_data(plain(make_cfg("data=tiny_shakespeare", f"data.root={tmp_path}",
                                  f"data.mirror={dead_url()}").data))
    assert f"needs tiny_shakespeare.txt in {tmp_path.resolve()}" in str(err.value)


@pytest.mark.e2e
def test_the_command_exits_2_within_seconds_naming_folder_and_files(tmp_path):
    started = time.perf_counter()
    proc = run_cli("data=mnist", f"data.root={tmp_path / 'data'}", f"data.mirror={dead_url()}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=120)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert str((tmp_path / "data" / "MNIST" / "raw").resolve()) in proc.stderr
    assert "train-images-idx3-ubyte.gz" in proc.stderr
    assert elapsed < 60  # the interpreter and torch's import, mostly; the refusal is instant


@pytest.mark.e2e
def test_the_command_exits_2_naming_a_truncated_file(tmp_path):
    fake_mnist(tmp_path / "data", n_train=50, n_test=10, gz=True)
    path = tmp_path / "data" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:300])
    proc = run_cli("data=mnist", f"data.root={tmp_path / 'data'}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path} is truncated or corrupt" in proc.stderr
