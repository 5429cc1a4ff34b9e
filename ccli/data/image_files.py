"""Decode folders of image files (JPEG, PNG…) into one uint8 array, and resize arrays of images.

Used by the folder-based dataset kinds (ImageNet subsets, Tiny-ImageNet, `folder:`), and to honour
`image_size` for the array-based ones. PIL is imported inside the functions so that importing
`ccli.data.sources` (as `ccli eval` does) stays cheap.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ccli.errors import BadInput

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

# Images per task handed to the thread pool: large enough that scheduling is negligible next to
# decoding, small enough that progress moves and the pool stays balanced.
_CHUNK = 64

Progress = Callable[[int, int], None]


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: Path, recursive: bool) -> list[Path]:
    """Image files under `folder`, sorted by relative path so the order (and indices) is stable."""
    found: list[Path] = []
    try:
        if recursive:
            for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                found.extend(Path(dirpath, f) for f in filenames if is_image_file(f))
        else:
            with os.scandir(folder) as entries:
                found.extend(
                    Path(e.path) for e in entries if is_image_file(e.name) and e.is_file()
                )
    except OSError as exc:
        raise BadInput(f"cannot list {folder}: {exc.strerror or exc}.") from exc
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _centre_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square of side min(w, h): resizing it equals 'shorter side, then centre crop'."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def _fit(image, size: int):
    """Resize the shorter side to `size` and centre-crop to size×size, in one resampling step."""
    from PIL import Image

    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.BILINEAR, box=_centre_square_box(*image.size))


def _decode(path: Path, size: int | None, expected: tuple[int, int] | None, spec: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if size is None:
                if expected is not None and image.size != expected:
                    raise BadInput(
                        f"{spec} has images of different sizes ({path} is {image.size[0]}×"
                        f"{image.size[1]}, the first one {expected[0]}×{expected[1]}); "
                        f"pass --image-size to resize them."
                    )
            else:
                # JPEG can decode at 1/2, 1/4, 1/8 scale for almost nothing; ask for the smallest
                # scale that still covers the target, so big photos are not decoded in full.
                scale = size / min(image.size)
                if scale < 1:
                    image.draft("RGB", (int(image.size[0] * scale) + 1, int(image.size[1] * scale) + 1))
            image = image.convert("RGB")
            if size is not None:
                image = _fit(image, size)
            return np.asarray(image)
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{path} is not a readable image ({exc}).") from exc


def _run_chunks(
    count: int,
    work: Callable[[int, int], None],
    progress: Progress | None,
    workers: int | None,
) -> None:
    """Call work(start, stop) over [0, count) in chunks on a thread pool (PIL releases the GIL)."""
    workers = workers or min(16, os.cpu_count() or 1)
    starts = range(0, count, _CHUNK)
    done = 0
    if workers <= 1 or count <= _CHUNK:
        for start in starts:
            stop = min(start + _CHUNK, count)
            work(start, stop)
            done = stop
            if progress:
                progress(done, count)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work, s, min(s + _CHUNK, count)) for s in starts]
        try:
            for future, start in zip(futures, starts):
                future.result()  # re-raises a worker's BadInput here, in the caller's thread
                done += min(start + _CHUNK, count) - start
                if progress:
                    progress(done, count)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def read_image_files(
    paths: Sequence[Path],
    size: int | None,
    spec: str,
    progress: Progress | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Decode `paths` as RGB into one [N, S, S, 3] array (or the common native size if size is None)."""
    from PIL import Image, UnidentifiedImageError

    if not paths:
        raise BadInput(f"{spec} contains no images.")
    expected: tuple[int, int] | None = None
    if size is None:
        # Without a target size every image must share the first one's size; read its header only.
        try:
            with Image.open(paths[0]) as first:
                expected = first.size
        except (UnidentifiedImageError, OSError) as exc:
            raise BadInput(f"{paths[0]} is not a readable image ({exc}).") from exc
        width, height = expected
    else:
        width = height = size
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            out[i] = _decode(paths[i], size, expected, spec)

    _run_chunks(len(paths), work, progress, workers)
    return out


def resize_images(images: np.ndarray, size: int, workers: int | None = None) -> np.ndarray:
    """Resize uint8 [N, H, W, C] to [N, size, size, C] (shorter side, then centre crop)."""
    from PIL import Image

    n, height, width, channels = images.shape
    if (height, width) == (size, size):
        return images
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    box = _centre_square_box(width, height)

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            pixels = images[i, :, :, 0] if channels == 1 else images[i]
            resized = Image.fromarray(pixels).resize((size, size), Image.BILINEAR, box=box)
            out[i] = np.asarray(resized).reshape(size, size, channels)

    _run_chunks(n, work, None, workers)
    return out
