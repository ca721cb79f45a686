"""Static images with direct encoding: the image is the input current at every time step.

The paper's ImageNet networks (and most converted or directly trained CNN-SNNs) take an image
as a constant input current: ``x[n, t] = image[n]`` for every step ``t`` (no spikes at the
input; the first layer's neurons encode). Sources:

- an image folder in the layout torchvision's ``ImageFolder`` reads, ``<root>/<class>/<file>``
  (classes sorted by name are labels 0, 1, ...; PNG, JPEG, BMP, PPM/PGM, TIFF, WebP, read by
  Pillow);
- an ``.npz`` with ``images`` (``[N, H, W]`` grey, ``[N, H, W, C]`` with ``C`` in 1, 3, 4, or
  ``[N, C, H, W]``) and optional integer ``labels`` (or ``y``).

The spec ``images:PATH[,option...]`` takes the options ``steps=N`` (required: the number of
steps, as the network was trained), ``size=S`` or ``size=HxW`` (centre crop after resizing the
shorter side to ``resize=`` when given, the ImageNet protocol being ``resize=256,size=224``),
``normalize=unit|imagenet|none`` (``unit``, the default, scales 8-bit pixels to [0, 1];
``imagenet`` then subtracts the ImageNet mean and divides by its standard deviation per
channel, as torchvision's pretrained ImageNet models expect; ``none`` keeps the values) and
``gray`` / ``rgb``. Samples are ``[C, H, W]`` float32 per step; ``dt`` is the model's step.

The ``T`` copies are one read-only broadcast view, not ``T`` arrays in memory.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbc_deploy.data.dataset import Dataset
from sbc_deploy.data.sampling import balanced_indices
from sbc_deploy.errors import DataError, FormatError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)   # torchvision's ImageNet normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageOptions:
    """The options of an ``images:`` spec (see the module docstring)."""

    steps: int | None = None
    size: tuple[int, int] | None = None
    resize: int | None = None
    normalize: str = "unit"
    mode: str | None = None      # "L" (gray) or "RGB"; None: as stored


def _parse(text: str) -> tuple[Path, ImageOptions]:
    path = Path(text)
    if path.exists():
        return path, ImageOptions()
    head, *tokens = text.split(",")
    fields: dict[str, object] = {}
    for token in tokens:
        key, eq, value = (t.strip() for t in token.partition("="))
        if key in ("gray", "rgb") and not eq:
            fields["mode"] = "L" if key == "gray" else "RGB"
        elif key in ("steps", "resize") and value.isdigit() and int(value) > 0:
            fields[key] = int(value)
        elif key == "size" and eq:
            parts = value.lower().split("x")
            if not all(p.isdigit() and int(p) > 0 for p in parts) or len(parts) > 2:
                raise DataError(f"size={value!r}: use S or HxW", where=text)
            fields["size"] = (int(parts[0]), int(parts[-1]))
        elif key == "normalize" and value in ("unit", "imagenet", "none"):
            fields["normalize"] = value
        else:
            raise DataError(f"unknown or bad option {token!r}; options: steps=N, size=S|HxW, "
                            "resize=N, normalize=unit|imagenet|none, gray, rgb", where=text)
    return Path(head), ImageOptions(**fields)  # type: ignore[arg-type]


def is_image_folder(path: Path) -> bool:
    """True for a folder of class folders holding image files."""
    if not path.is_dir():
        return False
    for sub in path.iterdir():
        if sub.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in sub.iterdir()):
            return True
    return False


def has_images_key(path: Path) -> bool:
    """True for an ``.npz`` that holds ``images`` and no frames ``x``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return "images.npy" in names and "x.npy" not in names


def _folder_listing(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(file)
                labels.append(label)
    if not files:
        raise DataError("holds no <class>/<image> files (PNG, JPEG, ...)", where=str(root))
    return files, np.asarray(labels, dtype=np.int64), classes


def _resize_crop(image: object, options: ImageOptions) -> object:
    from PIL import Image

    if options.resize is not None:
        w, h = image.size  # type: ignore[attr-defined]
        scale = options.resize / min(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))),  # type: ignore[attr-defined]
                             Image.BILINEAR)
    if options.size is not None:
        w, h = image.size  # type: ignore[attr-defined]
        ch, cw = options.size
        if ch > h or cw > w:
            raise DataError(f"is {w}x{h}, smaller than the crop {cw}x{ch}")
        left, top = (w - cw) // 2, (h - ch) // 2
        image = image.crop((left, top, left + cw, top + ch))  # type: ignore[attr-defined]
    return image


def _read_image(path: Path, options: ImageOptions) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            handle.load()
            image = handle.convert(options.mode) if options.mode else handle.copy()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise FormatError(f"is not a readable image ({err})", where=str(path)) from err
    try:
        image = _resize_crop(image, options)
    except DataError as err:
        raise DataError(err.message, where=str(path)) from err
    array = np.asarray(image)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    return array[..., None] if array.ndim == 2 else array     # [H, W, C]


def _channels_first(images: np.ndarray, where: str) -> np.ndarray:
    if images.ndim == 3:
        return images[:, None]
    if images.ndim != 4:
        raise DataError(f"'images' must be [N, H, W], [N, H, W, C] or [N, C, H, W]; got shape "
                        f"{images.shape}", where=where)
    if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
        return np.moveaxis(images, -1, 1)
    return images


