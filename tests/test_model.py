"""Tests of easrec.model (SASRec, Supernet) and easrec.space (Arch, SearchSpace)."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

from easrec.errors import EasrecError
from easrec.model import NEG, SASRec, Supernet
from easrec.space import Arch, LayerArch, SearchSpace, reference_arch

N_ITEMS = 50
ATOL = 1e-5


def tiny_arch(attention: str = "softmax", gates: bool = False, max_len: int = 20) -> Arch:
    return Arch(max_len, 16, (LayerArch(2, 32), LayerArch(1, 16)), attention, gates, 8)


VARIANTS = [("softmax", False), ("linear", False), ("softmax", True), ("linear", True)]
VARIANT_IDS = [f"{a}{'+gates' if g else ''}" for a, g in VARIANTS]


def make_model(attention: str = "softmax", gates: bool = False, max_len: int = 20, seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    model = SASRec(tiny_arch(attention, gates, max_len), N_ITEMS, dropout=0.0).eval()
    if gates:
        # Gates start as the identity (W2 ~ 0); perturb them so the tests exercise a real gate.
        with torch.no_grad():
            for block in model.blocks:
                for g in (block.gate_inner, block.gate_out):
                    g.fc2.weight.normal_(std=0.5)
                    g.fc2.bias.normal_(std=0.5)
    return model


def random_ids(batch: int, length: int, n_pad: list[int] | None = None, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, N_ITEMS + 1, (batch, length), generator=gen)
    if n_pad is not None:
        for row, p in enumerate(n_pad):
            ids[row, :p] = 0
    return ids


# --- SASRec -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("attention,gates", VARIANTS, ids=VARIANT_IDS)
def test_causal_later_item_does_not_change_earlier_positions(attention, gates):
    model = make_model(attention, gates)
    ids = random_ids(3, 20, n_pad=[0, 5, 12])
    j = 15
    changed = ids.clone()
    changed[:, j] = (changed[:, j] % N_ITEMS) + 1  # a different real item
    with torch.no_grad():
        a = model.encode(ids)
        b = model.encode(changed)
    torch.testing.assert_close(a[:, :j], b[:, :j], atol=ATOL, rtol=0)
    # ... and the change is visible from position j on (the test is not vacuous).
    assert (a[:, j:] - b[:, j:]).abs().max() > 1e-3


@pytest.mark.parametrize("attention,gates", VARIANTS, ids=VARIANT_IDS)
def test_extra_left_padding_does_not_change_last_scores(attention, gates):
    model = make_model(attention, gates)
    ids = random_ids(4, 12, n_pad=[0, 3, 7, 11])
    padded = torch.cat([torch.zeros(4, 8, dtype=torch.long), ids], dim=1)  # length 20, more padding
    with torch.no_grad():
        a = model(ids)
        b = model(padded)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("attention,gates", VARIANTS, ids=VARIANT_IDS)
def test_last_only_equals_last_row_of_full(attention, gates):
    model = make_model(attention, gates)
    ids = random_ids(5, 20, n_pad=[0, 1, 6, 13, 19])
    with torch.no_grad():
        full = model.encode(ids)
        last = model.encode(ids, last_only=True)
    assert full.shape == (5, 20, 16) and last.shape == (5, 16)
    torch.testing.assert_close(last, full[:, -1], atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("gates", [False, True], ids=["plain", "gates"])
def test_linear_attention_trains_and_infers_the_same_function(gates):
    """Training's quadratic masked form and inference's running sums (with the ones column) agree."""
    model = make_model("linear", gates)
    ids = random_ids(5, 20, n_pad=[0, 1, 6, 13, 19])
    with torch.no_grad():
        infer = model.encode(ids)
        model.train()  # dropout is 0: only the attention's form changes
        trained = model.encode(ids)
        model.eval()
    torch.testing.assert_close(infer, trained, atol=ATOL, rtol=1e-4)
    assert not torch.allclose(infer[:, :-1], infer[:, 1:], atol=1e-3)  # positions differ: not a constant


@pytest.mark.parametrize("attention,gates", VARIANTS, ids=VARIANT_IDS)
def test_positions_counted_from_newest(attention, gates):
    model = make_model(attention, gates, max_len=20)
    short_arch = tiny_arch(attention, gates, max_len=10)
    ids = random_ids(3, 20, n_pad=[0, 4, 14])
    with torch.no_grad():
        # The model run as L=10 reading the 20-long input equals reading just its newest 10.
        a = model.score(model.encode(ids, short_arch, last_only=True), short_arch)
        b = model.score(model.encode(ids[:, -10:], short_arch, last_only=True), short_arch)
        # A separate L=10 model holding the first 10 position rows (counted from the newest item).
        small = SASRec(short_arch, N_ITEMS, dropout=0.0).eval()
        state = dict(model.state_dict())
        state["pos_emb.weight"] = state["pos_emb.weight"][:10]
        small.load_state_dict(state)
        c = small(ids)
        full = model(ids)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(c, b, atol=ATOL, rtol=1e-5)
    # Row 0 has 20 real items; truncating to 10 changes its output (so the truncation is real).
    # Scores are small at N(0, 0.02) initialisation: the change is compared with the float tolerance above.
    assert (full[0] - a[0])[1:].abs().max() > 20 * ATOL


def test_position_embedding_row_zero_is_the_newest_item():
    model = make_model()
    ids = random_ids(1, 5)
    with torch.no_grad():
        base = model(ids)
        bump = torch.randn(16, generator=torch.Generator().manual_seed(3))  # not a uniform shift (LayerNorm drops those)
        model.pos_emb.weight[19].add_(bump)  # oldest slot of a 20-long window: unused by a 5-long input
        same = model(ids)
        model.pos_emb.weight[0].add_(bump)  # the newest item's slot
        moved = model(ids)
    torch.testing.assert_close(base, same)
    assert (base - moved).abs().max() > 1e-3


@pytest.mark.parametrize("attention,gates", VARIANTS, ids=VARIANT_IDS)
def test_padding_index_scores_neg(attention, gates):
    model = make_model(attention, gates)
    ids = random_ids(3, 20, n_pad=[0, 10, 19])
    with torch.no_grad():
        scores = model(ids)
    assert scores.shape == (3, N_ITEMS + 1)
    assert torch.all(scores[:, 0] == NEG)
    assert torch.all(scores[:, 1:] > NEG)
    assert torch.isfinite(scores).all()


def test_fully_padded_row_is_finite():
    model = make_model()
    with torch.no_grad():
        scores = model(torch.zeros(2, 20, dtype=torch.long))
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_one_minus_p_scaled_and_is_the_identity_in_eval(p):
    from easrec.model.sasrec import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, p, True)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    # Four 16-bit draws share one 64-bit word: each of the four lanes must be unbiased on its own.
    for lane in range(4):
        assert abs(kept[lane::4].float().mean().item() - (1 - p)) < 0.015
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 0.02  # unbiased, as inverted dropout must be
    x.requires_grad_(True)
    dropout(x, p, True).sum().backward()
    assert set(x.grad.unique().tolist()) <= {0.0, 1 / (1 - p)}
    assert dropout(x, p, False) is x and dropout(x, 0.0, True) is x


@pytest.mark.parametrize("attention,gates", [("softmax", False), ("linear", False), ("softmax", True)],
                         ids=["softmax", "linear", "gates"])
def test_torch_export(attention, gates):
    model = make_model(attention, gates)
    ids = random_ids(2, 20, n_pad=[0, 9])
    ep = torch.export.export(model, (ids,))
    with torch.no_grad():
        expected = model(ids)
        got = ep.module()(ids)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kind", ["ce", "bce"])
def test_loss_is_finite_and_has_gradients(kind):
    model = make_model()
    model.train()
    inputs = random_ids(3, 20, n_pad=[0, 5, 15])
    targets = torch.roll(inputs, -1, dims=1)
    targets[inputs == 0] = 0
    loss = model.loss(inputs, targets, kind=kind, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.item_emb.weight.grad is not None and model.item_emb.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        model.loss(inputs, targets, kind="nope")


@pytest.mark.parametrize("attention, gates", VARIANTS, ids=VARIANT_IDS)
def test_loss_on_one_target_per_row_equals_loss_on_the_newest_position(attention, gates):
    """Prefix training's [B] targets give the same loss and gradients as [B, L] targets set only at the newest position."""
    model = make_model(attention, gates)
    model.eval()  # no dropout: the two forms draw different masks
    inputs = random_ids(4, 20, n_pad=[0, 3, 10, 18])
    last = torch.tensor([7, 0, 12, 30])  # a 0 target is padding in both forms
    full = torch.zeros_like(inputs)
    full[:, -1] = last
    loss_full = model.loss(inputs, full)
    grads_full = torch.autograd.grad(loss_full, [model.item_emb.weight, model.blocks[-1].ffn.fc1.weight])
    loss_last = model.loss(inputs, last)
    grads_last = torch.autograd.grad(loss_last, [model.item_emb.weight, model.blocks[-1].ffn.fc1.weight])
    torch.testing.assert_close(loss_last, loss_full, atol=ATOL, rtol=1e-5)
    for a, b in zip(grads_last, grads_full):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)


