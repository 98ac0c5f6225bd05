"""The stages a sample flows through: faces → [segment] → [warp] → teacher → [person-only,
backgrounds] → augment → gates. Each file holds one stage and its recipe section."""
