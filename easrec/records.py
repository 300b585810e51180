"""Typed records of a run directory: what each stage writes and `summary` and the report read.

Every record is a dataclass with a `version` (a file without one is version 1, as written before
records were typed), `from_dict(data, source)` that checks each known field's type and raises an
`EasrecError` naming the file and field, and `to_dict()`. Keys a record does not know are kept in
`extra` and written back, so older and newer writers' files survive a read-write cycle.

| file | record |
|---|---|
| `data_stats.json` | `DataRecord` |
| `commands.json` | `CommandsRecord` |
| `metrics.json` | `TrainRecord` (any run) and `SearchRecord` (a search run's fields of the same file) |
| `artifacts/artifacts.json`, `artifacts.json` | `ArtifactRecord` rows |
| `bench.json` | `BenchRecord` rows |
| `energy.json` | `EnergyRecord` rows (`easrec energy --out` writes one object: a list of one) |

The LUT (`lut.json`, `easrec profile`'s table) keeps its own versioned format: `easrec.profiling.table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from easrec.errors import EasrecError

RECORD_VERSION = 1
NUM = (int, float)
R = TypeVar("R", bound="Record")


def _f(types: tuple[type, ...], *, required: bool = False) -> Any:
    """A record field: None by default, its JSON types (and whether a file must hold it) in the metadata."""
    return field(default=None, metadata={"types": types, "required": required})


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", dict: "an object", list: "a list"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


@dataclass
class Record:
    """Base of the run records: version, unknown keys kept, field checks naming the file and field."""

    KIND: ClassVar[str] = "record"
    version: int = RECORD_VERSION
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    # Known keys the file held (None values included) so that to_dict() writes back exactly those.
    given: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)

    @classmethod
    def data_fields(cls) -> list:
        """The record's own fields (without version, extra, given)."""
        return [f for f in fields(cls) if f.name not in ("version", "extra", "given")]

    @classmethod
    def from_dict(cls: type[R], data: Any, source: str = "") -> R:
        """Parse one JSON object; a wrong type or a missing required field is an EasrecError naming both."""
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise EasrecError(f"{where}a {cls.KIND} record must be a JSON object, got {type(data).__name__}")
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise EasrecError(f"{where}field 'version' must be a positive integer, got {version!r}", field="version")
        if version > RECORD_VERSION:
            raise EasrecError(f"{where}field 'version' is {version}; this easrec reads {cls.KIND} records up to "
                              f"version {RECORD_VERSION} (upgrade easrec)", field="version")
        known, kwargs = set(), {}
        for f in cls.data_fields():
            key = f.metadata.get("key", f.name)
            known.add(key)
            if key not in data or data[key] is None:
                if f.metadata.get("required"):
                    raise EasrecError(f"{where}field '{key}' is missing from the {cls.KIND} record", field=key)
                continue
            value, types = data[key], f.metadata["types"]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                raise EasrecError(f"{where}field '{key}' must be {_type_names(types)}, got {value!r:.60}", field=key)
            kwargs[f.name] = value
        extra = {k: v for k, v in data.items() if k not in known and k != "version"}
        record = cls(version=version, extra=extra, given=frozenset(k for k in data if k in known), **kwargs)
        record.check(where)
        return record

    def check(self, where: str) -> None:
        """Checks across fields (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: extra keys, the fields that are set or were in the file, and the version."""
        out = dict(self.extra)
        for f in self.data_fields():
            key = f.metadata.get("key", f.name)
            value = getattr(self, f.name)
            if value is not None or key in self.given:
                out[key] = value
        out["version"] = self.version
        return out


def records_from(data: Any, cls: type[R], source: str = "") -> list[R]:
    """The rows of a list file (one object is a list of one, as `easrec energy --out` writes it)."""
    if data is None:
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise EasrecError(f"{source}: expected a list of {cls.KIND} records, got {type(data).__name__}")
    return [cls.from_dict(row, f"{source}[{i}]") for i, row in enumerate(data)]


MODELS = ("baseline", "subnet")


def _check_model(record: Any, where: str) -> None:
    if record.model is not None and record.model not in MODELS:
        raise EasrecError(f"{where}field 'model' must be baseline or subnet, got {record.model!r}", field="model")


@dataclass
class DataRecord(Record):
    """data_stats.json: the data set's statistics (`Dataset.stats()`)."""

    KIND: ClassVar[str] = "data"
    name: str | None = _f((str,))
    source: str | None = _f((str,))
    users: int | None = _f((int,))
    items: int | None = _f((int,))
    interactions: int | None = _f((int,))
    density: float | None = _f(NUM)
    eval_users: int | None = _f((int,))
    seq_len: dict | None = _f((dict,))


@dataclass
class CommandsRecord(Record):
    """commands.json: the commands that made the run, and versions beside the report's own."""

    KIND: ClassVar[str] = "commands"
    commands: list | None = _f((list,))
    versions: dict | None = _f((dict,))

    @classmethod
    def from_dict(cls, data: Any, source: str = "") -> "CommandsRecord":
        """Parse commands.json; a bare list of commands is the oldest form."""
        return super().from_dict({"commands": data} if isinstance(data, list) else data, source)


