"""Frames of videos as a source: ``every`` frames apart within a shot, never across a scene cut.

Building the source reads each video once (64×36 thumbnails) to find its shots; item ``i`` is then
one fixed frame, decoded by seeking, so any process loads the same frame for the same index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.errors import UserError
from factory.images import DECODE_PIXELS, VIDEO_SUFFIXES, BadImage, fit_pixels, open_video
from factory.sample import Sample


class SceneCuts:
    """A cut is a frame whose colour histogram (hue × saturation × value, 64×36 thumbnail) differs from
    the previous frame's by more than ``threshold`` (1 - correlation): on the shared clips cuts score
    0.2-0.5, motion and scrolling at most 0.05."""

    def __init__(self, threshold: float = 0.12):
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> bool:
        hsv = cv2.cvtColor(cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256])
        cv2.normalize(hist, hist)
        previous, self._previous = self._previous, hist
        return previous is not None and 1 - cv2.compareHist(previous, hist, cv2.HISTCMP_CORREL) > self.threshold


class VideoSourceConfig(Strict):
    """Frames of a video file, or of every video in a folder (domain: real)."""

    kind: Literal["video"]
    path: Path = Field(description="a video file, or a folder of videos (" + ", ".join(sorted(VIDEO_SUFFIXES)) + ")")
    every: int = Field(30, ge=1, description="frames between two samples of one shot (a shot shorter gives one)")
    cut_threshold: float = Field(0.12, gt=0.0, le=1.0, description="histogram change (1 - correlation) that is a cut")

    def build(self) -> "VideoSource":
        return VideoSource(video_files(self.path, "source.path"), self.every, self.cut_threshold)


def video_files(path: Path, field: str) -> list[Path]:
    """``path`` if it is a file, else the videos under the folder ``path``, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{field}: {path} is not a video file or a folder")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise UserError(f"{field}: {path} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return files


@dataclass(frozen=True)
class Shot:
    start: int
    end: int  # exclusive


def shots(path: Path, threshold: float) -> list[Shot]:
    """The shots of a video: runs of frames between scene cuts."""
    try:
        capture = open_video(path)
    except BadImage as exc:
        raise UserError(f"{path}: {exc} (a source of the recipe)") from None
    cuts, found, index = SceneCuts(threshold), [0], 0
    try:
        while True:
            try:
                ok, frame = capture.read()
            except BadImage as exc:
                raise UserError(f"{path}: {exc} (a source of the recipe)") from None
            if not ok:
                break
            if cuts(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)):
                found.append(index)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise UserError(f"{path}: no frame of this video could be decoded (a source of the recipe)")
    return [Shot(a, b) for a, b in zip(found, found[1:] + [index])]


def shot_frames(shot: Shot, every: int) -> list[int]:
    """Frames of a shot ``every`` apart, the first half a step in (not the cut's frame, often a blend)."""
    first = shot.start + min(every, shot.end - shot.start) // 2
    return list(range(first, shot.end, every))


class VideoSource:
    """Items are (video, frame, shot); ``load`` seeks to the frame and decodes it."""

    def __init__(self, files: list[Path], every: int, cut_threshold: float = 0.12):
        self.items: list[tuple[Path, int, int]] = []
        for path in files:
            for number, shot in enumerate(shots(path, cut_threshold)):
                self.items += [(path, frame, number) for frame in shot_frames(shot, every)]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, sample: Sample, position: int | None = None) -> Sample:
        """Fill the sample from item ``position`` (``index % len`` when None)."""
        path, frame, shot = self.items[sample.index % len(self) if position is None else position]
        sample.meta["source"] = {"item": f"{path}#{frame}", "domain": "real", "frame": frame, "shot": shot}
        image = read_frame(path, frame)
        if image is None:
            return sample.reject("unreadable_frame")
        sample.real = image
        return sample


def read_frame(path: Path, frame: int, max_pixels: int = DECODE_PIXELS) -> np.ndarray | None:
    """Frame ``frame`` of a video as RGB uint8 (reduced to about ``max_pixels``), or None."""
    try:
        capture = open_video(path)
    except BadImage:
        return None
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, image = capture.read()
    except BadImage:
        return None
    finally:
        capture.release()
    if not ok:
        return None
    return cv2.cvtColor(fit_pixels(image, max_pixels), cv2.COLOR_BGR2RGB)
