"""Shared helpers: atomic files, progress lines, and the torchvision import on CPU torch."""
import pytest

from common.files import atomic_directory, atomic_path, write_json
from common.progress import progress


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
