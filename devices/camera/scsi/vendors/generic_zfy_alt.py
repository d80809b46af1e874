"""A second vendor that differs from generic_zfy only in its opcode and sub-command numbers: all a new
vendor with the common layout costs is this file."""

from devices.camera.scsi.vendors import VendorMap

VENDOR = VendorMap(
    name="generic_zfy_alt",
    opcode=0xC8,
    subcommands={
        "INIT": 0xA0,
        "IDENT": 0xA1,
        "INFO_GET": 0xB0,
        "INFO_SET": 0xB1,
        "CLOCK_GET": 0xB2,
        "CLOCK_SET": 0xB3,
        "MSC": 0xC0,
        "RES": 0xC1,
        "BATT": 0xC2,
        "STORAGE": 0xC3,
        "FREE": 0xD0,
    },
)
