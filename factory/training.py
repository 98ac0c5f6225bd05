"""What every trainer shares (the student's, the StyleGAN2 and the LoRA adaptations): checkpoint
folders, optimizer states, divergence, sample grids.

A checkpoint is a ``step_NNNNNNN`` folder written whole under a ``.tmp`` name and then renamed, so a
folder with the final name is always complete; the newest ``keep`` are kept. Tensors go to
safetensors and everything else to JSON: nothing is ever unpickled.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from factory.errors import UserError
from factory.files import refuse_link, subfolder

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint is kept."""


class CheckpointFolder:
    """The complete ``step_*`` folders under ``root``, oldest first (a link there is none: never read, never pruned)."""

    def __init__(self, root: Path, keep: int | None = None):
        self.root, self.keep = Path(root), keep

    def all(self) -> list[Path]:
        return sorted(p for p in self.root.glob("step_*")
                      if p.is_dir() and not p.is_symlink() and not p.name.endswith(".tmp"))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def final(self, step: int) -> Path:
        return self.root / f"step_{step:07d}"

    def staging(self, step: int) -> Path:
        return self.root / f"step_{step:07d}.tmp"

    def start(self, step: int) -> Path:
        """A fresh, empty staging folder for ``step`` (a stale one, left by a killed run, is removed)."""
        subfolder(self.root.parent, self.root.name)
        staging = self.staging(step)
        if refuse_link(staging).exists():
            shutil.rmtree(staging)
        staging.mkdir()  # a fresh folder of this run's: only its own files are written into it
        return staging

    def finish(self, step: int) -> Path:
        """The staged folder renamed over ``step``'s final name; the oldest beyond ``keep`` removed. A folder that
        holds one someone made in it (an export) is never removed: pruning skips it, and one saved over (a resume
        from an older step) moves to ``replaced/``."""
        final = self.final(step)
        if refuse_link(final).exists():
            if _made_in(final):
                aside = self._aside(final)
                final.rename(aside)
                log.warning("%s: held %s; moved to %s before this run's step %d took its name", final,
                            ", ".join(_made_in(aside)), aside, step)
            else:
                shutil.rmtree(final)
        self.staging(step).rename(final)
        if self.keep:
            for old in self.all()[: -self.keep]:
                if _made_in(old):  # an export made into it (`toonfactory export`'s default CHECKPOINT/export): kept whole
                    log.info("%s: kept beyond the last %d checkpoints: it holds %s", old, self.keep, ", ".join(_made_in(old)))
                    continue
                shutil.rmtree(old)
        return final

    def _aside(self, final: Path) -> Path:
        """A free name under ``replaced/`` for ``final`` (step_0000500-1, -2, ...)."""
        folder = subfolder(self.root, "replaced")
        n = 1
        while (folder / f"{final.name}-{n}").exists():
            n += 1
        return folder / f"{final.name}-{n}"

    def diverged(self, where: str, step: int, losses: dict[str, float], advice: str) -> TrainingDiverged:
        """The error for a non-finite loss at ``step``, naming the checkpoint a resume would start from."""
        latest = self.latest()
        kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was saved yet"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        return TrainingDiverged(f"{where}: training diverged at step {step} (non-finite loss: {shown}); {kept}. {advice}")


def _made_in(checkpoint: Path) -> list[str]:
    """The folders in a checkpoint folder, which holds files only unless someone made one there (an export)."""
    return sorted(p.name for p in checkpoint.iterdir() if p.is_dir())


def optimizer_state(optimizer, prefix: str) -> tuple[dict, dict]:
    """An optimizer's state as (tensors keyed ``prefix.INDEX.NAME``, the JSON-able rest)."""
    state = optimizer.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        for name, value in values.items():
            if hasattr(value, "detach"):
                tensors[f"{prefix}.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"].setdefault(str(index), {})[name] = value
    return tensors, plain


def load_optimizer(optimizer, tensors: dict, plain: dict, prefix: str) -> None:
    """Restore what :func:`optimizer_state` saved (torch moves each state to its parameter's device)."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for index, values in plain["state"].items():
        state.setdefault(int(index), {}).update(values)
    current = optimizer.state_dict()["param_groups"]  # JSON made its tuples (Adam's betas) lists
    groups = [{k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in group.items()}
              for group, now in zip(plain["param_groups"], current)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def grid(images: list[np.ndarray], columns: int) -> np.ndarray:
    """Equally sized RGB images in rows of ``columns`` (the last row padded black)."""
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    cells = images + [np.zeros_like(images[0])] * (rows * columns - len(images))
    return np.concatenate([np.concatenate(cells[r * columns:(r + 1) * columns], axis=1) for r in range(rows)])
