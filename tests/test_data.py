import gzip

import pytest
import torch

from admm_pruning.data.mnist import MNISTData
from admm_pruning.foundations.errors import DataError


def test_mnist10k_protocol_split(shared_data_dir):
    d = MNISTData("mnist10k", str(shared_data_dir), split_seed=0, val_size=1000).setup()
    assert (len(d.train), len(d.val), len(d.test)) == (6000, 1000, 3000)
    assert d.train.x.dtype == torch.float32 and d.train.x.shape[1:] == (1, 28, 28)
    # the README's recipe, reproduced independently
    perm = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    from admm_pruning.data.mnist import TEST_FILES, load_idx_pair
    _, labels = load_idx_pair(shared_data_dir, TEST_FILES)
    assert torch.equal(d.test.y, labels[perm[7000:]].long())
    assert torch.equal(d.val.y, labels[perm[6000:7000]].long())
    assert abs(float(d.train.x.mean())) < 0.1  # normalised with the MNIST mean/std
    other = MNISTData("mnist10k", str(shared_data_dir), split_seed=1, val_size=1000).setup()
    assert not torch.equal(other.test.y, d.test.y)


def test_loader_batches_cover_the_epoch_once_and_shuffle_by_epoch(fake_data_dir):
    d = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False).setup()
    loader = d.loader("train", 64, shuffle=True, seed=3)
    seen = torch.cat([y for _, y in loader])
    assert len(seen) == len(d.train) and len(loader) == -(-len(d.train) // 64)
    first = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    again = torch.cat([x[:, 0, 0, 0] for x, _ in loader])
    assert torch.equal(first, again)  # same epoch, same order: a resume replays it
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([x[:, 0, 0, 0] for x, _ in loader]))



def test_data_moved_to_a_device_stays_there_and_batches_are_made_there(fake_data_dir):
    """A GPU run moves the splits once and gets batches, and the indices that cut them, on the
    device: no host copy per step. The meta device stands in for a GPU here."""
    d = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False).setup()
    order = [i.tolist() for i in d.loader("train", 64, shuffle=True, seed=3).sampler]
    assert d.to_device("meta") is d
    moved = d.train.x
    assert {s.x.device.type for s in (d.train, d.val, d.test)} == {"meta"} and d.test.y.is_meta
    d.to_device("meta")
    assert d.train.x is moved  # once
    loader = d.loader("train", 64, shuffle=True, seed=3)
    indices = list(loader.sampler)
    assert all(i.is_meta for i in indices) and [len(i) for i in indices] == [len(i) for i in order]
    x, y = next(iter(loader))
    assert x.is_meta and y.is_meta and x.shape == (64, 1, 28, 28)


@pytest.mark.parametrize("device, moved", [("cpu", False), ("meta", True)])
def test_a_stage_moves_in_memory_data_to_its_trainers_device(fake_data_dir, device, moved):
    from types import SimpleNamespace

    from admm_pruning.training.context import StageContext

    d = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False).setup()
    ctx = StageContext(data=d, trainer_kwargs={}, seed=0, experiment="x")
    ctx.place_data(SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device))))
    assert d.train.x.is_meta is moved and d.val.y.is_meta is moved

def test_missing_data_fails_with_directory_files_and_alternative(tmp_path):
    with pytest.raises(DataError) as err:
        MNISTData("mnist", str(tmp_path), download=False).setup()
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg and "DATA=mnist10k" in msg
    assert "no download was tried (data.download=false)" in msg
    with pytest.raises(DataError) as err:
        MNISTData("mnist10k", str(tmp_path), download=False).setup()
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz not found under DATA_DIR=" + str(tmp_path) in msg
    assert "train-images" not in msg and "no download was tried" in msg


def test_corrupt_gz_is_refused_by_checksum(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / f"{stem}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match="md5"):
        MNISTData("mnist10k", str(tmp_path)).setup()


def _raw_test_images(root, verify_md5: bool = True) -> torch.Tensor:
    from admm_pruning.data.mnist import TEST_FILES, load_idx_pair
    return load_idx_pair(root, TEST_FILES, verify_md5)[0].float().unsqueeze(1)


@pytest.mark.parametrize("pixel_scale, expected", [
    ("standardize", lambda raw: (raw / 255 - 0.1307) / 0.3081),
    ("unit", lambda raw: raw / 255),
    ("caffe", lambda raw: raw * 0.00390625),
])
def test_pixel_scale_follows_the_original(fake_data_dir, pixel_scale, expected):
    d = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False, pixel_scale=pixel_scale).setup()
    raw = _raw_test_images(fake_data_dir, verify_md5=False)
    assert raw.min() == 0 and raw.max() == 255  # the generated images span the byte range
    assert torch.allclose(d.test.x, expected(raw))
    lo, hi = float(d.train.x.min()), float(d.train.x.max())
    if pixel_scale == "unit":  # the TF code's [0, 1]
        assert (lo, hi) == (0.0, 1.0)
    elif pixel_scale == "caffe":  # Caffe's scale: 0.00390625 = 1/256, so [0, 255/256]
        assert (lo, hi) == (0.0, 255 / 256)
    else:
        assert (lo, hi) == pytest.approx((-0.1307 / 0.3081, (1 - 0.1307) / 0.3081))


def test_standardize_is_the_default(fake_data_dir):
    default = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False).setup()
    explicit = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False, pixel_scale="standardize").setup()
    assert default.pixel_scale == "standardize" and torch.equal(default.train.x, explicit.train.x)


def test_unknown_pixel_scale_is_refused_before_any_file_is_read(tmp_path):
    with pytest.raises(DataError, match=r"data\.pixel_scale='255'.*standardize, unit, caffe"):
        MNISTData("mnist10k", str(tmp_path / "nowhere"), pixel_scale="255")


def test_unit_scale_on_real_mnist_spans_zero_to_one(shared_data_dir):
    d = MNISTData("mnist10k", str(shared_data_dir), val_size=1000, pixel_scale="unit").setup()
    assert (float(d.test.x.min()), float(d.test.x.max())) == (0.0, 1.0)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_or_truncated_uncompressed_idx_is_refused_naming_the_file(tmp_path, shared_data_dir, damage):
    """The training set is uncompressed IDX: it is checked against the official md5 too."""
    import shutil
    d = tmp_path / "mnist"
    d.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw = gzip.decompress((shared_data_dir / "mnist" / f"{stem}.gz").read_bytes())
        (d / stem).write_bytes(raw)
    MNISTData("mnist10k", str(tmp_path)).setup()  # the intact uncompressed files pass
    images = d / "t10k-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    if damage == "flip":
        raw[5000] ^= 0xFF
    else:
        raw = raw[:-784]
    images.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: md5 .* official 2646ac64"):
        MNISTData("mnist10k", str(tmp_path)).setup()
    shutil.rmtree(d)


def test_generated_data_is_refused_unless_md5_checks_are_turned_off(fake_data_dir):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: md5"):
        MNISTData("mnist", str(fake_data_dir), val_size=200).setup()
    assert len(MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False).setup().train) == 1000


def test_the_official_uncompressed_training_files_pass_their_md5(shared_data_dir):
    if not (shared_data_dir / "mnist" / "train-images-idx3-ubyte").is_file():
        pytest.skip("the full MNIST training set is not in DATA_DIR")
    d = MNISTData("mnist", str(shared_data_dir), download=False).setup()
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
