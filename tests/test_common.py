"""Shared helpers: atomic files, progress lines, and the torchvision import on CPU torch."""
import hashlib
import os
import stat

import pytest

from common.files import atomic_directory, atomic_path, write_json, write_text
from common.progress import progress
from datasets.download import Downloader, Remote


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"acc": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"acc": 0.')
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip() == '{\n  "acc": 0.5\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_directory_publishes_whole_or_not_at_all(tmp_path):
    target = tmp_path / "digits"
    with pytest.raises(ValueError):
        with atomic_directory(target) as tmp:
            (tmp / "x.npy").write_bytes(b"half")
            raise ValueError("checksum mismatch")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "x.npy").write_bytes(b"whole")
    assert (target / "x.npy").read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=["umask022", "umask027", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path):
    return oct(stat.S_IMODE(path.stat().st_mode))


def test_atomic_path_honours_the_umask(tmp_path, umask):
    """A shared results directory stays readable to colleagues: not mkstemp's 0600 kept by the rename."""
    write_text(tmp_path / "report.html", "<html></html>")
    assert mode(tmp_path / "report.html") == oct(0o666 & ~umask)


def test_atomic_directory_honours_the_umask(tmp_path, umask):
    with atomic_directory(tmp_path / "digits") as tmp:
        (tmp / "x.npy").write_bytes(b"whole")
    assert mode(tmp_path / "digits") == oct(0o777 & ~umask)
    assert mode(tmp_path / "digits" / "x.npy") == oct(0o666 & ~umask)


def test_downloaded_file_honours_the_umask(tmp_path, umask):
    mirror = tmp_path / "mirror"
    (mirror / "group").mkdir(parents=True)
    (mirror / "group" / "source.bin").write_bytes(b"source bytes")
    checksums = {"group/source.bin": f"sha256:{hashlib.sha256(b'source bytes').hexdigest()}"}
    downloader = Downloader(tmp_path / "cache", mirror=mirror.as_uri(), checksums=checksums,
                            lock_file=tmp_path / "checksums.lock")
    fetched = downloader.fetch(Remote("group/source.bin", ("https://example.invalid/source.bin",)))
    assert fetched.path == tmp_path / "cache" / "group" / "source.bin"
    assert mode(fetched.path) == oct(0o666 & ~umask)


def test_progress_prints_a_few_plain_lines_off_a_terminal(capsys):
    assert list(progress(range(1000), desc="epochs")) == list(range(1000))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("epochs: 100/1000") and lines[-1].startswith("epochs: 1000/1000")


def test_torchvision_imports_on_cpu_torch():
    from common.torchvision_compat import import_torchvision
    torchvision = import_torchvision()
    import torch
    from torchvision.transforms import v2
    flipped = v2.RandomHorizontalFlip(p=1.0)(torch.arange(6.0).reshape(1, 2, 3))
    assert torch.equal(flipped, torch.tensor([[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]))
    assert torchvision.__version__.startswith("0.28.0")
