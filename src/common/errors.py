"""The errors a command reports as one `error:` line (bad input, data or checkpoint), not as a
traceback.
"""
from __future__ import annotations


class DataError(Exception):
    """Bad or missing input data; the message names the file and the problem."""


class CheckpointError(Exception):
    """A file that is missing, not a checkpoint, of a future format, or of another model."""


class DeviceError(Exception):
    """A --device this machine does not have (CUDA asked for where PyTorch sees none, or too few)."""
