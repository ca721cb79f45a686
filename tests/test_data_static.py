"""Static images with direct encoding: the image is the input current at every step."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sbc_deploy.cli import main
from sbc_deploy.data import load_data
from sbc_deploy.data.static import IMAGENET_MEAN, IMAGENET_STD
from sbc_deploy.errors import DataError, FormatError


def image_folder(root, classes=("cat", "ant", "dog"), per_class=2, size=(12, 10), seed=0):
    """``root/<class>/<i>.png`` RGB images; returns {path: pixels [H, W, 3] uint8}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            path = root / name / f"{i}.png"
            Image.fromarray(pixels).save(path)
            written[path] = pixels
    return written


def test_folder_images_are_the_input_at_every_step(tmp_path) -> None:
    written = image_folder(tmp_path)
    data = load_data(f"images:{tmp_path},steps=4", dt=1e-3)
    # classes sorted by name are the labels (torchvision's ImageFolder): ant 0, cat 1, dog 2
    np.testing.assert_array_equal(data.y, [0, 0, 1, 1, 2, 2])
    assert data.x.shape == (6, 4, 3, 10, 12) and data.x.dtype == np.float32
    paths = sorted(written, key=lambda p: (p.parent.name, p.name))
    for sample, path in zip(data.x, paths):
        expected = np.moveaxis(written[path], -1, 0) / 255.0     # [C, H, W] in [0, 1]
        for step in range(4):
            np.testing.assert_allclose(sample[step], expected, rtol=0, atol=1e-7)
    assert data.x.strides[1] == 0          # one copy of each image, not T
    # a folder of class folders is detected without the images: prefix, even when the class
    # names are digits or CIFAR-10 names (event datasets need their own files to be detected)
    assert load_data(tmp_path, dt=1e-3, steps=2).x.shape == (6, 2, 3, 10, 12)
    digits = tmp_path / "digits"
    image_folder(digits, classes=("0", "1"), per_class=1)
    assert load_data(digits, dt=1e-3, steps=2).y.tolist() == [0, 1]


def test_imagenet_protocol_resize_crop_normalize(tmp_path) -> None:
    written = image_folder(tmp_path, classes=("a",), per_class=1, size=(40, 30))
    (pixels,) = written.values()
    data = load_data(f"images:{tmp_path},steps=2,resize=20,size=16,normalize=imagenet",
                     dt=1e-3)
    # the reference: Pillow's resize of the shorter side to 20 (30x40 -> 20x27), centre crop
    resized = np.asarray(Image.fromarray(pixels).resize((27, 20), Image.BILINEAR))
    top, left = (20 - 16) // 2, (27 - 16) // 2
    crop = resized[top:top + 16, left:left + 16] / 255.0
    expected = (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(data.x[0, 1], np.moveaxis(expected, -1, 0), atol=1e-5)
    gray = load_data(f"images:{tmp_path},steps=2,gray,normalize=none", dt=1e-3)
    assert gray.x.shape == (1, 2, 1, 30, 40) and gray.x.max() > 1


def test_npz_images_in_either_channel_order_and_draws(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 3)
    np.savez(tmp_path / "last.npz", images=images, labels=labels)
    np.savez(tmp_path / "first.npz", images=np.moveaxis(images, -1, 1), y=labels)
    last = load_data(tmp_path / "last.npz", dt=1e-3, steps=3)     # detected by its key
    first = load_data(f"images:{tmp_path / 'first.npz'},steps=3", dt=1e-3)
    np.testing.assert_array_equal(last.x, first.x)
    np.testing.assert_allclose(last.x[4, 2], np.moveaxis(images[4], -1, 0) / 255.0)
    one_each = load_data(tmp_path / "last.npz", dt=1e-3, steps=3, per_class=1, seed=2)
    assert sorted(one_each.y.tolist()) == [0, 1, 2]
    for x, y in zip(one_each.x, one_each.y):   # each drawn image is one of its class's
        assert any(np.allclose(x[0], last.x[i, 0]) for i in np.flatnonzero(labels == y))


def test_images_are_claimed_from_the_read_budget(tmp_path) -> None:
    from sbc_deploy.safeio import read_budget

    image_folder(tmp_path, classes=("a", "b"), per_class=2, size=(12, 10))
    need = 4 * 3 * 10 * 12 * 4                     # images x [3, 10, 12] float32
    with read_budget(need - 1), pytest.raises(DataError, match="4 images as float32 declares"):
        load_data(tmp_path, dt=1e-3, steps=3)
    with read_budget(need):
        assert load_data(tmp_path, dt=1e-3, steps=3).x.shape == (4, 3, 3, 10, 12)
    np.savez(tmp_path / "big.npz", images=np.zeros((50, 8, 8), dtype=np.uint8))
    with read_budget(50 * 64 - 1), pytest.raises(FormatError, match="declares 3,200 bytes"):
        load_data(f"images:{tmp_path / 'big.npz'},steps=2", dt=1e-3)


def test_bad_images_name_the_file(tmp_path, capsys) -> None:
    image_folder(tmp_path / "set", classes=("a",), per_class=1)
    with pytest.raises(DataError, match="needs the number of steps"):
        load_data(f"images:{tmp_path / 'set'}", dt=1e-3)
    with pytest.raises(DataError, match="needs dt"):
        load_data(f"images:{tmp_path / 'set'},steps=2")
    bad = tmp_path / "set" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(FormatError, match="not a readable image"):
        load_data(f"images:{tmp_path / 'set'},steps=2", dt=1e-3)
    code = main(["--target", "loihi2", "--calib", f"images:{tmp_path / 'set'},steps=2",
                 "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "not a readable image" in err
    bad.unlink()
    Image.fromarray(np.zeros((5, 7, 3), dtype=np.uint8)).save(tmp_path / "set" / "a" / "z.png")
    with pytest.raises(DataError, match="differ in size"):
        load_data(f"images:{tmp_path / 'set'},steps=2", dt=1e-3)
    with pytest.raises(DataError, match="unknown or bad option"):
        load_data(f"images:{tmp_path / 'set'},steps=2,colour", dt=1e-3)
