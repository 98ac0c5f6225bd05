"""Face tracks in video: who is where in every frame, under one id per person.

The detector runs every ``detect_every`` frames (and on every scene cut); in between, each face is
followed by sparse optical flow (Lucas-Kanade, forward-backward checked) as a similarity motion.
norfair links these observations into tracks (Kalman-predicted keypoints, distance in face sizes,
gated by the face embedding), and re-identifies a face that comes back after a cut or an absence
with the embedding: the same person keeps their id. Each track's five alignment keypoints are
carried by that motion and corrected toward the detector only past a dead band, so aligned crops do
not jitter.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from distill.config import InferConfig
from factory.faces import Face, transform_points
from factory.files import write_atomic
from factory.images import open_video
from factory.models.embedding import Embedder, embed, normalise
from factory.sources.video import SceneCuts

log = logging.getLogger(__name__)

TRACKS_FORMAT = "toonfactory.infer.tracks/1"
Recogniser = Callable[[np.ndarray], "str | None"]


@dataclass
class TrackedFace:
    """A face in one frame: its track, the face (box, landmarks, score) and the keypoints to align on."""

    track: int
    face: Face
    keypoints: np.ndarray
    detected: bool
    actor: str | None = None


def flow_motion(previous: np.ndarray, current: np.ndarray, box: np.ndarray, min_points: int = 6) -> np.ndarray | None:
    """The 2×3 similarity motion of the content of ``box`` from grey frame ``previous`` to ``current``, or None.

    Corners inside the box are tracked by sparse optical flow forward and back (kept when they return
    within 1 px); a similarity transform is fitted to them (RANSAC).
    """
    height, width = previous.shape
    x0, y0, x1, y1 = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).astype(int)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    corners = cv2.goodFeaturesToTrack(previous[y0:y1, x0:x1], maxCorners=40, qualityLevel=0.01, minDistance=3)
    if corners is None or len(corners) < min_points:
        return None
    points = (corners.reshape(-1, 2) + [x0, y0]).astype(np.float32)
    options = dict(winSize=(15, 15), maxLevel=2)
    ahead, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, points, None, **options)
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, ahead, None, **options)
    good = (status.ravel() == 1) & (status_back.ravel() == 1) & (np.linalg.norm(back - points, axis=1) < 1.0)
    if good.sum() < min_points:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(points[good], ahead[good], method=cv2.RANSAC, ransacReprojThreshold=2.0)
    return None if matrix is None or inliers.sum() < min_points else matrix


def moved(face: Face, matrix: np.ndarray) -> Face:
    """``face`` carried by a 2×3 motion: box (the bounds of its moved corners), landmarks."""
    x0, y0, x1, y1 = face.box
    corners = transform_points(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]), matrix)
    box = np.concatenate([corners.min(0), corners.max(0)])
    if face.landmarks is None:
        return Face(box, face.score)
    return Face(box, face.score, transform_points(face.landmarks, matrix), face.scheme)


class KeypointStabiliser:
    """A track's keypoints carried frame to frame by the face's own motion (optical flow), and pulled
    toward the detector's keypoints only when off by more than ``deadband`` face sizes (by ``gain``
    of the error); a motion under ``still`` face sizes counts as none. A still face stays still
    instead of jumping with the detector's noise. (A One-Euro filter on the keypoints, tried first,
    added flicker: it spreads each detector jump over many frames; see benchmarks/video_stability.py.)"""

    def __init__(self, size: float, deadband: float = 0.05, gain: float = 0.5, still: float = 0.008):
        self.size, self.deadband, self.gain, self.still = max(size, 1.0), deadband, gain, still
        self.last: np.ndarray | None = None

    def __call__(self, keypoints: np.ndarray, motion: np.ndarray | None, detected: bool) -> np.ndarray:
        if self.last is None or motion is None:
            self.last = keypoints
            return keypoints
        carried = transform_points(self.last, motion)
        if np.linalg.norm(carried - self.last, axis=1).mean() < self.still * self.size:
            carried = self.last
        if detected and np.linalg.norm(keypoints - carried, axis=1).mean() / self.size > self.deadband:
            carried = carried + self.gain * (keypoints - carried)
        self.last = carried
        return carried


class FaceTracks:
    """Tracks faces through one video; call it on every frame in order, then ``write`` the rows.

    ``embedder`` (optional) gates associations and re-identifies people across cuts; without one,
    tracks are linked by motion alone. ``recognise`` names a track's actor from its mean embedding.
    ``config`` gives ``detect_every``, ``smooth`` and ``max_faces``.
    """

    def __init__(self, detector, embedder: Embedder | None = None, config: InferConfig = InferConfig(), *,
                 fps: float = 25.0, match_distance: float = 0.5, same_person: float = 0.6, reid_distance: float = 0.45,
                 remember_seconds: float = 60.0, refresh_seconds: float = 1.0, recognise: Recogniser | None = None):
        from norfair import Tracker
        from norfair.distances import ScalarDistance

        detect_every = config.detect_every  # checked with the other options, once, by InferConfig
        self.detector, self.embedder, self.recognise = detector, embedder, recognise
        self.detect_every, self.smooth, self.fps, self.max_faces = detect_every, config.smooth, fps, config.max_faces
        self.match_distance, self.same_person, self.reid_distance = match_distance, same_person, reid_distance
        self.refresh_frames = max(1, int(refresh_seconds * fps))
        # new tracks wait two frames for an id, the chance to be re-identified as someone seen before
        self._tracker = Tracker(
            distance_function="euclidean", distance_threshold=match_distance, hit_counter_max=2 * detect_every + 2,
            initialization_delay=2, past_detections_length=16, reid_distance_function=self._reid_distance,
            reid_distance_threshold=reid_distance, reid_hit_counter_max=max(1, int(remember_seconds * fps)),
        )
        self._tracker.distance_function = ScalarDistance(self._distance)  # set here: the constructor warns
        self._cuts = SceneCuts()
        self._grey: np.ndarray | None = None
        self._observed: dict[object, tuple[Face, int]] = {}  # track -> (face, frame of its last detection)
        self._smoothers: dict[object, KeypointStabiliser] = {}
        self._embedded: dict[object, int] = {}  # track -> frame of its latest embedding
        self._vectors: dict[object, list[np.ndarray]] = {}  # track -> its latest embeddings
        self.keep_vectors = 8
        self.index = -1
        self.detections = self.embeddings = self.cuts = 0
        self.rows: list[dict] = []
        self.seconds: dict[str, float] = defaultdict(float)  # detect, embed, track (flow, linking, smoothing)
        self._spent = 0.0
        self.actors: dict[int, str | None] = {}

    # distances ------------------------------------------------------------------------------------

    def appearance(self, track) -> np.ndarray | None:
        """The track's mean embedding over its latest ``keep_vectors`` embedded detections."""
        vectors = self._vectors.get(track, [])
        return normalise(np.mean(vectors, axis=0)) if vectors else None

    @staticmethod
    def _moved(points: np.ndarray, reference: np.ndarray, face: Face) -> float:
        return float(np.linalg.norm(points - reference, axis=1).mean()) / max(face.size, 1.0)

    def _distance(self, detection, track) -> float:
        """Mean keypoint distance to the track's prediction in face sizes; infinite across a cut (where
        only re-identification links) and for a face whose embedding says it is someone else."""
        if detection.data["shot"] != track.last_detection.data["shot"]:
            return np.inf
        vector, known = detection.data["embedding"], self.appearance(track)
        if vector is not None and known is not None and np.linalg.norm(vector - known) > self.same_person:
            return np.inf
        return self._moved(detection.points, track.estimate, detection.data["face"])

    def _reid_distance(self, new, old) -> float:
        """Embedding distance of a new track to one lost or unmatched; in the same shot a person does
        not jump: a face more than a face size from where the old track was last seen is someone else."""
        a, b = self.appearance(new), self.appearance(old)
        if a is None or b is None:
            return np.inf
        seen, now = old.last_detection, new.last_detection
        if seen.data["shot"] == now.data["shot"] and self._moved(now.points, seen.points, now.data["face"]) > 1.0:
            return np.inf
        return float(np.linalg.norm(a - b))

    # one frame ------------------------------------------------------------------------------------

    def __call__(self, image: np.ndarray) -> list[TrackedFace]:
        start = time.perf_counter()
        self.index += 1
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        cut = self._cuts(image)
        self.cuts += cut
        if cut:
            self._observed.clear()
        self._spent = 0.0  # detection and embedding, counted apart
        motions = self._motions(grey)
        if cut or self.index % self.detect_every == 0:
            detections = self._detect(image, cut)
        else:
            detections = self._follow(motions)
        self._grey = grey
        for detection in detections:
            detection.data.update(frame=self.index, shot=self.cuts)
        self._tracker.update(detections)
        faces = []
        live = set()
        for track in self._tracker.tracked_objects:  # initializing ones too: they are followed, not shown
            if not track.hit_counter_is_positive or track.last_detection.data.get("frame") != self.index:
                continue
            live.add(track)
            data = track.last_detection.data
            last_seen = self.index if data["detected"] else self._observed.get(track, (None, self.index))[1]
            if track not in self._observed:
                self._smoothers.pop(track, None)  # a new appearance (new track, after a gap or a cut): no glide
            self._observed[track] = (data["face"], last_seen)
            if data["embedding"] is not None:
                self._embedded[track] = self.index
                self._vectors[track] = [*self._vectors.get(track, []), data["embedding"]][-self.keep_vectors:]
            if not track.is_initializing:
                faces.append(self._emit(track, data["face"], data["detected"], motions.get(track)))
        self._observed = {t: v for t, v in self._observed.items() if t in live}
        self._smoothers = {t: s for t, s in self._smoothers.items() if t in live}
        self._forget_merged()
        self.seconds["track"] += time.perf_counter() - start - self._spent
        return sorted(faces, key=lambda f: f.track)

    def _forget_merged(self) -> None:
        """Drop what is kept of tracks norfair removed; a track re-identified as an older one (norfair
        merges it into the old track, which takes its latest detection) hands over its embeddings."""
        kept = set(self._tracker.tracked_objects)
        holder = {id(t.last_detection): t for t in kept}
        for track in [t for t in self._vectors if t not in kept]:
            heir = holder.get(id(track.last_detection))
            if heir is not None and heir is not track:
                self._vectors[heir] = [*self._vectors.get(heir, []), *self._vectors[track]][-self.keep_vectors:]
        self._vectors = {t: v for t, v in self._vectors.items() if t in kept}
        self._embedded = {t: i for t, i in self._embedded.items() if t in kept}

    def _detect(self, image: np.ndarray, cut: bool):
        from norfair import Detection

        self.detections += 1
        t0 = time.perf_counter()
        found = self.detector.detect(image)[: self.max_faces]
        t1 = time.perf_counter()
        self.seconds["detect"] += t1 - t0
        vectors: list[np.ndarray | None] = [None] * len(found)
        wanted = [i for i, face in enumerate(found) if cut or self._needs_embedding(face)]
        if self.embedder is not None and wanted:
            self.embeddings += len(wanted)
            for i, vector in zip(wanted, embed(self.embedder, image, [found[i] for i in wanted])[0]):
                vectors[i] = vector
        self.seconds["embed"] += time.perf_counter() - t1
        self._spent += time.perf_counter() - t0
        return [Detection(face.keypoints5(), data={"face": face, "embedding": vector, "detected": True})
                for face, vector in zip(found, vectors)]

    def _needs_embedding(self, face: Face) -> bool:
        """Embeddings are slow (dlib: 60-200 ms a face on a CPU): a face gets one when it continues no
        face seen in the previous frame (a newcomer, or someone back), or when its track's latest is
        ``refresh_seconds`` old."""
        points = face.keypoints5()
        near = [t for t in self._observed if self._moved(points, t.estimate, face) < self.match_distance]
        return len(near) != 1 or self.index - self._embedded.get(near[0], -self.refresh_frames) >= self.refresh_frames

    def _motions(self, grey: np.ndarray) -> dict[object, np.ndarray]:
        """How each face seen in the previous frame moved since (optical flow; none across a cut)."""
        if self._grey is None:
            return {}
        found = {track: flow_motion(self._grey, grey, face.box) for track, (face, _) in self._observed.items()}
        return {track: matrix for track, matrix in found.items() if matrix is not None}

    def _follow(self, motions: dict[object, np.ndarray]):
        """Faces seen in the previous frame, moved by optical flow; a face is followed for at most two
        detection intervals after its last detection (then it must be detected again)."""
        from norfair import Detection

        detections = []
        for track, matrix in motions.items():
            face, detected_at = self._observed[track]
            if self.index - detected_at <= 2 * self.detect_every:
                carried = moved(face, matrix)
                detections.append(Detection(carried.keypoints5(), data={"face": carried, "embedding": None, "detected": False}))
        return detections

    def _emit(self, track, face: Face, detected: bool, motion: np.ndarray | None) -> TrackedFace:
        keypoints = face.keypoints5()
        if self.smooth:
            if track not in self._smoothers:
                self._smoothers[track] = KeypointStabiliser(face.size)
            keypoints = self._smoothers[track](keypoints, motion, detected)
        if self.recognise is not None and detected:
            vector = self.appearance(track)
            if vector is not None:
                self.actors[track.id] = self.recognise(vector)
        item = TrackedFace(track.id, face, keypoints, detected, self.actors.get(track.id))
        self.rows.append({
            "frame": self.index, "track": track.id, "box": [round(float(v), 1) for v in face.box],
            "landmarks": np.round(keypoints, 1).tolist(), "score": round(float(face.score), 3),
            "detected": detected, **({"actor": item.actor} if self.recognise is not None else {}),
        })
        return item

    def summary(self) -> dict:
        tracks = sorted({row["track"] for row in self.rows})
        return {"frames": self.index + 1, "detections": self.detections, "embeddings": self.embeddings,
                "cuts": self.cuts, "tracks": len(tracks)}

    def write(self, path: Path, source: Path, models: dict[int, str] | None = None) -> Path:
        """``<video>.tracks.json``: one row per face per frame (frame, track, box, the five stabilised
        keypoints it was aligned on, score, whether the detector found it), and per track its actor and model."""
        tracks = {}
        for row in self.rows:
            entry = tracks.setdefault(str(row["track"]), {"frames": 0, "first": row["frame"]})
            entry["frames"] += 1
            entry["last"] = row["frame"]
            if self.recognise is not None:
                entry["actor"] = self.actors.get(row["track"])
            if models is not None:
                entry["model"] = models.get(row["track"])
        record = {"format": TRACKS_FORMAT, "video": str(source), "fps": self.fps, "detect_every": self.detect_every,
                  "smooth": self.smooth, "landmarks": "keypoints5 (eyes, nose tip, mouth corners)",
                  **self.summary(), "tracks": tracks, "rows": self.rows}
        write_atomic(path, json.dumps(record).encode())
        return path


