"""int8 rewrites of an exported graph for ExecuTorch, used by `easrec.export.lowering` only.

- `compute_causal_masks`: a folded [L, L] causal mask constant → three elementwise ops XNNPACK runs.
- `quantize_embeddings`: `aten.embedding` of a constant table → ExecuTorch's quantized lookup
  (`quantized_decomposed.embedding_byte` / `embedding_4bit`, portable quantized kernels).
- `quantize_linears`: PT2E with `XNNPACKQuantizer` on the linears only (per-channel weights; dynamic or
  static activations; the "fast" recipe keeps linears with many activation rows in fp32).
"""

from __future__ import annotations

import logging
from typing import Any

import torch


log = logging.getLogger(__name__)

# Linears whose activation has at most this many rows read their weight once per row or two: they are
# weight-bandwidth bound and int8 (a quarter of the bytes) wins; with 200 rows XNNPACK's int8 GEMMs
# (QD8 and QS8) lost to its fp32 GEMM on this x86 CPU (benchmarks/README.md, per-op ETDump table).
WEIGHT_BOUND_ROWS = 8


def _rows(node: torch.fx.Node) -> int:
    """Rows of a linear's activation (product of all but the last dimension); 0 when unknown."""
    val = node.args[0].meta.get("val") if node.args and isinstance(node.args[0], torch.fx.Node) else None
    if val is None:
        return 0
    n = 1
    for s in val.shape[:-1]:
        n *= int(s)
    return n


def _where(node: torch.fx.Node) -> str:
    """The module path a node came from (`model.blocks.0.attn`), with the node's name."""
    stack = node.meta.get("nn_module_stack") or {}
    path = next(reversed(stack.values()))[0] if stack else ""
    return f"{path}:{node.name}" if path else node.name


