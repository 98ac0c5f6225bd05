"""Teachers: models that make the other side of a pair. One file per kind, listed in factory.kinds."""
