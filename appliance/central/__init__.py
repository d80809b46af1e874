"""Where recordings go after the station: the central store (an archive directory for now)."""