def _is_linear(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and node.target == torch.ops.aten.linear.default


def linear_plan(gm: torch.fx.GraphModule, int8_recipe: str) -> tuple[set[str], dict[str, str]]:
    """(names of linears quantized to int8, {name: reason} of those kept fp32) for an unlifted graph."""
    quantized, kept = set(), {}
    for node in gm.graph.nodes:
        if not _is_linear(node):
            continue
        rows = _rows(node)
        if int8_recipe == "fast" and rows > WEIGHT_BOUND_ROWS:
            kept[_where(node)] = f"{rows} activation rows: XNNPACK's fp32 GEMM beats its int8 GEMMs on x86"
        else:
            quantized.add(node.name)
    return quantized, kept


def quantize_linears(gm: torch.fx.GraphModule, example: tuple, dtype: str, calibration, int8_recipe: str):
    """PT2E int8 of the linears (per-channel weights) with `XNNPACKQuantizer`; returns (module, report).

    `int8` quantizes activations at run time. `int8-static` calibrates the activations of the linears
    over many rows and leaves every other op (add, mul, softmax, LayerNorm, attention matmuls) in fp32;
    weight-bound linears (the catalogue scoring: one row against every item) stay dynamic, because a
    statically quantized score vector has too few levels to rank thousands of items.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer

    quantized, kept = linear_plan(gm, int8_recipe)
    linear = torch.ops.aten.linear.default
    dyn_cfg = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    if dtype == "int8":
        dynamic, static = quantized, set()
    else:
        dynamic = {n.name for n in gm.graph.nodes if n.name in quantized and _rows(n) <= WEIGHT_BOUND_ROWS}
        static = quantized - dynamic
    quantizers = []
    for names, cfg in ((dynamic, dyn_cfg), (static, get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))):
        if names:
            q = XNNPACKQuantizer().set_operator_type(linear, cfg)
            q.set_filter_function(lambda n, names=frozenset(names): n.name in names)
            quantizers.append(q)
    report = {"int8_recipe": int8_recipe, "linears_int8_dynamic": len(dynamic), "linears_int8_static": len(static),
              "linears_fp32": kept}
    if not quantizers:
        return gm, report
    prepared = prepare_pt2e(gm, ComposableQuantizer(quantizers))
    for batch in calibration or [example]:
        prepared(*batch)
    return convert_pt2e(prepared), report


def quantize_embeddings(gm: torch.fx.GraphModule, bits: int = 8) -> tuple[torch.fx.GraphModule, list[dict]]:
    """Replace every `aten.embedding` of a constant table by ExecuTorch's quantized lookup, in place.

    int8: `quantized_decomposed.embedding_byte` with one symmetric scale per row (per item); int4:
    `embedding_4bit`, groups of 32 values per scale. Only the rows looked up are dequantized (a
    portable quantized kernel); the table is stored at 1 (or ½) byte per value. A table that also feeds
    another op (the tied scoring linear) keeps its fp32 constant there, which PT2E quantizes on its own.
    """
    import executorch.exir.passes._quant_patterns_and_replacements  # noqa: F401  (registers the ops)

    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.aten.embedding.default:
            continue
        weight, indices = node.args[0], node.args[1]
        if not (isinstance(weight, torch.fx.Node) and weight.op == "get_attr"):
            continue
        table = _get_attr(gm, weight.target).detach().float()
        if table.dim() != 2 or (bits == 4 and table.shape[1] % 2):
            continue
        q, scales, args = _quantize_table(table, bits)
        base = f"_easrec_qemb{len(done)}"
        gm.register_buffer(base + "_q", q)
        gm.register_buffer(base + "_s", scales)
        with gm.graph.inserting_before(node):
            qn, sn = gm.graph.get_attr(base + "_q"), gm.graph.get_attr(base + "_s")
            op = torch.ops.quantized_decomposed.embedding_byte.default if bits == 8 else torch.ops.quantized_decomposed.embedding_4bit.default
            new = gm.graph.call_function(op, (qn, sn, None, *args, indices))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        done.append({"rows": int(table.shape[0]), "dim": int(table.shape[1]), "bits": bits,
                     "max_abs_error": float((_dequantize_table(q, scales, bits) - table).abs().max())})
    if done:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return gm, done


def compute_causal_masks(gm: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, list[int]]:
    """Replace every constant causal mask (an [L, L] tensor that is `v` strictly above the diagonal and 0
    elsewhere) by `clamp(col - row, 0, 1) * v` over two [L] position constants, in place.

    Why: at L 200 the folded mask is a 160 KB fp32 constant, a quarter of an int8 `.pte`. The three
    ops are elementwise and XNNPACK runs them inside its delegate (microseconds), unlike the portable
    kernels that made generating the mask costly before. Returns the sizes L replaced.
    """
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "get_attr":
            continue
        t = _get_attr(gm, node.target)
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 16:
            continue
        if not t.is_floating_point():
            continue
        L, v = int(t.shape[0]), float(t[0, 1])
        if v == 0 or not torch.equal(t, torch.triu(torch.full_like(t, v), diagonal=1)):
            continue
        pos = torch.arange(L, dtype=t.dtype)
        base = f"_easrec_causal{len(done)}"
        gm.register_buffer(base + "_col", pos.view(1, L).clone())
        gm.register_buffer(base + "_row", pos.view(L, 1).clone())
        with gm.graph.inserting_before(node):
            col, row = gm.graph.get_attr(base + "_col"), gm.graph.get_attr(base + "_row")
            diff = gm.graph.call_function(torch.ops.aten.sub.Tensor, (col, row))
            step = gm.graph.call_function(torch.ops.aten.clamp.default, (diff, 0.0, 1.0))
            new = gm.graph.call_function(torch.ops.aten.mul.Tensor, (step, v))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        done.append(L)
    if done:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return gm, done


def _get_attr(gm: torch.fx.GraphModule, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


EMBEDDING_GROUP = 32  # int4 values per scale


def _quantize_table(table: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Symmetric per-row (int8) or per-group (int4) quantization in ExecuTorch's layout."""
    if bits == 8:
        scales = (table.abs().amax(1) / 127.0).clamp(min=1e-8)
        q = torch.round(table / scales[:, None]).clamp(-128, 127).to(torch.int8)
        return q, scales, (-128, 127)
    n, d = table.shape
    group = EMBEDDING_GROUP if d % EMBEDDING_GROUP == 0 else d
    g = table.view(n, d // group, group)
    scales = (g.abs().amax(2) / 7.0).clamp(min=1e-8)  # [n, groups]
    q = torch.round(g / scales[..., None]).clamp(-8, 7).view(n, d).to(torch.int16) + 8  # 0..15
    packed = (q[:, 0::2] * 16 + q[:, 1::2]).to(torch.uint8)  # even index in the high nibble
    return packed, scales, (-8, 7)


def _dequantize_table(q: torch.Tensor, scales: torch.Tensor, bits: int) -> torch.Tensor:
    if bits == 8:
        return q.float() * scales[:, None]
    hi, lo = (q.to(torch.int16) // 16) - 8, (q.to(torch.int16) % 16) - 8
    vals = torch.stack((hi, lo), -1).view(q.shape[0], -1).float()
    group = vals.shape[1] // scales.shape[1]
    return (vals.view(q.shape[0], -1, group) * scales[..., None]).view(q.shape[0], -1)
