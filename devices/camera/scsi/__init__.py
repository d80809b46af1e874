"""Camera control over vendor-specific SCSI commands on the camera's USB mass-storage interface.

Specified in docs/camera-scsi.md. Layers, each replaceable on its own:

- ``transport``: moves one CDB (+ data) to the device and back: ``SgIoTransport`` (Linux SG_IO on
  /dev/sg*) or ``SgDeviceSimTransport`` (the same contract over a UNIX socket to the simulator).
- ``vendors``: one small declarative ``VendorMap`` per vendor (opcode, sub-commands, CDB layout, records).
- ``driver``: ``ScsiCameraControl``, the common ``CameraControl`` function set on a transport + vendor map.
- ``sim``: the camera side for the simulator, answering CDBs from the same simulated camera brain as the
  serial line protocol.
"""
