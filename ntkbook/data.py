"""CIFAR-10/100 from the official *binary* archives, and seeded class-balanced subsets.

Source, in order: the extracted folder in ``$NTKBOOK_DATA_DIR``; else the archive downloaded
(MD5-verified by pooch) into ``$NTKBOOK_DOWNLOAD_DIR`` (default: the user cache). Either folder
is checked before it is used: at least one training and one test file, each a whole, positive
number of records (a folder may hold fewer files and records than the official archive).
Pixels are float32 in [0, 1], NHWC, with no normalisation and no augmentation, as in the paper.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_BYTES = 32 * 32 * 3


class DataError(RuntimeError):
    """The data is missing, corrupt or too small for the request."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the traceback: the message says it all."""
        return [f"{type(self).__name__}: {self}"]


@dataclasses.dataclass(frozen=True)
class Archive:
    """Where a dataset comes from and how its binary records look."""

    url: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int  # bytes before the pixels in each record
    label_index: int  # which of those bytes is the label we use
    num_classes: int

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + IMAGE_BYTES

    def layout(self) -> str:
        files = ", ".join(self.train_files + self.test_files)
        return f"<NTKBOOK_DATA_DIR>/{self.folder}/ holding {files}"

    def advice(self) -> str:
        """How to give ntkbook this dataset."""
        absent = ", some training files may be absent" if len(self.train_files) > 1 else ""
        return (f"Fix: point NTKBOOK_DATA_DIR at a folder holding the extracted "
                f"{Path(self.url).name}, {self.layout()} (files may hold fewer records than "
                f"the official ones, each a whole number of {self.record_bytes}-byte records"
                f"{absent}); or leave NTKBOOK_DATA_DIR unset to download {self.url} into "
                f"{download_dir()} (delete a broken {self.folder}/ there first)")


ARCHIVES = {
    "cifar10": Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        md5="c32a1d4ab5d03f1284b67883e8d87530",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_files=("test_batch.bin",),
        label_bytes=1, label_index=0, num_classes=10),
    "cifar100": Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        md5="03b5dce01913d631647c71ecec9e9cb8",
        folder="cifar-100-binary",
        train_files=("train.bin",),
        test_files=("test.bin",),
        label_bytes=2, label_index=1, num_classes=100),  # coarse byte, then fine byte
}


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Images (N, 32, 32, 3) float32 in [0, 1] and integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices])

    @functools.cached_property
    def digest(self) -> str:
        """A fingerprint of exactly these images and labels, in this order (BLAKE2b, 128
        bits): cache keys of everything computed on them include it, so other data (another
        folder, fewer records) never reuses a result."""
        hasher = hashlib.blake2b(digest_size=16)
        hasher.update(np.ascontiguousarray(self.images).tobytes())
        hasher.update(np.ascontiguousarray(self.labels, dtype=np.int32).tobytes())
        return hasher.hexdigest()


