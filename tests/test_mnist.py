import gzip
import struct

import numpy as np
import pytest

from src.common.errors import DataError
from src.mnist.digits import (IDX_FILES, IMAGE_MAGIC, LABEL_MAGIC, load_digits, read_digit_csv, read_idx,
                              write_idx)


def make_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) images: digit d is a bright bar at column 2 + 2d, and labels 0-9."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), np.uint8)
    for img, d in zip(images, labels):
        img[4:24, 2 + 2 * d:6 + 2 * d] = rng.integers(180, 256)
    return images, labels.astype(np.uint8)


def write_mnist(folder, n_train=30, n_test=20, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    (tr_x, tr_y), (te_x, te_y) = make_digits(n_train, 1), make_digits(n_test, 2)
    suffix = ".gz" if gz else ""
    for key, arr in dict(train_images=tr_x, train_labels=tr_y, test_images=te_x, test_labels=te_y).items():
        write_idx(folder / f"{IDX_FILES[key]}{suffix}", arr)
    return (tr_x, tr_y), (te_x, te_y)


def write_csv(path, images, labels, header=True):
    rows = [",".join(["label"] + [f"pixel{i}" for i in range(784)])] if header else []
    rows += [",".join(map(str, [y, *x.ravel()])) for x, y in zip(images, labels)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    (tr_x, tr_y), (te_x, te_y) = write_mnist(tmp_path, gz=gz)
    d = load_digits(tmp_path)
    assert d.train_images.shape == (30, 28, 28) and d.train_images.dtype == np.float32
    np.testing.assert_allclose(d.train_images * 255, tr_x, atol=1e-4)
    np.testing.assert_array_equal(d.test_labels, te_y)
    assert d.train_labels.dtype == np.int64 and 0 <= d.train_images.min() and d.train_images.max() <= 1
    assert "30 train / 20 test" in d.describe()


def test_idx_dotted_names_as_some_mirrors_ship_them(tmp_path):
    write_mnist(tmp_path, gz=False)
    for stem in IDX_FILES.values():
        (tmp_path / stem).rename(tmp_path / stem.replace("-idx", ".idx"))
    assert len(load_digits(tmp_path).test_images) == 20


def test_a_folder_missing_one_idx_file_names_it(tmp_path):
    write_mnist(tmp_path)
    for stem in IDX_FILES.values():   # the training images too: any of the four makes it an IDX folder
        (tmp_path / f"{stem}.gz").unlink()
        with pytest.raises(DataError, match=f"no {stem} or {stem}.gz"):
            load_digits(tmp_path)
        write_mnist(tmp_path)


def test_csv_file_or_folder_split_reproducibly(tmp_path):
    images, labels = make_digits(70)
    path = write_csv(tmp_path / "train.csv", images, labels)
    a, b = load_digits(path), load_digits(tmp_path)
    assert len(a.test_images) == 10 and len(a.train_images) == 60
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    c = load_digits(path, seed=1)
    assert not np.array_equal(a.test_images, c.test_images)
    # together the parts are exactly the file's rows
    both = np.concatenate([a.train_images, a.test_images]).reshape(70, -1) * 255
    rows = sorted(map(tuple, images.reshape(70, -1).astype(int)))
    assert sorted(map(tuple, np.rint(both).astype(int))) == rows


def test_csv_without_header(tmp_path):
    images, labels = make_digits(5)
    x, y = read_digit_csv(write_csv(tmp_path / "d.csv", images, labels, header=False))
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x * 255, images, atol=1e-4)
    # the first row is data too when it starts with a BOM (Excel), a float (np.savetxt) or a quote
    path = tmp_path / "f.csv"
    for write in (lambda: path.write_text("\ufeff" + (tmp_path / "d.csv").read_text(), encoding="utf-8"),
                  lambda: np.savetxt(path, np.column_stack([labels, images.reshape(5, -1)]), delimiter=","),
                  lambda: path.write_text("".join(",".join(f'"{v}"' for v in [y, *x.ravel()]) + "\n"
                                                  for x, y in zip(images, labels)))):
        write()
        x, y = read_digit_csv(path)
        np.testing.assert_array_equal(y, labels)
        np.testing.assert_allclose(x * 255, images, atol=1e-4)


def test_idx_preferred_over_csv_in_the_same_folder(tmp_path):
    write_mnist(tmp_path)
    write_csv(tmp_path / "train.csv", *make_digits(7))
    assert len(load_digits(tmp_path).train_images) == 30


def _raw(magic, dims, payload: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


@pytest.mark.parametrize("content, message", [
    (_raw(LABEL_MAGIC, (3,), bytes(3)), "magic number 0x00000801, expected 0x00000803"),
    (_raw(IMAGE_MAGIC, (2, 28, 28), bytes(28 * 28)), "truncated"),
    (_raw(IMAGE_MAGIC, (1, 28, 28), bytes(28 * 28 + 5)), "trailing bytes"),
    (_raw(IMAGE_MAGIC, (2 ** 31,) * 3, bytes(100)),   # int64 would overflow: no "trailing bytes"
     f"truncated: 116 bytes, the header .* needs {2**93 + 16}"),
    (b"\x00\x00", "too short"),
])
def test_bad_idx_names_the_file(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        read_idx(path, IMAGE_MAGIC)
    assert str(path) in str(e.value)


def test_truncated_gzip_is_a_data_error(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=f"{path}: corrupt or truncated gzip"):
        load_digits(tmp_path)
    path.write_bytes(gzip.compress(_raw(IMAGE_MAGIC, (20, 28, 28), bytes(100))))
    with pytest.raises(DataError, match=f"{path}: truncated"):
        load_digits(tmp_path)


def test_image_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="holds 20 images but .*t10k-labels-idx1-ubyte.gz holds 19 labels"):
        load_digits(tmp_path)


@pytest.mark.parametrize("images, problem", [
    (np.zeros((20, 32, 32), np.uint8), r"t10k-images-idx3-ubyte\.gz: images of 32x32, but .* holds 28x28"),
    (np.zeros((0, 28, 28), np.uint8), r"t10k-images-idx3-ubyte\.gz: holds no images"),
])
def test_test_images_unlike_the_training_ones(tmp_path, images, problem):
    """Found at loading, not after the first epoch, at the first evaluation."""
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(len(images), np.uint8))
    with pytest.raises(DataError, match=problem):
        load_digits(tmp_path)


def test_missing_label_file_and_empty_folder(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz"):
        load_digits(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither the MNIST IDX files .* nor a Digit Recognizer train.csv"):
        load_digits(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file or folder"):
        load_digits(tmp_path / "nowhere")


@pytest.mark.parametrize("edit, message", [
    (lambda rows: [r + ",0" for r in rows], "786 columns, expected 785"),
    (lambda rows: rows[:1] + [r + ",7" for r in rows[1:]], "786 columns, expected 785"),   # not the header
    (lambda rows: rows[:2] + ["", rows[2].replace(",0,", ",x7,", 1)] + rows[3:],
     r"line 4, column \d+: 'x7' is not a number"),   # the blank line 3 counts
    (lambda rows: rows[:2] + [rows[2].replace(",0,", ",x7,", 1)] + rows[3:],
     r"line 3, column \d+: 'x7' is not a number"),
    (lambda rows: rows[:3] + [rows[3].rsplit(",", 1)[0]] + rows[4:], "line 4, column 785: a missing value"),
    (lambda rows: rows[:2] + ["12" + rows[2][1:]] + rows[3:], "line 3: label 12 is not a digit"),
    (lambda rows: rows[:1] + [rows[1][:2] + "300" + rows[1][3:]] + rows[2:],
     "line 2: pixel values must lie in 0..255"),
    (lambda rows: [], "empty file"),
])
def test_bad_csv_names_the_file(tmp_path, edit, message):
    path = write_csv(tmp_path / "train.csv", *make_digits(6))
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(DataError, match=message) as e:
        load_digits(path)
    assert str(path) in str(e.value)


def test_not_a_csv_file(tmp_path):
    path = tmp_path / "digits.npy"
    path.write_bytes(b"\x93NUMPY")
    with pytest.raises(DataError, match="expected a folder of MNIST IDX files or a Digit Recognizer .csv"):
        load_digits(path)
