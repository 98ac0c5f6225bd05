"""Virtual casting: actor galleries, realify, ranking with votes, and the visual report."""
