"""The search space: an architecture value (`Arch`) and the candidate sets it is drawn from (`SearchSpace`)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from typing import Any

from easrec.errors import EasrecError

ATTENTION_KINDS = ("softmax", "linear")
# What EASRec's data-aware gates read: "mean" = the causal running mean of the embedded history up to
# each position (easrec's default); "position" = the embedding layer's output at that position (the paper's).
GATE_INPUTS = ("mean", "position")


@dataclass(frozen=True)
class LayerArch:
    """One transformer block: number of attention heads and FFN inner width."""

    heads: int
    ffn: int


@dataclass(frozen=True)
class Arch:
    """A whole SASRec-family architecture; the unit the search returns and the exporter ships."""

    max_len: int
    d: int
    layers: tuple[LayerArch, ...]
    attention: str = "softmax"
    gates: bool = False
    head_size: int = 16
    gate_input: str = "mean"

    @property
    def depth(self) -> int:
        """Number of transformer blocks."""
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (fields `max_len`, `d`, `layers`, `attention`, `gates`, `head_size`)."""
        out = asdict(self)
        out["layers"] = [asdict(layer) for layer in self.layers]
        if self.gate_input == "mean":
            # Omitted at its default so architectures (and their hashes) written before the option read the same.
            del out["gate_input"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "arch") -> "Arch":
        """Parse the JSON form; a missing or ill-typed field is an error naming it."""
        if not isinstance(data, dict):
            raise EasrecError(f"{source}: expected a JSON object with max_len, d, layers")

        def need_int(name: str, value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EasrecError(f"{source}: field '{name}' must be a positive integer, got {value!r}")
            return value

        for key in ("max_len", "d", "layers"):
            if key not in data:
                raise EasrecError(f"{source}: missing field '{key}'")
        layers_raw = data["layers"]
        if not isinstance(layers_raw, list) or not layers_raw:
            raise EasrecError(f"{source}: field 'layers' must be a non-empty list of {{heads, ffn}}")
        layers = []
        for i, layer in enumerate(layers_raw):
            if not isinstance(layer, dict) or "heads" not in layer or "ffn" not in layer:
                raise EasrecError(f"{source}: field 'layers[{i}]' must be an object with 'heads' and 'ffn'")
            layers.append(LayerArch(need_int(f"layers[{i}].heads", layer["heads"]), need_int(f"layers[{i}].ffn", layer["ffn"])))
        attention = data.get("attention", "softmax")
        if attention not in ATTENTION_KINDS:
            raise EasrecError(f"{source}: field 'attention' must be one of {ATTENTION_KINDS}, got {attention!r}")
        gates = data.get("gates", False)
        if not isinstance(gates, bool):
            raise EasrecError(f"{source}: field 'gates' must be true or false, got {gates!r}")
        gate_input = data.get("gate_input", "mean")
        if gate_input not in GATE_INPUTS:
            raise EasrecError(f"{source}: field 'gate_input' must be one of {GATE_INPUTS}, got {gate_input!r}")
        return cls(
            max_len=need_int("max_len", data["max_len"]),
            d=need_int("d", data["d"]),
            layers=tuple(layers),
            attention=attention,
            gates=gates,
            head_size=need_int("head_size", data.get("head_size", 16)),
            gate_input=gate_input,
        )

    def hash(self) -> str:
        """Stable short hash of the architecture (same arch, same hash, across runs and machines)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """Compact one-line description, e.g. `L100 d32 [2h/64, 1h/128] softmax +gates`."""
        layers = ", ".join(f"{layer.heads}h/{layer.ffn}" for layer in self.layers)
        gates = (" +gates" + ("(position)" if self.gate_input == "position" else "")) if self.gates else ""
        return f"L{self.max_len} d{self.d} [{layers}] {self.attention}{gates}"


def reference_arch(gates: bool = False) -> Arch:
    """The SASRec that `easrec train` builds by default and budgets are relative to."""
    return Arch(max_len=200, d=64, layers=(LayerArch(2, 256), LayerArch(2, 256)), attention="softmax", gates=gates, head_size=32)


@dataclass(frozen=True)
class SearchSpace:
    """Candidate sets for every elastic dimension; every `Arch` the search may return lies inside it."""

    max_lens: tuple[int, ...] = (50, 100, 200)
    ds: tuple[int, ...] = (16, 32, 48, 64)
    heads: tuple[int, ...] = (1, 2, 4)
    ffns: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 3, 4)
    attentions: tuple[str, ...] = ("softmax", "linear")
    head_size: int = 16
    gates: bool = True
    gate_input: str = "mean"

    def __post_init__(self) -> None:
        for name in ("max_lens", "ds", "heads", "ffns", "depths", "attentions"):
            values = getattr(self, name)
            if not values:
                raise EasrecError(f"search space: field '{name}' is empty")
            if name != "attentions" and list(values) != sorted(set(values)):
                raise EasrecError(f"search space: field '{name}' must be strictly increasing, got {values}")
        for kind in self.attentions:
            if kind not in ATTENTION_KINDS:
                raise EasrecError(f"search space: unknown attention kind {kind!r}")
        if self.gate_input not in GATE_INPUTS:
            raise EasrecError(f"search space: field 'gate_input' must be one of {GATE_INPUTS}, got {self.gate_input!r}")

    @property
    def max_heads(self) -> int:
        """Largest head count (the supernet's attention width is max_heads × head_size)."""
        return self.heads[-1]

    def largest(self) -> Arch:
        """The full supernet as an architecture."""
        layer = LayerArch(self.heads[-1], self.ffns[-1])
        return Arch(self.max_lens[-1], self.ds[-1], (layer,) * self.depths[-1], self.attentions[0], self.gates, self.head_size,
                    self.gate_input)

    def smallest(self) -> Arch:
        """The cheapest architecture in the space (for feasibility checks)."""
        layer = LayerArch(self.heads[0], self.ffns[0])
        kind = "linear" if "linear" in self.attentions else self.attentions[0]
        return Arch(self.max_lens[0], self.ds[0], (layer,) * self.depths[0], kind, self.gates, self.head_size, self.gate_input)

    def validate(self, arch: Arch, source: str = "arch") -> Arch:
        """Return `arch` if it lies in the space, else raise naming the first field that does not."""
        checks = [
            ("max_len", arch.max_len, self.max_lens),
            ("d", arch.d, self.ds),
            ("depth", arch.depth, self.depths),
            ("attention", arch.attention, self.attentions),
            ("head_size", arch.head_size, (self.head_size,)),
        ]
        for i, layer in enumerate(arch.layers):
            checks.append((f"layers[{i}].heads", layer.heads, self.heads))
            checks.append((f"layers[{i}].ffn", layer.ffn, self.ffns))
        for name, value, allowed in checks:
            if value not in allowed:
                raise EasrecError(f"{source}: field '{name}' = {value!r} is not in the search space {tuple(allowed)}")
        if arch.gates and not self.gates:
            raise EasrecError(f"{source}: field 'gates' is true but the search space has gates off")
        return arch

    def contains(self, arch: Arch) -> bool:
        """Whether `arch` lies in the space."""
        try:
            self.validate(arch)
        except EasrecError:
            return False
        return True

    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random architecture (per-layer choices independent)."""
        depth = rng.choice(self.depths)
        layers = tuple(LayerArch(rng.choice(self.heads), rng.choice(self.ffns)) for _ in range(depth))
        return Arch(rng.choice(self.max_lens), rng.choice(self.ds), layers, rng.choice(self.attentions), self.gates, self.head_size,
                    self.gate_input)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.gate_input == "mean":
            del out["gate_input"]  # as in Arch.to_dict: hashes of spaces written before the option are unchanged
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSpace":
        """Parse the JSON form."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def hash(self) -> str:
        """Stable short hash: a LUT measured for one space refuses another."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def size(self) -> int:
        """Number of distinct architectures in the space."""
        per_layer = len(self.heads) * len(self.ffns)
        return len(self.max_lens) * len(self.ds) * len(self.attentions) * sum(per_layer**k for k in self.depths)
