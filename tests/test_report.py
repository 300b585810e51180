"""report.html / report.md from small run directories in the shapes the stages write, checked in a real headless browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from easrec.profiling.report import write_report
from easrec.profiling.table import FORMAT_VERSION

CHROMIUM = "/usr/bin/chromium"


def _arch(L, d, layers, gates=False):
    return {"max_len": L, "d": d, "layers": [{"heads": h, "ffn": f} for h, f in layers], "attention": "softmax",
            "gates": gates, "head_size": 16}


def _run(path: Path, arch: dict, test: dict, params: int, extra: dict | None = None) -> Path:
    path.mkdir(parents=True)
    metrics = {"valid": {k: v * 1.02 for k, v in test.items()}, "test": test, "protocol": "full", "arch": arch,
               "params": params, "train_seconds": 12.5, **(extra or {})}
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "arch.json").write_text(json.dumps(arch))
    (path / "config.json").write_text(json.dumps({"data": {"spec": "synthetic", "options": {}}, "seed": 0}))
    return path


def _energy(model: str, artifact: str, cpu_mj: float) -> dict:
    part = lambda mj, src, method: {  # noqa: E731
        "joules_per_inference": mj / 1000, "raw_joules_per_inference": mj / 1000, "gross_joules": mj, "idle_joules": 0.1,
        "active_power_w": 1.8, "idle_power_w": 0.15, "source": src, "method": method,
        "explanation": "/sys/class/powercap is absent" if src == "estimated" else "no GPU"}
    return {"model": model, "quantize": "none", "artifact": artifact, "device": "cpu", "runs": 500, "threads": 1, "source": "estimated",
            "joules_per_inference": cpu_mj / 1000, "mj_per_inference": cpu_mj, "co2e_kg_per_inference": 1e-10,
            "country_iso_code": "USA", "tool": "codecarbon 3.3.2 (offline)", "warnings": [],
            "parts": {"cpu": part(cpu_mj, "estimated", "TDP x CPU load model (process)"),
                      "gpu": part(0.0, "none", "none"), "ram": part(0.0, "estimated", "constant-power RAM model")}}


@pytest.fixture
def runs(tmp_path):
    base_arch = _arch(200, 64, [(2, 256), (2, 256)])
    sub_arch = _arch(50, 32, [(2, 64)], gates=True)
    base = _run(tmp_path / "baseline", base_arch, {"hr@10": 0.31, "ndcg@10": 0.175, "mrr@10": 0.13}, 120_000)
    # What `choose_architecture` writes: the described arch, its cost, log p and shared-weight validation NDCG.
    candidates = [{"arch": "L50 d32 [h2/f64]", "why": "most probable within budget", "cost": 0.8, "log_p": -1.2,
                   "valid_ndcg@10": 0.16, "chosen": False},
                  {"arch": "L50 d32 [h2/f64] gates", "why": "grown to spend >= 90% of the budget", "cost": 0.95,
                   "log_p": -1.9, "valid_ndcg@10": 0.171, "chosen": True}]
    sub = _run(tmp_path / "search", sub_arch, {"hr@10": 0.30, "ndcg@10": 0.168, "mrr@10": 0.125}, 40_000,
               {"budget": 1.0, "unit": "ms", "predicted_cost": 0.95, "reference_cost": 2.0, "predicted_ms": 0.95,
                "candidates": candidates, "search_steps": 40, "budget_used": 0.95, "finalist_epochs": 2,
                "finalists": [{"arch": "L50 d32 [h2/f64] gates", "why": "alpha", "cost": 0.95, "valid_ndcg@10": 0.171,
                               "seconds": 12.0, "chosen": True},
                              {"arch": "L20 d32 [h2/f128 x2]", "why": "SASRec shape, L 20", "cost": 0.9,
                               "valid_ndcg@10": 0.1633, "seconds": 10.0, "chosen": False}]})
    (sub / "search_log.jsonl").write_text("".join(json.dumps({"step": i, "epoch": i // 10, "tau": 0.9 ** i, "lambda": 0.5,
                                                              "expected_cost": 2.0 - i / 40, "target": 1.0, "val_loss": 5.0,
                                                              "entropy": 3.0 - i / 20}) + "\n" for i in range(40)))
    rows = []
    for i in range(12):
        m = 0.5 + 0.2 * i
        rows.append({"describe": f"s{i}", "lut_sum_ms": m * (1 + (0.15 if i % 5 == 0 else 0.03)), "measured_ms": m})
    lut = {"format": FORMAT_VERSION, "unit": "ms", "device": {"kind": "cpu", "cpu": "AMD EPYC", "runtime": "executorch",
                                                   "runtime_version": "1.5.1", "dtype": "fp32", "threads": 1},
           "entries": {"overhead": {"median_ms": 0.05, "p10_ms": 0.04, "p90_ms": 0.06, "runs": 30}},
           "validation": {"n_subnets": 12, "subnets": rows,
                          "lut": {"a": 1.0, "b": 0.0, "test": {"n": 6, "within_10pct": 0.83, "mape_pct": 5.1, "kendall_tau": 0.93},
                                  "all": {"n": 12, "within_10pct": 0.83, "mape_pct": 5.0, "kendall_tau": 0.95}}}}
    (sub / "lut.json").write_text(json.dumps(lut))
    (sub / "artifacts.json").write_text(json.dumps([
        {"model": "subnet", "path": str(sub / "subnet_fp32.pte"), "format": "executorch", "quantize": "none", "size_bytes": 180_000,
         "parity": {"passed": True, "max_abs_diff": 1e-5, "artifact_metrics": {"ndcg@10": 0.168}}},
        {"model": "baseline", "path": str(sub / "baseline_fp32.pte"), "format": "executorch", "quantize": "none",
         "size_bytes": 540_000, "parity": {"passed": True, "artifact_metrics": {"ndcg@10": 0.175}}}]))
    (sub / "bench.json").write_text(json.dumps([
        {"model": "subnet", "quantize": "none", "artifact": str(sub / "subnet_fp32.pte"), "device": "cpu", "median_ms": 1.0, "p10_ms": 0.95, "p90_ms": 1.1, "runs": 100},
        {"model": "baseline", "quantize": "none", "artifact": str(sub / "baseline_fp32.pte"), "device": "cpu", "median_ms": 2.1, "p10_ms": 2.0, "p90_ms": 2.3, "runs": 100}]))
    (sub / "energy.json").write_text(json.dumps([_energy("subnet", "subnet_fp32.pte", 0.9),
                                                 _energy("baseline", "baseline_fp32.pte", 2.0)]))
    (sub / "commands.json").write_text(json.dumps({"commands": ["easrec train synthetic --out runs/base",
                                                                "easrec search synthetic --lut lut.json --budget-ms 1 --out runs/s"]}))
    (sub / "data_stats.json").write_text(json.dumps({"name": "synthetic", "users": 1000, "items": 500, "interactions": 50_000,
                                                     "density": 0.1, "seq_len": {"min": 5, "p50": 45.0, "max": 200, "mean": 50.0}}))
    return base, sub


def _check_self_contained(html: str) -> list[str]:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I), "external resource in report.html"
    assert "<link" not in html.lower()
    srcs = re.findall(r"""<img[^>]*\bsrc="([^"]+)\"""", html)
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return srcs


def test_full_report(runs):
    base, sub = runs
    html_path, md_path = write_report(sub, baseline_run=base)
    assert html_path == sub / "report.html" and md_path == sub / "report.md"
    html, md = html_path.read_text(), md_path.read_text()
    assert len(_check_self_contained(html)) == 4  # accuracy vs latency, LUT scatter, search trace, energy bars
    for text in ("Baseline SASRec vs searched subnet", "searched subnet", "baseline SASRec", "0.168", "Pareto",
                 "ESTIMATES", "/sys/class/powercap is absent", "easrec search synthetic", "codecarbon", "executorch",
                 "Architecture", "synthetic"):
        assert text in html, text
    assert "Not available" not in md
    for text in ("| test NDCG@10 |", "subnet_fp32.pte", "175.8", "easrec train synthetic", "| block 1 |",
                 "SASRec shape, L 20", "0.1633", "fine-tuned 2 epoch(s)"):
        assert text in md, text
    # Measured 1.0 / 2.1 ms in this run, against the budget's 1.0 / 2.0 ms of predicted cost.
    assert "subnet / baseline: 0.476, against the budget's ratio 0.500 (0.95×)" in md


def test_missing_inputs_give_sections_not_crashes(tmp_path):
    sub = _run(tmp_path / "bare", _arch(50, 16, [(1, 32)]), {"hr@10": 0.2, "ndcg@10": 0.1, "mrr@10": 0.08}, 9_000)
    (sub / "config.json").write_text(json.dumps({}))  # no data spec either
    html_path, md_path = write_report(sub)
    html, md = html_path.read_text(), md_path.read_text()
    _check_self_contained(html)
    for text in ("no energy measurement yet", "no LUT", "no baseline run", "no data statistics", "no exported artifacts",
                 "no command log"):
        assert text in html and text in md, text


def test_cli_report(runs, capsys):
    from easrec.cli import main

    base, sub = runs
    assert main(["report", str(sub), "--baseline", str(base), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["html"]).is_file() and Path(out["md"]).is_file()
    assert out["inputs"]["energy"].endswith("energy.json")
    assert main(["report", str(sub / "nope")]) == 2


# Records load errors and image natural sizes into the DOM, which --dump-dom then shows.
SELFCHECK_JS = """
window.__easrecErrors=[];
window.addEventListener('error',function(e){window.__easrecErrors.push(String(e.message||(e.target&&e.target.src)||e));},true);
window.addEventListener('load',function(){
 var imgs=[].slice.call(document.images).map(function(i){return{w:i.naturalWidth,h:i.naturalHeight,complete:i.complete};});
 var el=document.getElementById('easrec-selfcheck');
 if(el){el.textContent=JSON.stringify({images:imgs,errors:window.__easrecErrors});}
});
"""


def _with_selfcheck(html_path: Path, out: Path) -> Path:
    """A copy of the report with the self-check script and its output element."""
    html = html_path.read_text()
    html = html.replace("</head>", f"<script>{SELFCHECK_JS}</script></head>", 1)
    html = html.replace("</body>", '<pre id="easrec-selfcheck" hidden></pre>\n</body>', 1)
    out.write_text(html)
    return out


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (bash .ci/install-chromium.sh)")
def test_report_in_headless_chromium(runs, tmp_path):
    base, sub = runs
    html_path, _ = write_report(sub, baseline_run=base)
    assert "<script" not in html_path.read_text()  # the report ships no script; the check is added to a copy
    html_path = _with_selfcheck(html_path, tmp_path / "checked.html")
    profile = tmp_path / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", html_path.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="easrec-selfcheck"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert m, f"self-check element missing from the dumped DOM: {proc.stdout[:500]}"
    assert m.group(1).strip(), "the page's load handler did not run"
    check = json.loads(m.group(1).replace("&quot;", '"'))
    assert check["errors"] == []
    assert len(check["images"]) == 4  # accuracy vs latency, LUT scatter, search trace, energy bars
    for img in check["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
    shutil.rmtree(profile, ignore_errors=True)