def read_records(path: Path, archive: Archive) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary file: uint8 images NHWC and int32 labels, checking its shape."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % archive.record_bytes:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of "
                        f"{archive.record_bytes}-byte records (truncated or not a CIFAR file)")
    records = raw.reshape(-1, archive.record_bytes)
    labels = records[:, archive.label_index].astype(np.int32)
    if labels.max() >= archive.num_classes:
        raise DataError(f"{path}: label {labels.max()} out of range for "
                        f"{archive.num_classes} classes (wrong dataset?)")
    images = records[:, archive.label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def download_dir() -> Path:
    """Where archives are downloaded and extracted: ``$NTKBOOK_DOWNLOAD_DIR`` or the user
    cache."""
    return Path(os.environ.get("NTKBOOK_DOWNLOAD_DIR") or _pooch().os_cache("ntkbook"))


def _pooch():
    """pooch, imported when data may be downloaded (it takes a tenth of a second)."""
    import pooch
    return pooch


def download(archive: Archive, *, downloader: Callable | None = None) -> Path:
    """Fetch and extract ``archive`` into the download cache; return the extracted folder."""
    pooch = _pooch()
    cache = download_dir()
    folder = cache / archive.folder
    if folder.is_dir():
        return folder
    try:
        pooch.retrieve(archive.url, known_hash=f"md5:{archive.md5}", path=cache,
                       fname=Path(archive.url).name, downloader=downloader,
                       processor=pooch.Untar(extract_dir=str(cache)), progressbar=True)
    except ValueError as error:  # pooch: hash mismatch
        raise DataError(f"{archive.url}: download failed verification ({error})") from None
    except Exception as error:  # noqa: BLE001 - any network failure gets the same advice
        raise DataError(
            f"could not download {archive.url} ({type(error).__name__}: {error}). "
            f"Offline? Extract the archive yourself and set NTKBOOK_DATA_DIR so that it "
            f"contains {archive.layout()}") from None
    return folder


def dataset_folder(dataset: str) -> Path:
    """The folder holding ``dataset``'s binary files, checked (:func:`check_folder`)."""
    archive = ARCHIVES[dataset]
    root = os.environ.get("NTKBOOK_DATA_DIR")
    if not root:
        return check_folder(download(archive), archive)
    folder = Path(root) / archive.folder
    if not folder.is_dir():
        raise DataError(f"NTKBOOK_DATA_DIR={root} has no folder {archive.folder}/. "
                        f"{archive.advice()}.")
    return check_folder(folder, archive)


def check_folder(folder: Path, archive: Archive) -> Path:
    """``folder`` if it holds at least one training and one test file of ``archive``, each a
    whole, positive number of records; else a DataError naming every problem and the fix."""
    problems = []
    for split, names in (("training", archive.train_files), ("test", archive.test_files)):
        present = [folder / name for name in names if (folder / name).is_file()]
        if not present:
            needed = names[0] if len(names) == 1 else f"any of {', '.join(names)}"
            problems.append(f"no {split} file ({needed})")
        problems += [problem for path in present if (problem := _size_problem(path, archive))]
    if problems:
        raise DataError(f"the data folder {folder} cannot be used: {'; '.join(problems)}. "
                        f"{archive.advice()}.")
    return folder


def _size_problem(path: Path, archive: Archive) -> str | None:
    """What is wrong with the size of a binary file, or None."""
    size = path.stat().st_size
    if size == 0:
        return f"{path.name} is empty"
    if size % archive.record_bytes:
        return (f"{path.name} is truncated ({size:,} bytes is not a whole number of "
                f"{archive.record_bytes}-byte records)")
    return None


def load_split(dataset: str, split: str) -> Split:
    """All records of ``split`` ('train' or 'test') that the data folder holds."""
    return _as_split(*_read_split(dataset_folder(dataset), dataset, split))


def _as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """uint8 images to float32 in [0, 1]."""
    return Split(images.astype(np.float32) / 255.0, labels)


@functools.lru_cache(maxsize=4)
def _read_split(folder: Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 32, 32, 3) and labels of every record of ``split`` in ``folder``
    (subsets are converted to float32 after they are taken: converting all 50,000 training
    images took 1.5 s of every process)."""
    archive = ARCHIVES[dataset]
    names = archive.train_files if split == "train" else archive.test_files
    present = [folder / name for name in names if (folder / name).is_file()]
    parts = [read_records(path, archive) for path in present]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    log.info("read %d %s %s records from %d file(s) in %s",
             len(labels), dataset, split, len(present), folder)
    return images, labels


def balanced_indices(labels: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """``n // num_classes`` indices drawn per class without replacement, sorted."""
    if n % num_classes:
        raise DataError(f"a class-balanced subset of {n} needs a multiple of {num_classes}")
    per_class = n // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise DataError(f"class {c} has {len(members)} images, a balanced subset of "
                            f"{n} needs {per_class} per class")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


SUBSET_SEED = 0  # one fixed subset per size, shared by every training seed


def balanced_subset(dataset: str, split: str, n: int) -> Split:
    """A class-balanced subset of ``n`` images of ``split``, the same on every call (and the
    same object within a process, for one data folder)."""
    return _balanced_subset(dataset_folder(dataset), dataset, split, n)


@functools.lru_cache(maxsize=8)
def _balanced_subset(folder: Path, dataset: str, split: str, n: int) -> Split:
    images, labels = _read_split(folder, dataset, split)
    chosen = balanced_indices(labels, n, ARCHIVES[dataset].num_classes, SUBSET_SEED)
    return _as_split(images[chosen], labels[chosen])
