"""The report's figures, rendered with matplotlib's Agg backend to PNG bytes (no display, no files).

Each function takes plain numbers and returns PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

PART_COLORS = {"cpu": "#4C72B0", "gpu": "#55A868", "ram": "#C44E52", "battery": "#8172B2"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """`data:image/png;base64,...` for an <img src>."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (lower cost x, higher accuracy y), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def accuracy_vs_latency(points: list[dict[str, Any]], metric: str = "NDCG@10", unit: str = "ms") -> bytes | None:
    """Scatter of candidates {"x", "y", "label", "kind": candidate|baseline|subnet, "measured": bool}
    with the Pareto front drawn as a step line and its points ringed."""
    pts = [p for p in points if p.get("x") is not None and p.get("y") is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    front = set(pareto_front([(p["x"], p["y"]) for p in pts]))
    styles = {"candidate": dict(c="#999999", marker="o", s=22), "baseline": dict(c="#C44E52", marker="s", s=60),
              "subnet": dict(c="#4C72B0", marker="*", s=140)}
    seen = set()
    for i, p in enumerate(pts):
        kind = p.get("kind", "candidate")
        st = dict(styles.get(kind, styles["candidate"]))
        label = None
        key = (kind, bool(p.get("measured")))
        if key not in seen:
            seen.add(key)
            label = {"candidate": "search candidates", "baseline": "baseline SASRec", "subnet": "searched subnet"}.get(kind, kind)
            label += " (measured)" if p.get("measured") else " (predicted)"
        face = st["c"] if p.get("measured", False) or kind == "candidate" else "none"
        ax.scatter([p["x"]], [p["y"]], marker=st["marker"], s=st["s"], facecolors=face, edgecolors=st["c"], label=label, zorder=3)
        if p.get("label") and kind != "candidate":
            ax.annotate(p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(6, 4), fontsize=7)
    fr = sorted((pts[i] for i in front), key=lambda p: p["x"])
    if len(fr) >= 1:
        ax.step([p["x"] for p in fr], [p["y"] for p in fr], where="post", color="#DD8452", lw=1.2, zorder=2,
                label="Pareto front")
        ax.scatter([p["x"] for p in fr], [p["y"] for p in fr], s=90, facecolors="none", edgecolors="#DD8452", lw=1.2, zorder=4)
    ax.set_xlabel(f"latency ({unit}, lower is better)")
    ax.set_ylabel(f"{metric} (test, higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def lut_scatter(predicted: Sequence[float], measured: Sequence[float], title: str = "", band: float = 0.10,
                highlight: list[dict[str, Any]] | None = None) -> bytes | None:
    """LUT-predicted vs measured latency (ms) with y = x and the ±band region shaded."""
    if not predicted or not measured:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    lo = min(min(predicted), min(measured)) * 0.85
    hi = max(max(predicted), max(measured)) * 1.15
    xs = [lo, hi]
    ax.fill_between(xs, [x * (1 - band) for x in xs], [x * (1 + band) for x in xs], color="#55A868", alpha=0.18,
                    label=f"±{band:.0%} of measured")
    ax.plot(xs, xs, color="#55A868", lw=1)
    inside = [abs(p - m) <= band * m for p, m in zip(predicted, measured)]
    ax.scatter([m for m, k in zip(measured, inside) if k], [p for p, k in zip(predicted, inside) if k], s=18,
               c="#4C72B0", label="within band", zorder=3)
    ax.scatter([m for m, k in zip(measured, inside) if not k], [p for p, k in zip(predicted, inside) if not k], s=18,
               c="#C44E52", label="outside band", zorder=3)
    for h in highlight or []:
        if h.get("predicted") is not None and h.get("measured") is not None:
            ax.scatter([h["measured"]], [h["predicted"]], marker="*", s=150, c="#DD8452", zorder=4, label=h.get("label"))
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("LUT prediction (ms)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def search_trace(entries: list[dict[str, Any]], unit: str = "") -> bytes | None:
    """The search over its steps: expected cost against the tightening target, λ, and the entropy of α."""
    rows = [e for e in entries if "step" in e and "expected_cost" in e]
    if not rows:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.0))
    steps = [e["step"] for e in rows]
    axes[0].plot(steps, [e["expected_cost"] for e in rows], lw=1, label="E[cost]")
    axes[0].plot(steps, [e["target"] for e in rows], lw=1, ls="--", label="target")
    axes[0].set_title(f"expected cost ({unit})", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, [e["lambda"] for e in rows], lw=1, color="#C44E52")
    axes[1].set_title("λ (dual ascent)", fontsize=9)
    axes[2].plot(steps, [e.get("entropy", float("nan")) for e in rows], lw=1, color="#55A868")
    axes[2].set_title("entropy of α (nats, all choices)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def energy_bars(rows: list[dict[str, Any]]) -> bytes | None:
    """Stacked bars of mJ per inference: rows {"label", "parts": {part: mJ}, "sources": {part: source}}.

    Estimated parts are hatched, so the figure itself says which bars are not measurements."""
    rows = [r for r in rows if r.get("parts")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.8, 1.3 * len(rows) + 2.5), 3.8))
    parts = [p for p in ("cpu", "gpu", "ram", "battery") if any(r["parts"].get(p) for r in rows)] or ["cpu"]
    bottoms = [0.0] * len(rows)
    x = list(range(len(rows)))
    for part in parts:
        vals = [float(r["parts"].get(part) or 0.0) for r in rows]
        for i, v in enumerate(vals):
            est = (rows[i].get("sources") or {}).get(part) == "estimated"
            ax.bar([i], [v], bottom=[bottoms[i]], color=PART_COLORS.get(part, "#999"), hatch="//" if est else None,
                   edgecolor="white", label=part if i == 0 else None)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    for i, b in enumerate(bottoms):
        ax.annotate(f"{b:.3g}", (i, b), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"] for r in rows], fontsize=8, rotation=15, ha="right")
    ax.set_ylabel("mJ per inference (net of idle)")
    ax.set_title("energy per inference (hatched = estimated)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
