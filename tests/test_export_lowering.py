"""The one lowering path, int8 rewrites (quantized item table, computed causal mask, recipes), the
`.pt2` format, and `bench` on an artifact without a sidecar."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from easrec.errors import EasrecError
from easrec.model import SASRec
from easrec.space import Arch, LayerArch

ROOT = Path(__file__).resolve().parents[1]
SMALL = Arch(max_len=20, d=32, layers=(LayerArch(2, 64),), head_size=16)
N_ITEMS = 400
# What lowers a graph; only export/lowering.py and the back ends it calls may do it.
LOWERING_CALLS = ("to_edge_transform_and_lower", "torch.onnx.export", "prepare_pt2e", "quantize_dynamic",
                  "quantize_static", "torch.export.export(", "torch.export.save(", "constant_prop_pass")
LOWERING_MODULES = {"lowering.py", "backends.py", "quantize.py"}


def small_model(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(SMALL, N_ITEMS, dropout=0.0).eval().requires_grad_(False)


def ids(batch: int = 1, filled: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, SMALL.max_len, dtype=torch.long)
    x[:, -filled:] = torch.randint(1, N_ITEMS + 1, (batch, filled), generator=g)
    return x


def test_only_the_lowering_modules_lower_graphs():
    """Exporters, latency-table components and validation subnets share one path: nobody else lowers."""
    offenders = []
    for folder in ("export", "profiling", "devices", "easrec"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if folder == "export" and path.name in LOWERING_MODULES:
                continue
            text = path.read_text(encoding="utf-8")
            code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", "`", "-")))
            offenders += [f"{path.relative_to(ROOT)}: {c}" for c in LOWERING_CALLS if c in code and f"`{c}" not in code]
    assert offenders == []


@pytest.mark.slow
def test_exporters_and_profiler_call_lower_file(monkeypatch, tmp_path):
    import easrec.export.lowering as lowering
    from easrec.export.executorch import export_executorch
    from easrec.export.graph import TopKGraph

    calls = []
    real = lowering.lower_file
    monkeypatch.setattr(lowering, "lower_file", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    export_executorch(small_model(), tmp_path / "m.pte")
    lowering.lower(TopKGraph(small_model()), (ids(),), tmp_path / "c.pt2", "torch", cache=None)  # the profiler's entry
    assert calls == ["executorch", "torch"]


def test_lowering_imports_no_exporter():
    """export.lowering ← export.executorch / export.onnx, never the other way (no import cycle)."""
    tree = ast.parse((ROOT / "export/lowering.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"easrec.export.executorch", "easrec.export.onnx", "easrec.export.exporter", "easrec.export"}
    code = "import sys, easrec.export.lowering; print(sorted(m for m in sys.modules if m.startswith('easrec.export.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "easrec.export.executorch" not in out and "easrec.export.onnx" not in out


def test_causal_mask_is_computed_exactly():
    from easrec.export.lowering import export_program, fold_constants
    from easrec.export.quantize import compute_causal_masks

    pytest.importorskip("executorch")
    model = small_model()
    ep = fold_constants(export_program(model, (ids(),)))
    gm = ep.module()
    before = gm(ids(1, seed=1))
    gm, done = compute_causal_masks(gm)
    assert done == [SMALL.max_len]
    assert not any(isinstance(getattr(gm, n.target, None), torch.Tensor) and getattr(gm, n.target).shape == (20, 20)
                   for n in gm.graph.nodes if n.op == "get_attr")
    assert torch.equal(gm(ids(1, seed=1)), before)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_item_table_matches_fp32_lookup(bits):
    from easrec.export.lowering import export_program, fold_constants
    from easrec.export.quantize import quantize_embeddings

    pytest.importorskip("executorch")
    model = small_model()
    gm = fold_constants(export_program(model, (ids(),))).module()
    ref = gm(ids(1, seed=2))
    gm, tables = quantize_embeddings(gm, bits)
    assert [t["rows"] for t in tables] == [N_ITEMS + 1] and tables[0]["bits"] == bits
    target = "embedding_byte" if bits == 8 else "embedding_4bit"
    assert any(target in str(n.target) for n in gm.graph.nodes)
    out = gm(ids(1, seed=2))
    # int8 per row: ~0.4 % of the row's range; int4 per group of 32: ~7 %.
    assert (out - ref).abs().max() < (0.05 if bits == 8 else 0.5)


@pytest.mark.slow
def test_int8_recipes_small_and_fast(tmp_path):
    from easrec.export.executorch import export_executorch
    from easrec.devices.runners import load_runner
    from easrec.export.graph import TopKGraph

    pytest.importorskip("executorch")
    model = small_model()
    fp32 = export_executorch(model, tmp_path / "f.pte")
    small = export_executorch(model, tmp_path / "s.pte", quantize="int8")
    fast = export_executorch(model, tmp_path / "q.pte", quantize="int8", int8_recipe="fast")
    qs, qf = small.report["quantization"], fast.report["quantization"]
    assert qs["embeddings"] and qs["causal_masks_computed"] == [SMALL.max_len] and not qs["linears_fp32"]
    assert "quantized_decomposed_embedding_byte_default" in small.report["cpu_ops"]
    # fast: only the weight-bound linears (last position, catalogue scoring) are int8; the rest say why.
    assert qf["linears_fp32"] and all("activation rows" in why for why in qf["linears_fp32"].values())
    assert qf["linears_int8_dynamic"] >= 1 and not qf["embeddings"] and "embedding lookups" in qf["fp32_kept"]
    assert small.size_bytes < fast.size_bytes < fp32.size_bytes
    x = ids(1, seed=3)
    ref_items, _ = TopKGraph(model)(x)
    for art in (small, fast):
        items, _ = load_runner(art.path).run([x.numpy()])
        assert len(set(items[0].tolist()) & set(ref_items[0].tolist())) >= 7


def test_bad_recipe_and_quantized_pt2(tmp_path):
    from easrec.export.exporter import export_artifact

    with pytest.raises(EasrecError, match="int8_recipe"):
        export_artifact(small_model(), tmp_path / "m.pte", "executorch", quantize="int8", int8_recipe="tiny")
    with pytest.raises(EasrecError, match="pt2 format is fp32 only"):
        export_artifact(small_model(), tmp_path / "m.pt2", "pt2", quantize="int8")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_export import make_run

    # Two epochs, as test_export's run: after one, the synthetic-small model (used where ../shared is absent)
    # scores NDCG@10 0.045, near chance, and int8 parity's 2 % tolerance is then ranking noise (-6.5 %).
    return make_run(tmp_path_factory.mktemp("lowering-run") / "run", epochs=2)


@pytest.mark.slow
def test_static_int8_keeps_scoring_dynamic_and_passes_parity(run_dir, tmp_path):
    from easrec.export import export_run

    pytest.importorskip("executorch")
    rep = export_run(run_dir, fmt="executorch", quantize="int8-static", out=tmp_path / "s.pte")
    q = rep["export"]["report"]["quantization"]
    assert q["linears_int8_static"] >= 4 and q["linears_int8_dynamic"] >= 1  # the scoring stays dynamic
    assert rep["export"]["report"]["calibration_sequences"] >= 200
    assert rep["parity"]["passed"], rep["parity"]["reason"]
    side = json.loads(Path(rep["sidecar"]).read_text())
    assert side["quantization"]["linears_int8_static"] == q["linears_int8_static"]


@pytest.mark.slow
def test_pt2_export_predict_and_bench_without_sidecar(run_dir, tmp_path, capsys):
    from easrec.cli import main

    out = tmp_path / "m.pt2"
    assert main(["export", str(run_dir), "--format", "pt2", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["parity"]["passed"] and res["parity"]["runtime"] == "torch"
    assert json.loads(Path(res["sidecar"]).read_text())["runtime"] == "torch"
    bare = tmp_path / "bare.pt2"
    shutil.copy(out, bare)  # no sidecar: inputs come from the graph
    assert main(["bench", str(bare), "--device", "cpu", "--runs", "5", "--json"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["sidecar"] is False and bench["inputs"] == [{"dtype": "int64", "shape": [1, 30]}]
    assert bench["median_ms"] > 0 and bench["runtime"] == "torch"
    # a sidecar that does not match the file: one line, exit 2
    shutil.copy(Path(res["sidecar"]), bare.with_name(bare.name + ".json"))
    with open(bare, "ab") as f:
        f.write(b"\0")
    assert main(["bench", str(bare), "--device", "cpu", "--runs", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0]


@pytest.mark.slow
def test_bench_pte_without_sidecar(tmp_path):
    from easrec.export.bench import bench_artifact
    from easrec.export.executorch import export_executorch

    pytest.importorskip("executorch")
    path = export_executorch(small_model(), tmp_path / "m.pte", quantize="int8").path
    res = bench_artifact(path, "cpu", runs=5, warmup=2)
    assert res["sidecar"] is False and res["inputs"][0]["shape"] == [1, SMALL.max_len] and res["median_ms"] > 0
