"""The base of every config section, and reading YAML into validated sections.

A leaf module: every room's config models derive from :class:`Strict`, and every reader of a
YAML file (recipes, training sections, teacher files) goes through :func:`read_yaml` and
:func:`validate_section`, so every mistake is reported the same way: ``yaml.path: message``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Iterator, TypeVar, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from factory.errors import RecipeError, UserError

T = TypeVar("T")


class Strict(BaseModel):
    """Base for every recipe section: unknown keys are an error, not a silent no-op; so is a NaN or an
    infinity in a number (NaN passes no bound's check, and either poisons a loss or a threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# A pluggable kind (a teacher, a source, a mask, an inpainter, an adapter, a detector, an embedder, a
# realifier) is declared one way: a Strict model with a ``kind: Literal["name"]`` field, a docstring whose
# first line says what it is, and ``build()`` that imports the heavy machinery (an adapter's is ``trainer()``,
# the trainer class ``adapt.training`` runs).
# A family is a tuple of them, read by ``one_of`` (the recipe type) and ``kind_names``; every family is
# listed in ``toonfactory/kinds.py``, which ``toonfactory validate --kinds`` prints.


def one_of(kinds: tuple[type[Strict], ...]) -> Any:
    """The type of a field that takes one kind of a family, told apart by its ``kind`` key."""
    return Annotated[Union[kinds], Field(discriminator="kind")]


def kind_name(kind: type[Strict]) -> str:
    """The ``kind`` value a kind's config is named by."""
    return get_args(kind.model_fields["kind"].annotation)[0]


def kind_names(kinds: tuple[type[Strict], ...]) -> list[str]:
    return [kind_name(kind) for kind in kinds]


def choose_kind(kinds: tuple[type[Strict], ...], name: str, options: dict, field: str, what: str) -> Strict:
    """The config of kind ``name`` of a family with ``options``; an unknown kind or a bad option is a
    UserError naming ``field`` (the option or recipe field that named it)."""
    chosen = {kind_name(kind): kind for kind in kinds}
    if name not in chosen:
        raise UserError(f"{field}: unknown {what} {name!r} (choose from {sorted(chosen)})")
    try:
        return chosen[name].model_validate({"kind": name, **options})
    except ValidationError as exc:
        said = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg'].removeprefix('Value error, ')}"
                         for e in exc.errors())
        raise UserError(f"{field}: bad option for the {name} {what}: {said}") from None


MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_NODES = 100_000


def read_yaml(path: str | Path) -> dict:
    """A recipe file's raw mapping; a missing, oversized, non-UTF-8 or broken file is the user's mistake.

    Aliases are allowed, but the document they expand to is bounded (an alias bomb is refused
    before anything is built from it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise UserError(f"{path}: {size} bytes; a recipe file may hold at most {MAX_RECIPE_BYTES} bytes")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        "save the recipe as UTF-8 YAML") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            expanded = _expanded_size(node, {}, set())
            if expanded > MAX_RECIPE_NODES:
                raise RecipeError(str(path), [f"(yaml): anchors and aliases expand to more than {MAX_RECIPE_NODES} "
                                              "nodes; write the values out"])
        data = (loader.construct_document(node) if node is not None else None) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [f"(yaml): {exc}"]) from None
    except RecursionError:
        raise RecipeError(str(path), ["(yaml): nested too deeply"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise RecipeError(str(path), ["(recipe): must be a mapping of sections"])
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:  # a date, a set, bytes: YAML types a recipe has no use for
        raise RecipeError(str(path), [f"(yaml): {exc}; write values as text, numbers, booleans, lists or "
                                      "mappings (quote a date: \"2024-01-01\")"]) from None
    return data


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many nodes a YAML node becomes once every alias is copied out (a cycle counts as too many)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        return MAX_RECIPE_NODES + 1
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [item for pair in node.value for item in pair]
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_RECIPE_NODES:
            break
    open_nodes.discard(key)
    sizes[key] = total
    return total


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
                raise UserError(f"--set {item}: `{part}` is not a section (of {origin})")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise UserError(f"--set {item}: the value is not valid YAML ({problem})") from None
    return data


def blame_overrides(exc: RecipeError, overrides: list[str]) -> RecipeError:
    """The same problems, those of fields given with ``--set`` named as such (not the file's fault)."""
    given = {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}

    def source(problem: str) -> str | None:
        where = problem.split(":", 1)[0]
        return next((item for key, item in given.items()
                     if where == key or where.startswith((key + ".", key + "["))), None)

    marked = [f"--set {source(p)}: {p}" if source(p) else p for p in exc.problems]
    origin = "--set" if all(source(p) for p in exc.problems) else exc.path
    return RecipeError(origin, marked)


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


def missing_paths(model: BaseModel, produced: list[Path] = (), sections: set[str] | None = None) -> list[str]:
    """``yaml.path: PATH does not exist`` for every path field (of ``sections`` only, when given) whose
    file or folder is missing, except those at or inside a path in ``produced`` (made by an earlier step)."""
    return [f"{dotted(loc)}: {path} does not exist" for loc, path in path_fields(model)
            if (sections is None or loc[0] in sections)
            and not path.exists() and not any(path == p or p in path.parents for p in map(Path, produced))]


def validate_section(model: type[T] | Any, data: Any, origin: str) -> T:
    """Validate ``data`` as ``model`` (a class or a type such as a tagged union); every problem is
    reported with its YAML path in one RecipeError naming ``origin``."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise RecipeError(origin, problems(exc, data)) from None


def validate_options(model: type[T], options: dict) -> T:
    """Options of a command (or of its library call) as ``model``, validated once: every problem named
    by its option as the command line spells it (``--detect-every 0: ...``), all in one UserError."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:  # a rule over several options: its message names them
                lines.append(message)
                continue
            name = str(err["loc"][0])
            value = options.get(name)
            shown = repr(value) if isinstance(value, str) else value
            lines.append(f"--{name.replace('_', '-')} {shown}: {message}")
        raise UserError("; ".join(dict.fromkeys(lines))) from None