def _normalize(images: np.ndarray, how: str, where: str) -> np.ndarray:
    array = images.astype(np.float32)
    if how == "none":
        return array
    if np.issubdtype(images.dtype, np.integer):
        array /= 255.0 if images.dtype == np.uint8 or images.max(initial=0) <= 255 else \
            float(np.iinfo(images.dtype).max)
    if how == "imagenet":
        if array.shape[1] != 3:
            raise DataError(f"normalize=imagenet needs 3 colour channels, got {array.shape[1]}",
                            where=where)
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
        array = (array - mean) / std
    return array


def _claim(nbytes: int, count: int, where: str) -> None:
    """Claim the float32 images from the run's read budget (``--memory-budget``)."""
    from sbc_deploy.safeio import claim

    try:
        claim(nbytes, f"{count} images as float32", where)
    except FormatError as err:
        raise DataError(err.message, where=where, hint="read fewer (--calib-per-class, "
                        "--eval-limit), crop smaller (size=) or raise --memory-budget") from err


def direct_encode(images: np.ndarray, steps: int) -> np.ndarray:
    """``[N, T, *shape]``: every image repeated at each of ``steps`` steps (a read-only view)."""
    frozen = np.array(images, copy=True)
    frozen.flags.writeable = False
    return np.broadcast_to(frozen[:, None], (frozen.shape[0], int(steps), *frozen.shape[1:]))


def _pick(labels: np.ndarray | None, n: int, limit: int | None, per_class: float | None,
          seed: int, where: str) -> np.ndarray:
    index = np.arange(n)
    if per_class is not None:
        if labels is None:
            raise DataError("has no labels; samples per class needs labelled data", where=where)
        index = balanced_indices(labels, per_class, seed, where)
    return index if limit is None else index[:limit]


def load_images(source: str | Path, *, dt: float | None, steps: int | None = None,
                limit: int | None = None, per_class: float | None = None, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Read images (a folder or an npz; see the module docstring) and encode them directly
    (``progress(done, total)`` after each image file).

    Raises:
        DataError: no ``dt`` or ``steps``, images of different sizes, a bad option.
        FormatError: an unreadable image or archive.
    """
    text = str(source)
    path, options = _parse(text)
    if steps is not None and options.steps is not None and steps != options.steps:
        raise DataError(f"steps={options.steps} in the spec but {steps} asked for", where=text)
    steps = steps if steps is not None else options.steps
    if steps is None:
        raise DataError("direct encoding needs the number of steps", where=text,
                        hint=f"images:{path},steps=4 (the T the network was trained with)")
    if dt is None:
        raise DataError("direct encoding needs dt (the model's step)", where=text,
                        hint="pass --dt")
    if not path.exists():
        raise DataError("no such file or folder", where=str(path))
    if path.is_dir():
        files, labels, _ = _folder_listing(path)
        chosen = _pick(labels, len(files), limit, per_class, seed, text)
        arrays = []
        for i in chosen:
            arrays.append(_read_image(files[i], options))
            if len(arrays) == 1:   # all alike (checked below): claim them, as float32, now
                _claim(len(chosen) * arrays[0].size * 4, len(chosen), text)
            if progress is not None:
                progress(len(arrays), len(chosen))
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            first = arrays[0].shape
            odd = next(files[i] for i, a in zip(chosen, arrays) if a.shape != first)
            raise DataError(f"images differ in size ({first[1]}x{first[0]} and others); give "
                            "size= (and resize=) to crop them alike", where=str(odd))
        images = np.moveaxis(np.stack(arrays), -1, 1)
        y: np.ndarray | None = labels[chosen]
    else:
        images, y = _read_npz_images(path, limit, per_class, seed, text)
        if options.size is not None or options.resize is not None or options.mode:
            raise DataError("size=, resize=, gray and rgb apply to image files, not to an npz "
                            "of arrays", where=text)
    if not path.is_dir() and images.dtype != np.float32:   # the float32 copy made below
        _claim(images.size * 4, len(images), text)
    images = _normalize(images, options.normalize, text)
    return Dataset(x=direct_encode(images, steps), y=y, dt=float(dt), source=text)


def _read_npz_images(path: Path, limit: int | None, per_class: float | None, seed: int,
                     where: str) -> tuple[np.ndarray, np.ndarray | None]:
    from sbc_deploy.data.npz import _screen

    try:
        _screen(path, str(path), keys=("images", "labels", "y"))  # declared sizes claimed
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise FormatError(f"is not a readable .npz archive ({err})", where=str(path)) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FormatError("holds a single array, not an .npz archive with 'images'",
                          where=str(path))
    with archive:
        if "images" not in archive.files:
            raise DataError(f"has no 'images' array (keys: {sorted(archive.files)})",
                            where=str(path))
        images = _channels_first(np.asarray(archive["images"]), str(path))
        key = "labels" if "labels" in archive.files else "y" if "y" in archive.files else None
        labels = None if key is None else np.asarray(archive[key])
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_):
        raise DataError(f"'images' must be numeric, got {images.dtype}", where=str(path))
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) \
                or (labels.size and labels.min() < 0):
            raise DataError(f"'{key}' must be [N] = [{len(images)}] non-negative integer "
                            f"labels, got {labels.dtype} {labels.shape}", where=str(path))
        labels = labels.astype(np.int64)
    chosen = _pick(labels, len(images), limit, per_class, seed, where)
    return images[chosen], None if labels is None else labels[chosen]


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageOptions", "direct_encode", "has_images_key",
           "is_image_folder", "load_images"]
