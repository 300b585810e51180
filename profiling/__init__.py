"""Latency lookup tables: the measurement protocol, per-component LUTs, end-to-end validation.

`build_lut(get_device("cpu"), space, runtime="executorch", out="lut.json")` measures every component
of a search space; `LatencyTable.load("lut.json", space, device_info)` is a `CostModel` for the
search; `validate_lut("lut.json", device, n_subnets=50)` scores it against whole subnets.
"""

from easrec.profiling.lut import LatencyTable, build_lut, device_fingerprint
from easrec.profiling.validate import validate_lut

__all__ = ["LatencyTable", "build_lut", "device_fingerprint", "validate_lut"]
