"""toonfactory's pair factory: recipes, stages, shards, datasets."""

__version__ = "0.1.0"
