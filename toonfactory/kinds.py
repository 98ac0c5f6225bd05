"""Every pluggable kind, family by family: the one list of them (`toonfactory validate --kinds` prints it).

Each kind is declared the same way (``factory.config.one_of``): a Strict config model with a
``kind: Literal["name"]`` field, a docstring whose first line says what it is, and ``build()`` (an
adapter: ``trainer()``, the trainer class ``adapt.training`` runs). Adding a kind is adding its config beside its code and its class to the family's
tuple; it then shows here. The list lives in the composition root because the families span rooms
(adapters in ``adapt``, realifiers in ``casting``) that the factory never imports.
"""

from __future__ import annotations

from adapt import ADAPTERS
from casting.realify import REALIFIERS
from factory.config import kind_name
from factory.faces import DETECTORS
from factory.kinds import SOURCES, TEACHERS
from factory.models.embedding import EMBEDDERS
from factory.stages.inpaint import INPAINTERS
from factory.stages.segment import MASKS

# family: (where a recipe or a command names one, its kinds)
FAMILIES = {
    "teachers": ("recipe teacher.kind", TEACHERS),
    "sources": ("recipe source.kind", SOURCES),
    "masks": ("recipe segment.mask.kind", MASKS),
    "inpainters": ("recipe segment.inpaint.kind", INPAINTERS),
    "adapters": ("recipe adapt.kind", ADAPTERS),
    "detectors": ("recipe faces.detector, --detector", DETECTORS),
    "embedders": ("--embedder (dlib, or an .onnx path)", EMBEDDERS),
    "realifiers": ("cast rank --realify (by the file: .onnx, .yaml, else a checkpoint)", REALIFIERS),
}


def kind_rows() -> list[tuple[str, str, str, str]]:
    """(family, where it is named, kind, what it is) for every kind."""
    return [(family, where, kind_name(kind), (kind.__doc__ or "").strip().splitlines()[0])
            for family, (where, kinds) in FAMILIES.items() for kind in kinds]
