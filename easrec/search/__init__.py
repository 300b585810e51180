"""Architecture search strategies over the supernet, driven by a `CostModel`."""
