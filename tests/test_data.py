import gzip

import pytest
import torch

from admm_pruning.data import DataError, MNISTData


def test_mnist10k_protocol_split(shared_data_dir):
    d = MNISTData("mnist10k", str(shared_data_dir), split_seed=0, val_size=1000).setup()
    assert (len(d.train), len(d.val), len(d.test)) == (6000, 1000, 3000)
    assert d.train.x.dtype == torch.float32 and d.train.x.shape[1:] == (1, 28, 28)
    # the README's recipe, reproduced independently
    perm = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    from admm_pruning.data import TEST_FILES, load_idx_pair
    _, labels = load_idx_pair(shared_data_dir, TEST_FILES)
    assert torch.equal(d.test.y, labels[perm[7000:]].long())
    assert torch.equal(d.val.y, labels[perm[6000:7000]].long())
    assert abs(float(d.train.x.mean())) < 0.1  # normalised with the MNIST mean/std
    other = MNISTData("mnist10k", str(shared_data_dir), split_seed=1, val_size=1000).setup()
    assert not torch.equal(other.test.y, d.test.y)


def test_loader_batches_cover_the_epoch_once_and_shuffle_by_epoch(fake_data_dir):
    d = MNISTData("mnist", str(fake_data_dir), val_size=200).setup()
    loader = d.loader("train", 64, shuffle=True, seed=3)
    seen = torch.cat([y for _, y in loader])
    assert len(seen) == len(d.train) and len(loader) == -(-len(d.train) // 64)
    first = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    again = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    assert torch.equal(first, again)  # same epoch, same order: a resume replays it
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([x[:, 0, 0, 0] for x, _ in loader]))


def test_missing_data_fails_with_directory_files_and_alternative(tmp_path):
    with pytest.raises(DataError) as err:
        MNISTData("mnist", str(tmp_path), download=False).setup()
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg and "DATA=mnist10k" in msg
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        MNISTData("mnist10k", str(tmp_path)).setup()


def test_corrupt_gz_is_refused_by_checksum(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match="md5"):
        MNISTData("mnist10k", str(tmp_path)).setup()
