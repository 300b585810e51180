"""`easrec run`'s presets: the baseline, the search space and the effort of each stage (`--preset`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from easrec.space import SearchSpace, reference_arch


@dataclass
class Preset:
    """Sizes and effort of one pipeline run."""

    baseline: dict = field(default_factory=lambda: reference_arch().to_dict())
    space: dict = field(default_factory=lambda: SearchSpace().to_dict())
    epochs: int = 200
    patience: int = 10
    lr: float = 1e-3
    batch_size: int = 256
    targets: str = "last"  # training samples of the baseline and the fine-tune (`TrainConfig.targets`)
    search_epochs: int = 20
    finalist_epochs: int = 2  # fine-tune epochs per finalist (`easrec.search.finalists`); 0 takes α's choice
    validate_subnets: int = 20
    profile_max_seconds: float = 1.5
    bench_runs: int = 100
    energy_runs: int = 500
    energy_seconds: float = 3.0


PRESETS: dict[str, Preset] = {
    "full": Preset(),
    # Small enough for `make demo` on a 2-core machine in a few minutes, every stage real.
    "quick": Preset(
        baseline={"max_len": 50, "d": 32, "layers": [{"heads": 2, "ffn": 128}] * 2, "attention": "softmax",
                  "gates": False, "head_size": 16},
        space=SearchSpace(max_lens=(20, 50), ds=(16, 32), heads=(1, 2), ffns=(32, 128), depths=(1, 2),
                          attentions=("softmax",)).to_dict(),
        # Windows with a loss at every position: about 3x faster per epoch than prefixes, which the demo needs.
        epochs=15, patience=3, lr=3e-3, batch_size=128, targets="all", search_epochs=3, validate_subnets=8, profile_max_seconds=0.5,
        bench_runs=50, energy_runs=200, energy_seconds=2.0,
    ),
}
