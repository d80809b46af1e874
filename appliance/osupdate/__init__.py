"""Whole-image A/B updates of the station's OS: signed bundles, slots, trial boots (docs/os-update.md)."""
