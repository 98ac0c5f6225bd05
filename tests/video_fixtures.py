"""Synthetic videos of two known faces (the packaged astronaut and Grace Hopper portraits), for tracking tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FRAME = (270, 480)  # height, width
PATCH = 110


def portraits() -> list[np.ndarray]:
    """The two packaged portraits, cropped around the face and resized to PATCH×PATCH."""
    from factory.sources.folders import packaged_portraits

    images = packaged_portraits()
    astronaut = images["skimage:astronaut"][20:260, 100:340]
    hopper = images["matplotlib:grace_hopper"][60:380, 90:410]
    return [cv2.resize(np.ascontiguousarray(face), (PATCH, PATCH), interpolation=cv2.INTER_AREA)
            for face in (astronaut, hopper)]


def background(shade: int) -> np.ndarray:
    height, width = FRAME
    ramp = np.linspace(shade - 30, shade + 30, width, dtype=np.float32)
    return np.repeat(np.repeat(ramp[None, :, None], height, 0), 3, 2).clip(0, 255).astype(np.uint8)


def two_face_frames(count: int, cut_at: int | None = None, gap: int = 4) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Frames with the astronaut (index 0) on the left and Hopper (1) on the right, drifting 2 px a
    frame. With ``cut_at``: a cut to another scene, ``gap`` frames of it with nobody, then both
    faces come back on swapped sides. Each frame comes with the top-left corner of each face."""
    faces = portraits()
    out = []
    for i in range(count):
        after = cut_at is not None and i >= cut_at
        image = background(170 if not after else 80)
        corners: list[tuple[int, int]] = []
        if not after or i >= cut_at + gap:
            drift = 2 * i
            spots = [(40 + drift, 60), (300 + drift // 2, 80)]
            if after:
                spots = spots[::-1]
            for face, (x, y) in zip(faces, spots):
                image[y:y + PATCH, x:x + PATCH] = face
            corners = spots
        out.append((image, corners))
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
