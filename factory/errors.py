"""Typed errors for a user's mistakes: the CLI prints them and exits 2 without writing output."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad recipe, missing file, unwritable output)."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe that does not validate; holds every problem, each with its YAML path."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the recipe\n{lines}")


class ModelLoadError(UserError):
    """A checkpoint that is missing or not what was expected."""

    def __init__(self, path, expected: str):
        super().__init__(f"{path}: cannot load model: {expected}")


class Interrupted(UserError):
    """Ctrl-C: the message says what was kept and how to resume."""

    exit_code = 130
