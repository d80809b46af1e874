"""The station's web UI: the kiosk on the local touchscreen and the admin pages on the LAN."""
