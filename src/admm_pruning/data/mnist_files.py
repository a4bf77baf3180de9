"""The official MNIST files: where they are looked for, how they are checked (md5, IDX header,
length) and fetched from torchvision's mirrors. Every failure is a DataError naming the file."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

from admm_pruning.foundations.errors import DataError

# md5 of the official files, gzipped (as torchvision downloads and checks them) and uncompressed
# (as a DATA_DIR may hold the training set); docs/reference.md, section 5, lists both.
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def candidate_dirs(root: Path) -> list[Path]:
    # The shared folder's layout (<root>/mnist) and torchvision's (<root>/MNIST/raw).
    return [root / "mnist", root / "MNIST" / "raw", root]


def find_file(root: Path, stem: str) -> Path | None:
    for d in candidate_dirs(root):
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _read_idx(path: Path, verify_md5: bool = True) -> torch.Tensor:
    """One IDX file, checked against the official md5 (gzipped or not) unless ``verify_md5`` is
    off, which only generated test data needs: a real run never reads unchecked bytes."""
    raw = path.read_bytes()
    if verify_md5:
        expected = MD5[path.name]
        got = hashlib.md5(raw).hexdigest()
        if got != expected:
            raise DataError(f"{path}: md5 {got} does not match the official {expected}; "
                            "the file is corrupt, truncated or not MNIST. Delete it and fetch it again.")
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated ({data.size} values, header says {dims})")
    return torch.from_numpy(data.copy()).view(*dims)


def missing_message(root: Path, missing: list[str], protocol: str, download_error: str | None) -> str:
    """Which files, where they were looked for, what happened to the download, and what to do."""
    searched = ", ".join(str(d) for d in candidate_dirs(root))
    fetched = (f"the download through torchvision failed ({download_error})" if download_error
               else "no download was tried (data.download=false)")
    msg = (f"MNIST files missing for data={protocol}: {', '.join(m + '.gz' for m in missing)} "
           f"not found under DATA_DIR={root} (searched {searched}), and {fetched}. Put the official "
           f"files (gzipped or not) in {root / 'mnist'}, or point DATA_DIR at the folder that holds them.")
    if protocol == "mnist":
        msg += " Without the 60k training images, DATA=mnist10k (make) / data=mnist10k (Hydra) needs only the test set."
    return msg


def _fetch(raw: Path, filename: str) -> None:
    """One official file from torchvision's mirrors, checked against its md5 and unpacked."""
    from urllib.error import URLError

    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_and_extract_archive

    errors = []
    for mirror in MNIST.mirrors:
        try:
            download_and_extract_archive(mirror + filename, download_root=str(raw), filename=filename,
                                         md5=MD5[filename])
            return
        except (RuntimeError, URLError, OSError) as exc:
            errors.append(f"{mirror}: {exc}")
    raise DataError(f"{filename}: " + "; ".join(errors))


def download_files(root: Path, stems: list[str]) -> None:
    """The files named by ``stems`` (mnist10k needs only the test set) from torchvision's mirrors
    into <root>/MNIST/raw. A failed download leaves no file or folder behind."""
    import socket

    raw = root / "MNIST" / "raw"
    created = [d for d in (root, root / "MNIST", raw) if not d.exists()]
    raw.mkdir(parents=True, exist_ok=True)
    before = set(raw.iterdir())
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        for stem in stems:
            _fetch(raw, stem + ".gz")
    except Exception:
        for f in set(raw.iterdir()) - before:
            f.unlink()
        for d in reversed(created):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    finally:
        socket.setdefaulttimeout(old)


def load_idx_pair(root: Path, stems: tuple[str, str], verify_md5: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (_read_idx(find_file(root, s), verify_md5) for s in stems)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels")
    return images, labels
