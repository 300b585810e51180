"""Latency lookup tables: the measurement protocol, per-component LUTs, end-to-end validation.

`build_lut(get_device("cpu"), space, runtime="executorch", out="lut.json")` measures the whole programs
that pin down every component of a search space (in context: a component's entry is what it adds
inside a shipped graph) and solves the entries; `LatencyTable.load("lut.json", space, device_info)` is a
`CostModel` for the search; `validate_lut("lut.json", device, n_subnets=50)` scores it against whole
subnets, with the test-retest noise floor beside it, and stores the correction it picks.
"""

from easrec.profiling.lut import LatencyTable, build_lut, device_fingerprint
from easrec.profiling.validate import validate_lut

__all__ = ["LatencyTable", "build_lut", "device_fingerprint", "validate_lut"]
