"""`toonfactory warp`: fit a webtoon geometry profile, preview a warp."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from factory.errors import UserError
from toonfactory.cli.common import check_out_file, console

app = typer.Typer(no_args_is_help=True, help="Face geometry warps between human and webtoon faces.")


def _shapes(folder: Path, option: str, detector, exclude: list[str]) -> tuple[list, list[str]]:
    """face68 landmarks of the largest face of every image in ``folder``, and the files without one."""
    from factory.images import BadImage, IMAGE_SUFFIXES, list_images, read_image
    from factory.stages.warp import face68

    if not folder.is_dir():
        raise UserError(f"{folder}: {option}: not a folder")
    shapes, missed = [], []
    files = [p for p in list_images(folder) if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in exclude]
    for path in files:
        try:
            points = face68(read_image(path), detector)
        except BadImage:
            points = None
        (shapes.append(points) if points is not None else missed.append(path.name))
    return shapes, missed


@app.command("fit-profile")
def fit_profile(
    real: Path = typer.Option(..., "--real", help="folder of human face photos"),
    toon: Path = typer.Option(..., "--toon", help="folder of webtoon face images"),
    out: Path = typer.Option(..., "--out", help="profile JSON to write"),
    detector: str = typer.Option("mediapipe", help="landmark detector for both sets: mediapipe or dlib"),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", help="file name to leave out (repeatable)"),
):
    """Estimate a geometry profile (mean webtoon vs human landmark displacement) from two image sets."""
    from factory.faces import build_detector
    from factory.files import write_atomic
    from warping.profile import ProfileError, fit_profile as fit

    if detector not in ("mediapipe", "dlib"):
        raise UserError(f"--detector: choose mediapipe or dlib, got {detector!r}")
    check_out_file(out, ".json", [real, toon])
    found = build_detector(detector)
    real_shapes, real_missed = _shapes(real, "--real", found, exclude or [])
    toon_shapes, toon_missed = _shapes(toon, "--toon", found, exclude or [])
    try:
        profile = fit(real_shapes, toon_shapes, info={"detector": detector, "real": str(real), "toon": str(toon),
                                                      "no_face": sorted(real_missed + toon_missed)})
    except ProfileError as exc:
        raise UserError(f"--real/--toon: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, profile.to_text().encode())
    console.print(f"[green]wrote[/green] {out}: {len(real_shapes)} real and {len(toon_shapes)} toon faces "
                  f"({len(real_missed)} + {len(toon_missed)} without a face)")
    disp = profile.displacement
    console.print(f"mean displacement {float((disp ** 2).sum(1).mean() ** 0.5):.3f} eye distances (rms)")


@app.command()
def preview(
    image: Path = typer.Argument(..., help="a face image"),
    out: Path = typer.Option(..., "--out", help="PNG to write: before | after | landmark overlay"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="profile JSON (default: the shipped one)"),
    strength: float = typer.Option(1.0, "--strength", min=0.0, max=1.0),
    method: str = typer.Option("tps", "--method", help="tps or pa"),
    inverse: bool = typer.Option(False, "--inverse", help="webtoon -> human geometry instead of human -> webtoon"),
    detector: str = typer.Option("mediapipe", help="mediapipe or dlib"),
    size: int = typer.Option(512, "--size", min=64, max=2048, help="longest side of each panel"),
):
    """Write a side-by-side preview of a warp so a person can judge it at a glance."""
    import cv2

    from factory.faces import build_detector
    from factory.files import write_atomic
    from factory.images import BadImage, encode_png, read_image
    from factory.stages.warp import face68, load_profile
    from warping.warp import build_warp

    if method not in ("tps", "pa"):
        raise UserError(f"--method: choose tps or pa, got {method!r}")
    if detector not in ("mediapipe", "dlib"):
        raise UserError(f"--detector: choose mediapipe or dlib, got {detector!r}")
    check_out_file(out, ".png", [image, *([profile] if profile else [])])
    geometry = load_profile(profile, field="--profile")
    try:
        picture = read_image(image)
    except BadImage as exc:
        raise UserError(f"{image}: IMAGE: {exc}") from None
    scale = size / max(picture.shape[:2])
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    points = face68(picture, build_detector(detector, min_size=16))
    if points is None:
        raise UserError(f"{image}: IMAGE: no face with landmarks found by {detector}")
    target = geometry.target(points, "inverse" if inverse else "forward", strength)
    warp = build_warp(points, target, picture.shape[:2], method)
    panels = render_preview(picture, warp)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, encode_png(panels))
    console.print(f"[green]wrote[/green] {out} (motion applied: {warp.scale:.2f} of requested, "
                  f"max landmark shift {float(abs(warp.dst - warp.src).max()):.1f} px)")


def render_preview(image, warp):
    """before | after | overlay (warped grid, landmarks before in red and after in green)."""
    import cv2
    import numpy as np

    h, w = image.shape[:2]
    after = warp.apply(image)
    step = max(8, min(h, w) // 24)
    lines = np.zeros((h, w), np.uint8)
    lines[::step, :] = 255
    lines[:, ::step] = 255
    grid = warp.apply(lines) > 60
    overlay = (after * 0.6).astype(np.uint8)
    overlay[grid] = (255, 255, 255)
    radius = max(1, min(h, w) // 200)
    for (x0, y0), (x1, y1) in zip(warp.src, warp.dst):
        cv2.line(overlay, (int(x0), int(y0)), (int(x1), int(y1)), (255, 255, 0), 1, cv2.LINE_AA)
        cv2.circle(overlay, (int(x0), int(y0)), radius, (255, 60, 60), -1, cv2.LINE_AA)
        cv2.circle(overlay, (int(x1), int(y1)), radius, (60, 255, 60), -1, cv2.LINE_AA)
    return np.hstack([image, after, overlay])
