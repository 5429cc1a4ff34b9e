"""Decode folders of image files (JPEG, PNG…) into one uint8 array, and resize arrays of images.

Used by the folder-based dataset kinds (ImageNet subsets, Tiny-ImageNet, `folder:`), and to honour
`image_size` for the array-based ones. PIL is imported inside the functions so that importing
`ccli.data.sources` (as `ccli eval` does) stays cheap.

Channels: a file is grayscale when PIL opens it in a one-intensity mode (GRAY_MODES, or a palette
of grays). `folder:` keeps 1 channel when every file is grayscale and reads all as RGB otherwise
(`folder_channels`); the photo datasets (ImageNet subsets, Tiny-ImageNet) are always RGB.
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

# PIL modes that hold one intensity per pixel: "1" bilevel, "L" 8-bit, "LA"/"La" gray + alpha (the
# alpha is dropped, as RGBA's is), "I;16*" 16-bit PNG/TIFF, "I" 32-bit integer, "F" float.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

# Bump when what `folder:` decodes from the same files changes; it enters that kind's fingerprint
# (ccli.data.sources) so artifacts cached from an older decoding are not reused.
# 2: grayscale folders are read as 1 channel (were 3 equal ones), 16-bit gray is scaled to 8 bits.
FOLDER_DECODING = 2


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


def is_gray(image) -> bool:
    """Whether an opened image holds one intensity per pixel (its mode, or a palette of grays)."""
    if image.mode in GRAY_MODES:
        return True
    if image.mode in ("P", "PA"):
        palette = image.getpalette("RGB") or []
        return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette), 3))
    return False


def _to_gray(image):
    """A grayscale image as 8-bit "L". Integer modes are read as 16-bit (0..65535 → 0..255, rounded):
    PIL's own conversion clips them at 255, which turns a 16-bit scan white."""
    from PIL import Image

    if image.mode.startswith("I"):
        pixels = np.asarray(image).astype(np.int64).clip(0, 65535)
        return Image.fromarray(((pixels * 255 + 32767) // 65535).astype(np.uint8), "L")
    return image if image.mode == "L" else image.convert("L")


def _open_error(path: Path, exc: Exception) -> BadInput:
    return BadInput(f"{path} is not a readable image ({exc}).")


def _decode(path: Path, size: int | None, expected: tuple[int, int] | None, spec: str,
            channels: int = 3) -> np.ndarray:
    """One file as uint8 [H, W, channels]; channels 1 only for a grayscale file."""
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
                    draft = "L" if channels == 1 else "RGB"
                    image.draft(draft, (int(image.size[0] * scale) + 1, int(image.size[1] * scale) + 1))
            if is_gray(image):
                image = _to_gray(image)
                if channels == 3:
                    image = image.convert("RGB")  # R = G = B = the gray
            elif channels == 1:
                raise BadInput(f"{path} is a colour image in a source read as grayscale.")
            else:
                image = image.convert("RGB")
            if size is not None:
                image = _fit(image, size)
            return np.asarray(image).reshape(image.size[1], image.size[0], channels)
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _open_error(path, exc) from exc


def count_gray(paths: Sequence[Path], workers: int | None = None) -> tuple[int, Path | None]:
    """(how many of `paths` are grayscale, the first that is not): PIL reads only each file's header
    (a palette image's palette too)."""
    from PIL import Image, UnidentifiedImageError

    gray = np.zeros(len(paths), dtype=bool)

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            try:
                with Image.open(paths[i]) as image:
                    gray[i] = is_gray(image)
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
                raise _open_error(paths[i], exc) from exc

    _run_chunks(len(paths), work, None, workers)
    colour = np.flatnonzero(~gray)
    return int(gray.sum()), (paths[int(colour[0])] if colour.size else None)


def folder_channels(paths: Sequence[Path], spec: str, workers: int | None = None, announce: bool = True) -> int:
    """1 when every file is grayscale, else 3; announced, a mixed folder says that its gray images become RGB."""
    from ccli import log

    gray, first_colour = count_gray(paths, workers)
    if first_colour is None:
        if announce:
            log.debug(f"{spec}: all {len(paths):,} images are grayscale: read as 1 channel")
        return 1
    if gray and announce:
        log.info(f"{spec}: {gray:,} of {len(paths):,} images are grayscale and the others colour "
                 f"(e.g. {first_colour.name}), so every image is read as RGB (3 channels)")
    return 3


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
    channels: int = 3,
) -> np.ndarray:
    """Decode `paths` into one [N, S, S, channels] array (or the common native size if size is None):
    RGB, or with channels=1 grayscale files as their gray."""
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
            raise _open_error(paths[0], exc) from exc
        width, height = expected
    else:
        width = height = size
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)

    def work(start: int, stop: int) -> None:
        for i in range(start, stop):
            out[i] = _decode(paths[i], size, expected, spec, channels)

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
