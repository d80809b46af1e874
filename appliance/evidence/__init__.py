"""Tamper-evidence primitives: RFC 6962 Merkle trees, C2SP signed notes and tlog checkpoints."""
