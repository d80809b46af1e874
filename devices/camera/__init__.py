"""Body-camera control: one function set (the vendors' common workstation API), several transports."""