# --- Supernet ---------------------------------------------------------------------------------------

SMALL_SPACE = SearchSpace(max_lens=(10, 20), ds=(8, 16), heads=(1, 2), ffns=(16, 32), depths=(1, 2),
                          attentions=("softmax", "linear"), head_size=8, gates=True)


def make_supernet(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(SMALL_SPACE, N_ITEMS, dropout=0.0).eval()
    with torch.no_grad():  # give every parameter a distinct, non-trivial value (gates included)
        for block in net.blocks:
            for g in (block.gate_inner, block.gate_out):
                g.fc2.weight.normal_(std=0.5)
                g.fc2.bias.normal_(std=0.5)
            for ln in (block.ln1, block.ln2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.normal_(std=0.1)
    return net


def sample_archs(n: int, seed: int = 0) -> list[Arch]:
    rng = random.Random(seed)
    archs = [SMALL_SPACE.sample(rng) for _ in range(n)]
    archs.append(SMALL_SPACE.smallest())
    archs.append(SMALL_SPACE.largest())
    # Gates off inside a gated space, linear attention at full depth.
    archs.append(Arch(20, 16, (LayerArch(2, 16), LayerArch(1, 32)), "linear", False, 8))
    return archs


def subnet_scores(net: Supernet, ids: torch.Tensor, arch: Arch) -> torch.Tensor:
    return net.score(net.encode(ids, arch, last_only=True), arch)


def test_extract_matches_supernet_before_and_after_sorting():
    net = make_supernet()
    ids = random_ids(4, 20, n_pad=[0, 3, 11, 17])
    archs = sample_archs(6)
    assert len({a.attention for a in archs}) == 2
    with torch.no_grad():
        for sort in (False, True):
            if sort:
                net.sort_by_importance()
            for arch in archs:
                sub = net.extract(arch)
                assert sub.arch == arch and type(sub) is SASRec
                assert sum(p.numel() for p in sub.parameters()) <= sum(p.numel() for p in net.parameters())
                torch.testing.assert_close(sub(ids), subnet_scores(net, ids, arch), atol=ATOL, rtol=1e-5,
                                           msg=lambda m, a=arch, s=sort: f"{a.describe()} sorted={s}: {m}")


def test_sort_by_importance_keeps_largest_and_changes_subnets():
    net = make_supernet()
    ids = random_ids(4, 20, n_pad=[0, 3, 11, 17])
    largest = SMALL_SPACE.largest()
    small = Arch(20, 16, (LayerArch(1, 16), LayerArch(1, 16)), "softmax", True, 8)
    with torch.no_grad():
        before = subnet_scores(net, ids, largest)
        small_before = subnet_scores(net, ids, small)
        fc1_before = net.blocks[0].ffn.fc1.weight.clone()
        net.sort_by_importance()
        after = subnet_scores(net, ids, largest)
        small_after = subnet_scores(net, ids, small)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=1e-5)
    # Neurons are now in decreasing importance order.
    ffn = net.blocks[0].ffn
    importance = ffn.fc1.weight.abs().sum(1) + ffn.fc2.weight.abs().sum(0)
    assert torch.all(importance[:-1] >= importance[1:])
    assert not torch.equal(fc1_before, ffn.fc1.weight)  # something was actually reordered
    assert (small_before - small_after).abs().max() > 1e-4  # a slice now keeps different neurons


def test_extract_refuses_arch_outside_space():
    net = make_supernet()
    with pytest.raises(EasrecError, match="'d'"):
        net.extract(Arch(20, 12, (LayerArch(1, 16),), "softmax", True, 8))


# --- Arch / SearchSpace -----------------------------------------------------------------------------

def test_arch_json_round_trip_and_hash():
    arch = Arch(100, 32, (LayerArch(2, 64), LayerArch(1, 128)), "linear", True, 16)
    text = json.dumps(arch.to_dict())
    back = Arch.from_dict(json.loads(text))
    assert back == arch
    assert back.hash() == arch.hash()
    assert len(arch.hash()) == 12
    ref = reference_arch()
    assert Arch.from_dict(ref.to_dict()) == ref
    # Hash is stable across runs (a fixed value, not id()/PYTHONHASHSEED-based) and sensitive to content.
    assert ref.hash() == reference_arch().hash()
    import hashlib
    assert ref.hash() == hashlib.sha1(json.dumps(ref.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    other = Arch(100, 32, (LayerArch(2, 64), LayerArch(1, 128)), "linear", False, 16)
    assert other.hash() != arch.hash()
    assert arch.depth == 2
    assert arch.describe() == "L100 d32 [2h/64, 1h/128] linear +gates"


@pytest.mark.parametrize("data,field", [
    ({"d": 16, "layers": [{"heads": 1, "ffn": 16}]}, "max_len"),
    ({"max_len": 10, "d": 0, "layers": [{"heads": 1, "ffn": 16}]}, "d"),
    ({"max_len": 10, "d": 16, "layers": []}, "layers"),
    ({"max_len": 10, "d": 16, "layers": [{"heads": 1}]}, "layers[0]"),
    ({"max_len": 10, "d": 16, "layers": [{"heads": True, "ffn": 16}]}, "layers[0].heads"),
    ({"max_len": 10, "d": 16, "layers": [{"heads": 1, "ffn": 16}], "attention": "sparse"}, "attention"),
    ({"max_len": 10, "d": 16, "layers": [{"heads": 1, "ffn": 16}], "gates": "yes"}, "gates"),
])
def test_arch_from_dict_errors_name_field(data, field):
    with pytest.raises(EasrecError, match=re.escape(f"'{field}'")):
        Arch.from_dict(data, source="arch.json")


@pytest.mark.parametrize("arch,field", [
    (Arch(30, 16, (LayerArch(1, 32),), "softmax", False, 16), "max_len"),
    (Arch(50, 20, (LayerArch(1, 32),), "softmax", False, 16), "d"),
    (Arch(50, 16, (LayerArch(1, 32),) * 5, "softmax", False, 16), "depth"),
    (Arch(50, 16, (LayerArch(1, 32), LayerArch(3, 32)), "softmax", False, 16), "layers[1].heads"),
    (Arch(50, 16, (LayerArch(1, 32), LayerArch(1, 100)), "softmax", False, 16), "layers[1].ffn"),
    (Arch(50, 16, (LayerArch(1, 32),), "softmax", False, 8), "head_size"),
])
def test_validate_names_the_field(arch, field):
    space = SearchSpace()
    with pytest.raises(EasrecError) as info:
        space.validate(arch, source="candidate")
    msg = str(info.value)
    assert f"'{field}'" in msg and msg.startswith("candidate") and "\n" not in msg
    assert not space.contains(arch)


def test_validate_gates_and_attention():
    space = SearchSpace(attentions=("softmax",), gates=False)
    with pytest.raises(EasrecError, match="'attention'"):
        space.validate(Arch(50, 16, (LayerArch(1, 32),), "linear", False, 16))
    with pytest.raises(EasrecError, match="'gates'"):
        space.validate(Arch(50, 16, (LayerArch(1, 32),), "softmax", True, 16))
    ok = Arch(50, 16, (LayerArch(1, 32),), "softmax", False, 16)
    assert space.validate(ok) is ok and space.contains(ok)


def test_search_space_rejects_bad_fields():
    with pytest.raises(EasrecError, match="'ds'"):
        SearchSpace(ds=(32, 16))
    with pytest.raises(EasrecError, match="'heads'"):
        SearchSpace(heads=())
    with pytest.raises(EasrecError, match="attention"):
        SearchSpace(attentions=("softmax", "sparse"))


def test_sample_stays_in_space_and_covers_it():
    space = SearchSpace()
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(300)]
    for arch in archs:
        assert space.contains(arch), arch
    assert space.contains(space.largest()) and space.contains(space.smallest())
    assert {a.max_len for a in archs} == set(space.max_lens)
    assert {a.depth for a in archs} == set(space.depths)
    assert {a.attention for a in archs} == set(space.attentions)
    # Same seed, same samples.
    rng2 = random.Random(0)
    assert [space.sample(rng2) for _ in range(300)] == archs


def test_search_space_json_round_trip_and_size():
    space = SearchSpace(max_lens=(10, 20), ds=(8,), heads=(1, 2), ffns=(16,), depths=(1, 2), attentions=("softmax",))
    back = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert back == space and back.hash() == space.hash()
    assert SearchSpace().hash() != space.hash()
    # 2 max_lens × 1 d × 1 attention × (2 + 2²) layer choices = 12, checked by enumeration.
    assert space.size() == 12


def test_export_friendly_functions_match_torch_and_their_gradients():
    """`heads_matmul` is `@`, `l2_normalize` is `F.normalize`, `elu_plus_one` is `elu + 1`: values and gradients."""
    import torch.nn.functional as F

    from easrec.model.functional import elu_plus_one, heads_matmul, l2_normalize

    torch.manual_seed(0)
    a = torch.randn(2, 3, 5, 4, requires_grad=True)
    b = torch.randn(2, 3, 6, 4, requires_grad=True)
    mine = heads_matmul(a, b.transpose(-1, -2))
    ref = a @ b.transpose(-1, -2)
    assert mine.shape == (2, 3, 5, 6) and torch.allclose(mine, ref, atol=1e-6)
    ga = torch.autograd.grad(mine.square().sum(), a)[0]
    assert torch.allclose(ga, torch.autograd.grad(ref.square().sum(), a)[0], atol=1e-5)
    five = heads_matmul(a.unsqueeze(-2), torch.randn(2, 3, 5, 4, 7))  # [.., L, 1, hs] @ [.., L, hs, hs]
    assert five.shape == (2, 3, 5, 1, 7)
    x = torch.randn(4, 7, requires_grad=True)
    assert torch.allclose(l2_normalize(x), F.normalize(x, dim=-1), atol=1e-6)
    g1 = torch.autograd.grad(l2_normalize(x)[:, 0].sum(), x)[0]
    g2 = torch.autograd.grad(F.normalize(x, dim=-1)[:, 0].sum(), x)[0]
    assert torch.allclose(g1, g2, atol=1e-5)
    assert torch.equal(l2_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))  # no NaN at zero, as F.normalize
    z = torch.linspace(-4, 4, 81, requires_grad=True)
    assert torch.allclose(elu_plus_one(z), F.elu(z) + 1.0, atol=1e-6)
    gz = torch.autograd.grad(elu_plus_one(z).sum(), z)[0]
    assert torch.allclose(gz, torch.autograd.grad(F.elu(z).sum(), z)[0], atol=1e-6)
