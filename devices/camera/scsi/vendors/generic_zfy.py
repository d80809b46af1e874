"""Generic ZFY camera: the reference vendor map of docs/camera-scsi.md (opcode 0xFD, default layout)."""

from devices.camera.scsi.vendors import VendorMap

VENDOR = VendorMap(
    name="generic_zfy",
    opcode=0xFD,
    subcommands={
        "INIT": 0x01,
        "IDENT": 0x02,
        "INFO_GET": 0x10,
        "INFO_SET": 0x11,
        "CLOCK_GET": 0x20,
        "CLOCK_SET": 0x21,
        "MSC": 0x30,
        "RES": 0x40,
        "BATT": 0x41,
        "STORAGE": 0x42,
        "FREE": 0x50,
    },
)
