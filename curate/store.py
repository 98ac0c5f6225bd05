"""The curation folder: crops, manifest, features, overrides, and the trees other commands read.

    OUT/faces/<id>.png             every candidate crop (the pool; never deleted)
    OUT/characters/<name>/<id>.png kept faces per character or cluster (the `folder` source reads it)
    OUT/actors/<actor>/<id>.png    kept face crops per actor (`cast gallery OUT/actors` reads it)
    OUT/review/<group>.html        kept and dropped, with reasons and scores
    OUT/manifest.json              provenance and every decision
    OUT/features.npz               feature vectors by id (no pickles)
    OUT/journal.jsonl              sources curated since the last save, one line each (appended per file;
                                   folded into manifest.json and features.npz when the run saves)
    OUT/overrides.json             a person's decisions: {"<group>": {"<id>": "keep" | "drop"}}

A source file already in the manifest (same sha256) is not read again; earlier decisions stay
unless an override changes them. A run killed midway keeps every file its journal recorded.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from factory.errors import UserError
from factory.files import FolderLock, append_text, inside, staged, subfolder, write_atomic
from factory.images import encode_png

MANIFEST_VERSION = 1


class Workspace:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self.features_path = self.root / "features.npz"
        self.overrides_path = self.root / "overrides.json"
        self.journal_path = self.root / "journal.jsonl"
        self.manifest = self._read_manifest()
        self.features = self._read_features()
        self._replay_journal()

    def _read_manifest(self) -> dict:
        empty = {"version": MANIFEST_VERSION, "sources": {}, "faces": {}, "groups": {}}
        if not self.manifest_path.is_file():
            return empty
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.manifest_path}: not a curation manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
            raise UserError(f"{self.manifest_path}: not a version-{MANIFEST_VERSION} curation manifest")
        return {**empty, **manifest}

    def _read_features(self) -> dict[str, np.ndarray]:
        if not self.features_path.is_file():
            return {}
        try:
            with np.load(self.features_path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:  # a file cut short is no zip
            raise UserError(f"{self.features_path}: unreadable feature file ({exc})") from None

    def _replay_journal(self) -> None:
        """Sources a killed run recorded after its last save; a line cut short by the kill is left out."""
        if not self.journal_path.is_file():
            return
        for line in self.journal_path.read_text().splitlines():
            try:
                entry = json.loads(line)
                features = {k: np.frombuffer(bytes.fromhex(v["hex"]), "<f4").reshape(v["shape"])
                            for k, v in entry["features"].items()}
                sha, source, faces = entry["sha"], entry["source"], entry["faces"]
            except (ValueError, KeyError, TypeError):
                continue
            self.manifest["sources"][sha] = source
            self.manifest["faces"].update(faces)
            self.features.update(features)

    def record(self, sha: str) -> None:
        """Append one source's manifest entries and features to the journal (cheap, unlike :meth:`save`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        source = self.manifest["sources"][sha]
        faces = {f: self.manifest["faces"][f] for f in source["faces"]}
        features = {f: {"shape": list(self.features[f].shape), "hex": self.features[f].astype("<f4").tobytes().hex()}
                    for f in faces if f in self.features}
        line = json.dumps({"sha": sha, "source": source, "faces": faces, "features": features}, sort_keys=True)
        append_text(self.journal_path, line + "\n")

    def overrides(self) -> dict[str, dict[str, str]]:
        """``{group: {id: "keep" | "drop"}}`` from overrides.json (absent: none)."""
        if not self.overrides_path.is_file():
            return {}
        try:
            data = json.loads(self.overrides_path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.overrides_path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise UserError(f"{self.overrides_path}: expected {{\"<group>\": {{\"<id>\": \"keep\" | \"drop\"}}}}")
        for group, items in data.items():
            bad = {k: v for k, v in items.items() if v not in ("keep", "drop")}
            if bad:
                raise UserError(f"{self.overrides_path}: {group}: decisions must be 'keep' or 'drop', got {bad}")
        return data

    def write_crop(self, face_id: str, crop: np.ndarray) -> str:
        path = subfolder(self.root, "faces") / f"{face_id}.png"
        write_atomic(path, encode_png(crop))
        return path.relative_to(self.root).as_posix()

    def group(self, name: str, kind: str) -> dict:
        return self.manifest["groups"].setdefault(name, {"kind": kind, "decisions": {}})

    def publish(self, group: str, face_id: str, keep: bool) -> None:
        """Put a kept face's crop in its group's folder, or take a dropped one out (the pool keeps it)."""
        target = inside(self.root, f"{group}/{face_id}.png", f"{self.manifest_path}: group {group!r}")
        if keep and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, (self.root / "faces" / f"{face_id}.png").read_bytes())
        elif not keep and target.exists():
            target.unlink()

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.features:
            with staged(self.features_path) as tmp:
                np.savez(tmp, **self.features)
        write_atomic(self.manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True).encode())
        self.journal_path.unlink(missing_ok=True)  # folded into the two files above

    def published_files(self) -> list[Path]:
        files = [p for top in ("characters", "actors") for p in sorted((self.root / top).rglob("*.png"))]
        return files + [self.manifest_path]


def locked(root: Path) -> FolderLock:
    """One curation run per folder at a time (a second is refused; a dead run's lock is taken over), in a
    folder curate made: empty, marked, or holding its manifest."""
    return FolderLock(Path(root), "toonfactory curate", kind="curate", earlier="manifest.json")


def apply_decision(ws: Workspace, group: str, face_id: str, auto: dict, overrides: dict[str, dict[str, str]]) -> dict:
    """The decision for a face in a group: a person's override, else the earlier decision, else ``auto``."""
    decisions = ws.manifest["groups"][group]["decisions"]
    decision = decisions.get(face_id) or auto
    wanted = overrides.get(group, {}).get(face_id)
    if wanted is not None:
        decision = {**decision, "keep": wanted == "keep", "by": "override"}
    decisions[face_id] = decision
    ws.publish(group, face_id, decision["keep"])
    return decision
