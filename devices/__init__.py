"""Hardware back ends: each kind of device has real, simulated and disabled variants chosen by config."""