def track_strip(video: Path, rows: list[dict], frames: list[int], width: int = 320, columns: int = 4) -> np.ndarray:
    """A grid of ``frames`` of ``video`` with each tracked face's box and id drawn (rows as in tracks.json).
    The video is read as every video is (``open_video``): frames over the pixel limit, or changing size in
    the middle of the stream, raise BadImage with the reason."""
    wanted, tiles = set(frames), {}
    by_frame: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_frame[row["frame"]].append(row)
    capture = open_video(video)
    index = 0
    while len(tiles) < len(wanted):
        ok, bgr = capture.read()
        if not ok:
            break
        if index in wanted:
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            for row in by_frame[index]:
                x0, y0, x1, y1 = (int(v) for v in row["box"])
                colour = tuple(int(c) for c in np.array(cv2.applyColorMap(np.uint8([[row["track"] * 47 % 256]]),
                                                                          cv2.COLORMAP_HSV))[0, 0][::-1])
                cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2 if row["detected"] else 1)
                cv2.putText(image, str(row["track"]), (x0, max(y0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2)
            cv2.putText(image, f"#{index}", (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2)
            scale = width / image.shape[1]
            tiles[index] = cv2.resize(image, (width, int(round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        index += 1
    capture.release()
    shown = [tiles[i] for i in frames if i in tiles]
    blank = np.zeros_like(shown[0])
    shown += [blank] * (-len(shown) % columns)
    return np.vstack([np.hstack(shown[i:i + columns]) for i in range(0, len(shown), columns)])
