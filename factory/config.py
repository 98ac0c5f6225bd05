"""The base of every config section, and reading YAML into validated sections.

A leaf module: every room's config models derive from :class:`Strict`, and every reader of a
YAML file (recipes, training sections, teacher files) goes through :func:`read_yaml` and
:func:`validate_section`, so every mistake is reported the same way: ``yaml.path: message``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from factory.errors import RecipeError, UserError

T = TypeVar("T")


class Strict(BaseModel):
    """Base for every recipe section: unknown keys are an error, not a silent no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml(path: str | Path) -> dict:
    """A recipe file's raw mapping; a missing file or broken YAML is the user's mistake."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [f"(yaml): {exc}"]) from None
    if not isinstance(data, dict):
        raise RecipeError(str(path), ["(recipe): must be a mapping of sections"])
    return data


def apply_overrides(data: dict, overrides: list[str], origin: str) -> dict:
    """Apply ``a.b=value`` overrides; values are parsed as YAML scalars (numbers, booleans, lists)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected FIELD=VALUE, e.g. output.count=1000")
        dotted, raw = item.split("=", 1)
        node = data
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"{origin}: --set {dotted}: `{part}` is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def _locate(loc: tuple, data: Any) -> str:
    """A YAML path for a pydantic error location; union tags (the ``kind`` values) are dropped."""
    parts, node = [], data
    for item in loc:
        if isinstance(node, dict) and item in node:
            parts.append(str(item))
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            node = node[item]
        elif isinstance(node, dict) and item == node.get("kind"):
            continue
        else:
            parts.append(str(item))
            node = None
    return ".".join(parts) or "(recipe)"


def problems(exc: ValidationError, data: Any) -> list[str]:
    """Each pydantic error as ``yaml.path: message``, in order, without repeats."""
    found = [f"{_locate(err['loc'], data)}: {err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]
    return sorted(set(found), key=found.index)


def path_fields(model: BaseModel, loc: tuple = ()) -> Iterator[tuple[tuple, Path]]:
    """(location, path) of every ``Path`` value in a validated section, nested sections and lists too."""
    for name, value in model:
        here = loc + (name,)
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for index, item in items:
            where = here if index is None else here + (index,)
            if isinstance(item, Path):
                yield where, item
            elif isinstance(item, BaseModel):
                yield from path_fields(item, where)


def dotted(loc: tuple) -> str:
    """``("source", "folders", 0)`` as ``source.folders[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


def resolve_relative(data: dict, model: BaseModel, base: Path, keep: set[str] = frozenset()) -> dict:
    """``data`` with every relative path field made absolute against ``base`` (the recipe's folder),
    except those whose location starts with one of ``keep`` (given on the command line: the cwd's)."""
    data = json.loads(json.dumps(data))
    for loc, path in path_fields(model):
        if path.is_absolute():
            continue
        name = dotted(loc)
        origin = Path.cwd() if any(name == k or name.startswith((k + ".", k + "[")) for k in keep) else base
        node = data
        for part in loc[:-1]:
            node = node[part]
        node[loc[-1]] = str((origin / path).resolve())
    return data


def missing_paths(model: BaseModel, produced: list[Path] = ()) -> list[str]:
    """``yaml.path: PATH does not exist`` for every path field whose file or folder is missing,
    except those at or inside a path in ``produced`` (made by an earlier step of the run)."""
    return [f"{dotted(loc)}: {path} does not exist" for loc, path in path_fields(model)
            if not path.exists() and not any(path == p or p in path.parents for p in map(Path, produced))]


def validate_section(model: type[T] | Any, data: Any, origin: str) -> T:
    """Validate ``data`` as ``model`` (a class or a type such as a tagged union); every problem is
    reported with its YAML path in one RecipeError naming ``origin``."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise RecipeError(origin, problems(exc, data)) from None
