"""Station state: atomic files, the TinyDB current-state store and its single owner."""
