"""The `toonfactory` command: the one place where the rooms are wired together."""
