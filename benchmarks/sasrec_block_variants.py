"""The SASRec block variants behind easrec's switch to RecBole's block (ml-100k L50, seen items kept).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sasrec_block_variants.py NAME 'JSON_FLAGS' SEED
    # RecBole's block, as measured for benchmarks/README.md:
    ... recbole '{"post":true,"attn_drop":0.5,"rb_init":true,"rb_input":true,"abs_pos":true,"wd":0}' 0
    # the earlier pre-LN easrec block (√d-scaled input, final LN, Xavier init):
    ... preln '{}' 0

Each flag switches one of the five differences; every variant is trained by easrec's trainer with its
defaults. One JSON line per run is appended to benchmarks/results/sasrec_block_variants.jsonl.
"""
import json, math, os, sys, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F
from easrec.data import load_dataset
from easrec.model import SASRec
from easrec.model.sasrec import NEG
from easrec.train.evaluate import evaluate_model
from easrec.train.run import sasrec_arch
from easrec.train.trainer import TrainConfig, train_model

class Var(SASRec):
    def __init__(self, arch, n, dropout, post=False, attn_drop=0.0, rb_init=False, rb_input=False, abs_pos=False):
        super().__init__(arch, n, dropout)
        self.post, self.attn_drop, self.rb_input, self.abs_pos = post, attn_drop, rb_input, abs_pos
        self.ln_in = nn.LayerNorm(arch.d)
        self.ln_f = nn.LayerNorm(arch.d)  # the pre-LN block's final LN
        if not rb_init:  # the earlier easrec initialisation
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            nn.init.normal_(self.item_emb.weight, std=1.0 / math.sqrt(arch.d))
            nn.init.normal_(self.pos_emb.weight, std=0.02)
            with torch.no_grad(): self.item_emb.weight[0].zero_()
        if rb_init:
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                    if isinstance(m, nn.Linear) and m.bias is not None: nn.init.zeros_(m.bias)
            with torch.no_grad(): self.item_emb.weight[0].zero_()

    def attn(self, blk, x, mask, heads):
        a = blk.attn; B, L, d = x.shape; hs = a.head_size
        def p(l): return l(x).view(B, L, heads, hs).transpose(1, 2)
        q, k, v = p(a.q), p(a.k), p(a.v)
        att = (q @ k.transpose(-1, -2) / math.sqrt(hs) + mask).softmax(-1)
        att = F.dropout(att, self.attn_drop, self.training)
        y = (att @ v).transpose(1, 2).reshape(B, L, heads * hs)
        return a.o(y)

    def encode(self, ids, active=None, *, last_only=False, soft=None):
        arch = self.arch; L = arch.max_len; ids = ids[:, -L:]; L = ids.shape[1]
        keep = (ids != 0).float()
        if self.abs_pos:  # RecBole: position 0 = oldest item in the (truncated) history
            first = (ids != 0).float().argmax(1, keepdim=True)
            idx = (torch.arange(L).view(1, -1) - first).clamp(min=0)
            pos = self.pos_emb(idx)
        else:
            pos = self.pos_emb.weight[:L].flip(0)
        e = self.item_emb(ids)
        x = self.ln_in(e + pos) if self.rb_input else e * math.sqrt(arch.d) + pos
        x = self.drop(x) * keep.unsqueeze(-1)
        mask = self.causal[-L:, -L:] + (1.0 - keep).view(-1, 1, 1, L) * NEG
        for i, blk in enumerate(self.blocks):
            h = arch.layers[i].heads
            if self.post:
                x = blk.ln1(x + self.drop(self.attn(blk, x, mask, h)))
                x = blk.ln2(x + self.drop(blk.ffn(x, d=arch.d, ffn=arch.layers[i].ffn)))
            else:
                x = x + self.drop(self.attn(blk, blk.ln1(x), mask, h))
                x = x + self.drop(blk.ffn(blk.ln2(x), d=arch.d, ffn=arch.layers[i].ffn))
            x = x * keep.unsqueeze(-1)
        if not self.post:
            x = self.ln_f(x)
        return x[:, -1] if last_only else x

def main():
    name, kw, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    wd = kw.pop("wd", 0.01); lr = kw.pop("lr", 1e-3); batch = kw.pop("batch", 128)
    data = load_dataset(str(Path(__file__).resolve().parents[2] / "shared/datasets/ml-100k")); split = data.split()
    torch.manual_seed(seed)
    model = Var(sasrec_arch(50, 64, 2, 2, 256), data.n_items, 0.5, **kw)
    cfg = TrainConfig(epochs=200, batch_size=batch, lr=lr, patience=10, seed=seed, threads=1, keep_seen=True, weight_decay=wd)
    t0 = time.perf_counter(); la = os.getloadavg()
    res = train_model(model, split, cfg)
    test = evaluate_model(model, split, "test", keep_seen=True)
    ex = evaluate_model(model, split, "test", keep_seen=False)
    rec = {"name": name, "kw": kw, "wd": wd, "lr": lr, "seed": seed, "valid": res.best_valid["ndcg@10"], "test": test["ndcg@10"],
           "test_hr": test["hr@10"], "test_excl": ex["ndcg@10"], "best_step": res.best_step, "steps": res.steps,
           "s": time.perf_counter() - t0, "load": [la, os.getloadavg()]}
    print(json.dumps(rec), flush=True)
    with open(Path(__file__).resolve().parent / "results/sasrec_block_variants.jsonl", "a") as f: f.write(json.dumps(rec) + "\n")

if __name__ == "__main__":
    main()
