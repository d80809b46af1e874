"""Simulated hardware: cameras, docks and readers that speak the same protocols as the real ones."""
