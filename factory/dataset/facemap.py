"""The embedding map: a dataset's faces laid out in 2-D, coloured by source, character or teacher.

Each pair's real side is embedded with dlib's face descriptor (the face box comes from the
landmarks in the sample's json, dlib's 5-point predictor finds the keypoints in it); a dataset whose
samples carry no face landmarks gets a cheap image feature instead (a small grey thumbnail plus a
colour histogram). t-SNE (scikit-learn) lays the vectors out; fewer than 5 samples get a PCA.
The map is written as ``DIR/embedding_map.png`` and ``DIR/embedding_map.json`` (coordinates by key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np

from factory.dataset.reader import Entry, index_samples, read_image_field
from factory.files import write_atomic
from factory.images import encode_png

GroupBy = Literal["source", "character", "teacher"]
MAP_PNG = "embedding_map.png"
MAP_JSON = "embedding_map.json"


def section(meta: dict, name: str) -> dict:
    """A json record's section ``name`` as a dict; absent, or of another type (a damaged or hostile
    record), it is empty, so a page or a map shows the sample without it rather than failing."""
    value = meta.get(name) if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def group_of(meta: dict, by: GroupBy) -> str:
    """A sample's group: ``source`` is its input (a packaged portrait or a file), ``character`` the
    portrait's name or the file's folder (one folder per character), ``teacher`` the teacher's kind."""
    if by == "teacher":
        return str(section(meta, "teacher").get("kind"))
    item = str(section(meta, "source").get("item"))
    if ":" in item and "/" not in item:  # a packaged portrait, e.g. skimage:astronaut
        return item if by == "source" else item.split(":", 1)[1]
    return Path(item).name if by == "source" else Path(item).parent.name


def face_box(meta: dict) -> np.ndarray | None:
    """The face's box on the real side, in pixels of the pair, from the json's landmarks."""
    warp = section(meta, "warp")
    points = warp.get("dst") if warp.get("side", "real") == "real" and warp.get("dst") else None
    points = points or section(meta, "faces").get("landmarks")
    if not points:
        return None
    try:
        points = np.asarray(points, np.float32)
    except (TypeError, ValueError):  # not a list of points: no box, as for a sample without landmarks
        return None
    if points.ndim != 2 or points.shape[1] < 2 or not len(points) or not np.isfinite(points).all():
        return None
    points = points[:, :2]
    return np.concatenate([points.min(0), points.max(0)])


def pixel_feature(image: np.ndarray) -> np.ndarray:
    """A cheap image feature: a 16x16 grey thumbnail (zero mean, unit norm) and an 8-bin hue-saturation histogram."""
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = (grey - grey.mean()).ravel()
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 8], [0, 180, 0, 256]).ravel()
    return np.concatenate([grey / (np.linalg.norm(grey) + 1e-6), hist / (hist.sum() + 1e-6)])


def embed_faces(out: Path, entries: list[Entry], progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, str]:
    """(N, D) vectors of the real sides and the feature's name (``dlib`` or ``pixels``)."""
    boxes = [face_box(e.meta) for e in entries]
    embedder = None
    if all(box is not None for box in boxes):
        from factory.faces import Face
        from factory.models.embedding import DlibEmbedder

        embedder = DlibEmbedder()
    vectors = []
    for n, (entry, box) in enumerate(zip(entries, boxes)):
        image = read_image_field(out, entry, "real")
        if embedder is None:
            vectors.append(pixel_feature(image))
        else:
            crop = embedder.align(image, Face(box=box, score=1.0))
            vectors.append(embedder.embed_aligned([crop])[0])
        if progress is not None:
            progress((n + 1) / len(entries))
    return np.stack(vectors).astype(np.float32), "dlib" if embedder is not None else "pixels"


def layout_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) positions in [0, 1]: t-SNE, or PCA for fewer than 5 points."""
    if len(vectors) < 5:
        centred = vectors - vectors.mean(0)
        coords = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T if len(vectors) > 1 else np.zeros((len(vectors), 2))
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(vectors) - 1) / 3))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    span = coords.max(0) - coords.min(0)
    return (coords - coords.min(0)) / np.where(span > 0, span, 1.0)


def draw_map(coords: np.ndarray, thumbs: list[np.ndarray], groups: list[str], title: str, size: int = 900) -> np.ndarray:
    """Thumbnails at their map positions, framed in their group's colour, with a legend: RGB uint8."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    names = sorted(set(groups))
    colours = {g: plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(i % 20) for i, g in enumerate(names)}
    figure, axes = plt.subplots(figsize=(size / 100, size / 100), dpi=100)
    zoom = 0.9 * min(1.0, 4.0 / max(np.sqrt(len(thumbs)), 1.0))
    for (x, y), thumb, group in zip(coords, thumbs, groups):
        box = AnnotationBbox(OffsetImage(thumb, zoom=zoom), (x, y), frameon=True, pad=0.15,
                             bboxprops={"edgecolor": colours[group], "linewidth": 2.5})
        axes.add_artist(box)
    for group in names:
        axes.scatter([], [], color=colours[group], label=group, s=60)
    axes.set_xlim(-0.08, 1.08), axes.set_ylim(-0.08, 1.08)
    axes.set_xticks([]), axes.set_yticks([])
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, frameon=False)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return image


def write_map(out: Path, by: GroupBy = "character", limit: int | None = 500, seed: int = 0,
              progress: Callable[[float], None] | None = None) -> dict:
    """Embed, lay out and draw the dataset's faces (the first ``limit``); writes the PNG and the JSON."""
    out = Path(out)
    entries = index_samples(out)[:limit]
    vectors, feature = embed_faces(out, entries, progress)
    coords = layout_2d(vectors, seed)
    groups = [group_of(e.meta, by) for e in entries]
    thumbs = [cv2.resize(read_image_field(out, e, "toon"), (48, 48), interpolation=cv2.INTER_AREA) for e in entries]
    method = "t-SNE" if len(entries) >= 5 else "PCA"
    title = f"{out.name}: {len(entries)} faces, {feature} features, {method}, coloured by {by}"
    png = out / MAP_PNG
    write_atomic(png, encode_png(draw_map(coords, thumbs, groups, title)))
    record = {"feature": feature, "method": method, "by": by, "seed": seed,
              "points": [{"key": e.key, "x": round(float(x), 4), "y": round(float(y), 4), "group": g}
                         for e, (x, y), g in zip(entries, coords, groups)]}
    write_atomic(out / MAP_JSON, json.dumps(record, indent=1).encode())
    return {"png": png, "json": out / MAP_JSON, **record}