@dataclass
class TrainRecord(Record):
    """metrics.json of a trained or searched model: architecture, metrics, size, training time, latency."""

    KIND: ClassVar[str] = "train"
    arch: dict | None = _f((dict,))
    test: dict | None = _f((dict,))
    valid: dict | None = _f((dict,))
    protocol: str | None = _f((str,))
    keep_seen: bool | None = _f((bool,))
    params: int | None = _f((int,))
    mflops: float | None = _f(NUM)
    train_seconds: float | None = _f(NUM)
    best_epoch: int | None = _f((int,))
    predicted_ms: float | None = _f(NUM)
    steps: int | None = _f((int,))
    best_step: int | None = _f((int,))
    # Written into metrics.json by earlier bench stages; read only for such runs (bench.json holds them now).
    measured_ms: float | None = _f(NUM)
    baseline_measured_ms: float | None = _f(NUM)
    budget_ms: float | None = _f(NUM)
    measured_over_budget: float | None = _f(NUM)


@dataclass
class SearchRecord(Record):
    """The search's fields of a searched run's metrics.json: budget, predicted cost, candidates."""

    KIND: ClassVar[str] = "search"
    budget: float | None = _f(NUM, required=True)
    unit: str | None = _f((str,))
    predicted_cost: float | None = _f(NUM)
    reference_cost: float | None = _f(NUM)
    budget_used: float | None = _f(NUM)
    cost_ratio: float | None = _f(NUM)
    arch_description: str | None = _f((str,))
    candidates: list | None = _f((list,))
    finalists: list | None = _f((list,))
    finalist_epochs: int | None = _f((int,))
    search_steps: int | None = _f((int,))
    alpha_entropy_at_end: float | None = _f(NUM)
    strategy: str | None = _f((str,))

    def check(self, where: str) -> None:
        """Each candidate and finalist is an object naming its architecture (what the search writes)."""
        for name in ("candidates", "finalists"):
            for i, c in enumerate(getattr(self, name) or []):
                if not isinstance(c, dict) or not isinstance(c.get("arch"), str):
                    raise EasrecError(f"{where}field '{name}' row {i} must be an object with 'arch' (a string), "
                                      f"got {c!r:.60}", field=name)

    @property
    def cost_unit(self) -> str:
        """The unit of budget and costs (ms for a LUT search)."""
        return self.unit or "ms"


@dataclass
class ArtifactRecord(Record):
    """One row of artifacts.json: an exported model file and its parity check."""

    KIND: ClassVar[str] = "artifact"
    model: str | None = _f((str,), required=True)
    path: str | None = _f((str,), required=True)
    format: str | None = _f((str,))
    quantize: str | None = _f((str,))
    size_bytes: int | None = _f((int,))
    parity: dict | None = _f((dict,))

    def check(self, where: str) -> None:
        """The model is baseline or subnet."""
        _check_model(self, where)

    @property
    def artifact_ndcg(self) -> float | None:
        """NDCG@10 the artifact itself scored in the parity check."""
        return ((self.parity or {}).get("artifact_metrics") or {}).get("ndcg@10")


@dataclass
class BenchRecord(Record):
    """One row of bench.json: an artifact's measured latency on a device."""

    KIND: ClassVar[str] = "bench"
    model: str | None = _f((str,), required=True)
    median_ms: float | None = _f(NUM, required=True)
    quantize: str | None = _f((str,))
    artifact: str | None = _f((str,))
    device: str | None = _f((str,))
    p10_ms: float | None = _f(NUM)
    p90_ms: float | None = _f(NUM)
    runs: int | None = _f((int,))
    threads: int | None = _f((int,))

    def check(self, where: str) -> None:
        """The model is baseline or subnet."""
        _check_model(self, where)


@dataclass
class EnergyRecord(Record):
    """One row of energy.json: `EnergyResult.to_dict()`, plus model and quantize when `easrec run` wrote it."""

    KIND: ClassVar[str] = "energy"
    artifact: str | None = _f((str,), required=True)
    model: str | None = _f((str,))
    quantize: str | None = _f((str,))
    device: str | None = _f((str,))
    runs: int | None = _f((int,))
    threads: int | None = _f((int,))
    source: str | None = _f((str,))
    tool: str | None = _f((str,))
    joules_per_inference: float | None = _f(NUM)
    mj_per_inference: float | None = _f(NUM)
    co2e_kg_per_inference: float | None = _f(NUM)
    country_iso_code: str | None = _f((str,))
    parts: dict | None = _f((dict,))
    warnings: list | None = _f((list,))

    def check(self, where: str) -> None:
        """The model is baseline or subnet; each part is an object."""
        _check_model(self, where)
        for k, p in (self.parts or {}).items():
            if not isinstance(p, dict):
                raise EasrecError(f"{where}field 'parts' entry {k!r} must be an object", field="parts")

    @property
    def mj(self) -> float | None:
        """Net energy per inference in mJ."""
        if self.mj_per_inference is not None:
            return float(self.mj_per_inference)
        return None if self.joules_per_inference is None else 1000.0 * self.joules_per_inference
