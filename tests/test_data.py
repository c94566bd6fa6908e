import numpy as np
import pytest

from ntkbook import data
from ntkbook.data import ARCHIVES, DataError

CIFAR10 = ARCHIVES["cifar10"]


def write_records(path, labels, rng, archive=CIFAR10):
    """Write records in the official binary layout; returns the pixel bytes (N, 3072)."""
    pixels = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    header = np.zeros((len(labels), archive.label_bytes), np.uint8)
    header[:, archive.label_index] = labels
    np.concatenate([header, pixels], axis=1).tofile(path)
    return pixels


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKBOOK_DATA_DIR", str(tmp_path))
    return tmp_path


def test_partial_folder_is_read_with_layout_and_scaling(fake_root):
    rng = np.random.default_rng(0)
    folder = fake_root / CIFAR10.folder
    folder.mkdir()
    pixels = write_records(folder / "data_batch_2.bin", np.arange(30) % 10, rng)
    write_records(folder / "data_batch_4.bin", np.arange(7) % 10, rng)
    write_records(folder / "test_batch.bin", np.arange(3), rng)
    split = data.load_split("cifar10", "train")
    assert split.images.shape == (37, 32, 32, 3) and split.images.dtype == np.float32
    assert split.labels.tolist()[:30] == (np.arange(30) % 10).tolist()
    # pixel (row 0, col 1) of channel G is byte 1024 + 1 of the record
    assert split.images[0, 0, 1, 1] == pytest.approx(pixels[0, 1025] / 255)
    assert 0.0 <= split.images.min() and split.images.max() <= 1.0


def test_truncated_record_is_rejected(fake_root):
    folder = fake_root / CIFAR10.folder
    folder.mkdir()
    write_records(folder / "test_batch.bin", np.arange(5), np.random.default_rng(0))
    with open(folder / "test_batch.bin", "ab") as handle:
        handle.write(b"\x00" * 100)
    with pytest.raises(DataError, match="not a whole number of 3073-byte records"):
        data.load_split("cifar10", "test")


def test_cifar100_uses_the_fine_label(fake_root):
    archive = ARCHIVES["cifar100"]
    (fake_root / archive.folder).mkdir()
    for name in ("train.bin", "test.bin"):
        write_records(fake_root / archive.folder / name, np.array([42, 99]),
                      np.random.default_rng(0), archive)
    assert data.load_split("cifar100", "test").labels.tolist() == [42, 99]


def test_missing_folder_names_the_expected_layout(fake_root):
    with pytest.raises(DataError, match="cifar-10-batches-bin/ holding data_batch_1.bin"):
        data.load_split("cifar10", "train")


def test_an_empty_folder_is_refused_naming_what_is_missing_and_the_fix(fake_root):
    (fake_root / CIFAR10.folder).mkdir()
    with pytest.raises(DataError) as error:
        data.dataset_folder("cifar10")
    message = str(error.value)
    assert f"the data folder {fake_root / CIFAR10.folder} cannot be used" in message
    assert "no training file (any of data_batch_1.bin" in message
    assert "no test file (test_batch.bin)" in message
    assert "point NTKBOOK_DATA_DIR at" in message and "unset to download" in message
    assert error.value._render_traceback_() == [f"DataError: {message}"]


def test_truncated_and_empty_files_are_refused_before_reading(fake_root):
    folder = fake_root / CIFAR10.folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_records(folder / "data_batch_1.bin", np.arange(10), rng)
    write_records(folder / "test_batch.bin", np.arange(10), rng)
    assert data.dataset_folder("cifar10") == folder  # fewer files and records: accepted
    (folder / "data_batch_2.bin").write_bytes(b"")
    with open(folder / "test_batch.bin", "r+b") as handle:
        handle.truncate(3073 * 9 + 5)
    with pytest.raises(DataError) as error:
        data.dataset_folder("cifar10")
    assert "data_batch_2.bin is empty" in str(error.value)
    assert ("test_batch.bin is truncated (27,662 bytes is not a whole number of 3073-byte "
            "records)") in str(error.value)


def test_the_shared_sample_passes_the_check():
    for dataset in ARCHIVES:
        assert data.dataset_folder(dataset).is_dir()


def test_download_with_wrong_md5_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKBOOK_DOWNLOAD_DIR", str(tmp_path))

    def corrupt_downloader(url, output_file, pooch_object):
        with open(output_file, "wb") as handle:
            handle.write(b"not the CIFAR archive")

    with pytest.raises(DataError, match="failed verification"):
        data.download(CIFAR10, downloader=corrupt_downloader)
    assert not (tmp_path / CIFAR10.folder).exists()


def test_offline_download_fails_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKBOOK_DOWNLOAD_DIR", str(tmp_path))

    def offline(url, output_file, pooch_object):
        raise ConnectionError("no network")

    with pytest.raises(DataError, match="set NTKBOOK_DATA_DIR"):
        data.download(CIFAR10, downloader=offline)


def test_balanced_subset_is_balanced_seeded_and_distinct():
    labels = np.repeat(np.arange(10), 30)[np.random.default_rng(1).permutation(300)]
    a = data.balanced_indices(labels, 100, 10, seed=3)
    assert np.bincount(labels[a], minlength=10).tolist() == [10] * 10
    assert len(set(a.tolist())) == 100
    assert np.array_equal(a, data.balanced_indices(labels, 100, 10, seed=3))
    assert not np.array_equal(a, data.balanced_indices(labels, 100, 10, seed=4))


def test_balanced_subset_refuses_too_few_images():
    labels = np.array([0] * 5 + [1] * 2)
    with pytest.raises(DataError, match="class 1 has 2 images"):
        data.balanced_indices(labels, 6, 2, seed=0)


def test_real_sample_subset_is_balanced():
    split = data.balanced_subset("cifar10", "test", 500)
    assert np.bincount(split.labels, minlength=10).tolist() == [50] * 10
