"""Enrolling a station: keys generated on the device, its config, its registries, its discovery."""
