"""Reading and writing images safely: every odd file becomes an array or a reason, never a crash."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from factory.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
DEFAULT_MAX_PIXELS = 64_000_000
DECODE_PIXELS = 16_000_000  # larger photos are decoded reduced to about this size (faces need no more)
MAX_IMAGE_BYTES = 256 << 20  # an image file is sized before it is read: a 64 MP PNG is under 200 MB


class BadImage(Exception):
    """An input image that cannot become a sample; ``reason`` is a short stats key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to RGB uint8; alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def read_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, fit_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to RGB uint8, EXIF rotation applied; raises BadImage with a reason.

    With ``fit_pixels``, a larger image comes out reduced to about that many pixels, without a
    full-size copy for JPEGs (decoded at 1/2 to 1/8 scale by libjpeg, then resized)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_IMAGE_BYTES:
                raise BadImage("file_too_large", f"{size} bytes > {MAX_IMAGE_BYTES}")
            data = path.read_bytes()
        except OSError as exc:
            raise BadImage("unreadable_file", str(exc)) from None
    else:
        data = source
    if not data:
        raise BadImage("empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise BadImage("decompression_bomb", f"{width}x{height} pixels > {max_pixels}")
            if fit_pixels is not None and width * height > fit_pixels:
                img = _reduced(img, fit_pixels)
            img.load()
            img = ImageOps.exif_transpose(img)
            return np.ascontiguousarray(to_rgb(img))
    except BadImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = "not_an_image" if isinstance(exc, UnidentifiedImageError) else "decompression_bomb"
        raise BadImage(reason, str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage("corrupt_image", str(exc)) from None


def open_video(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> "CheckedCapture":
    """A video opened for reading, refused (BadImage) when its frames are larger than ``max_pixels``: the
    frame size the container and codec declare is read before any frame is decoded (OpenCV cannot decode a
    video frame reduced, as libjpeg does a photo). Every frame read is then held to that size
    (``CheckedCapture``)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise BadImage("unreadable_video", "OpenCV cannot open this video")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > max_pixels:
        capture.release()
        raise BadImage("frame_too_large", f"frames of {width}x{height} pixels > {max_pixels}")
    return CheckedCapture(capture, width, height, max_pixels)


class CheckedCapture:
    """A ``cv2.VideoCapture`` whose ``read`` refuses (BadImage ``frame_size_changed``) a frame of another size
    than the stream declared (or, when it declared none, than its first frame, itself held to
    ``max_pixels``), before the frame goes anywhere: a stream whose frames grow in its middle is stopped
    at the first such frame, so what is read stays the declared size whatever the stream does. (With
    OpenCV 4.11's FFmpeg reader a grown frame comes back at the first size, its decode failed; the
    check holds for readers that hand it over.) Anything else goes to the capture."""

    def __init__(self, capture: cv2.VideoCapture, width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.capture, self.size, self.max_pixels = capture, (height, width), max_pixels

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, frame = self.capture.read()
        if not ok or frame is None:
            return False, None
        height, width = frame.shape[:2]
        if self.size == (0, 0):  # declared no size: the first frame sets it
            if width * height > self.max_pixels:
                raise BadImage("frame_too_large", f"frames of {width}x{height} pixels > {self.max_pixels}")
            self.size = (height, width)
        if (height, width) not in (self.size, self.size[::-1]):  # a rotated stream reads transposed
            raise BadImage("frame_size_changed", f"a frame of {width}x{height} pixels in a stream of "
                           f"{self.size[1]}x{self.size[0]}")
        return True, frame

    def __getattr__(self, name):
        return getattr(self.capture, name)


def _reduced(img: Image.Image, fit_pixels: int) -> Image.Image:
    width, height = img.size
    scale = (fit_pixels / (width * height)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    img.draft("RGB", size)  # JPEG: decode at the smallest DCT scale still >= size
    img.load()
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0) if img.size != size else img


def encode_png(image: np.ndarray, compression: int = 3) -> bytes:
    """PNG bytes of an RGB (or single-channel) uint8 array; deterministic for equal arrays.

    OpenCV's encoder at level 3 is about 3× faster than Pillow's default for 2% more bytes.
    """
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"cannot encode an array of shape {image.shape} as PNG")
    return data.tobytes()


def to_unit(image: np.ndarray) -> np.ndarray:
    """RGB uint8 H×W×3 to float32 3×H×W in [-1, 1]: what every network here takes."""
    return (np.asarray(image, dtype=np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


def from_unit(array: np.ndarray) -> np.ndarray:
    """Float 3×H×W in [-1, 1] back to RGB uint8 H×W×3 (rounded, clipped)."""
    image = ((np.asarray(array, dtype=np.float32).transpose(1, 2, 0) + 1.0) * 127.5).round().clip(0, 255)
    return np.ascontiguousarray(image.astype(np.uint8))


def decode_png(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A dataset image (PNG bytes) as an array in its own mode; raises BadImage when damaged or too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.size[0] * img.size[1] > max_pixels:
                raise BadImage("decompression_bomb", f"{img.size[0]}x{img.size[1]} pixels > {max_pixels}")
            return np.asarray(img)
    except BadImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            SyntaxError, ValueError) as exc:
        raise BadImage("corrupt_image", str(exc)) from None


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Every file under ``folder`` sorted by path (non-images too: they are rejected with a reason)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def named_files(inputs: list[Path], missing: str = "no such file or folder") -> list[Path]:
    """Files named directly, and the images under the folders named (recursively), in order; a path that
    is neither is a UserError ``"{path}: {missing}"``."""
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += [p for p in list_images(path) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: {missing}")
    return files


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def actor_folders(root: Path, nested: bool = False) -> dict[str, list[Path]]:
    """The files of each actor under ``root``: one sub-folder per actor. An actor folder that holds
    folders of images is refused, naming it (a folder of people would become one actor). With ``nested``,
    every folder under ``root`` that holds images is an actor, named by the folder (the same name under
    two parents, train/obama and test/obama, is one actor)."""
    visible = lambda p: p.is_dir() and not any(part.startswith(".") for part in p.relative_to(root).parts)  # noqa: E731
    actors: dict[str, list[Path]] = {}
    if nested:
        for folder in sorted(p for p in root.rglob("*") if visible(p) and _holds_images(p)):
            actors.setdefault(folder.name, []).extend(list_images(folder, recursive=False))
        return actors
    for folder in sorted(p for p in root.iterdir() if visible(p)):
        inner = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if visible(p) and _holds_images(p)]
        if inner:
            raise UserError(f"{folder}: an actor folder that holds folders of images ({', '.join(inner[:4])}"
                            f"{', ...' if len(inner) > 4 else ''}); give one folder of photos per actor, or --nested "
                            "to make each folder of images an actor")
        actors[folder.name] = list_images(folder)
    return actors


def fit_pixels(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """``image`` reduced (area-averaged) to about ``max_pixels`` when it holds more; else as it is."""
    height, width = image.shape[:2]
    if height * width <= max_pixels:
        return image
    scale = (max_pixels / (height * width)) ** 0.5
    return cv2.resize(image, (max(1, int(width * scale)), max(1, int(height * scale))), interpolation=cv2.INTER_AREA)
