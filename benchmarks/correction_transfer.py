"""Does a latency-table correction chosen on one set of subnets hold on a fresh one? (issue 11)

`easrec profile validate` scores each correction kind by cross-validation over its own random subnets,
so a correction kind *designed* after looking at one validation (affine_blocks was) is still scored on
subnets its design has seen. This script takes two validations of the same table,
for example the committed one (`--seed 0`) and a fresh one on a copy (`--seed 1`):

    cp benchmarks/results/lut_default_executorch_int8.json /tmp/int8_seed1.json
    easrec profile validate /tmp/int8_seed1.json --subnets 50 --seed 1
    .venv/bin/python benchmarks/correction_transfer.py --fit benchmarks/results/lut_default_executorch_int8.json \
        --score /tmp/int8_seed1.json --out benchmarks/results/correction_transfer_executorch_int8.json

Every kind is fitted on all of `--fit`'s subnets and scored on all of `--score`'s, with nothing refitted,
beside the fresh validation's own test-retest noise floor. Both files must hold the same entries (the
second a copy of the first), so the two sets differ only in the subnets and the session.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from easrec.io import atomic_write_json
from easrec.profiling.corrections import KINDS, block_counts, correction_params, predict, type_matrix
from easrec.profiling.scores import noise_floor, score
from easrec.errors import EasrecError
from easrec.profiling.table import LatencyTable
from easrec.profiling.validate import stored_subnets


def subnets(table: LatencyTable, path: Path) -> list[dict]:
    """The validation's measured subnets (`stored_subnets`); a missing validation ends the script in one line."""
    try:
        return stored_subnets(table, path)
    except EasrecError as exc:
        sys.exit(str(exc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=Path, required=True, help="validated table whose subnets fit the corrections")
    ap.add_argument("--score", type=Path, required=True, help="a copy of it validated on other subnets (--seed)")
    ap.add_argument("--out", type=Path, help="JSON to write")
    args = ap.parse_args()
    fit_t, score_t = LatencyTable.load(args.fit), LatencyTable.load(args.score)
    if fit_t.data["entries"] != score_t.data["entries"]:
        sys.exit(f"{args.score}: field 'entries' differs from {args.fit} (validate a copy of the same table)")
    fit_rows, score_rows = subnets(fit_t, args.fit), subnets(score_t, args.score)
    seeds = [(t.data["validation"].get("seed")) for t in (fit_t, score_t)]
    if seeds[0] == seeds[1]:
        sys.exit(f"{args.score}: field 'validation.seed' is {seeds[1]}, the same as {args.fit}'s: the subnets would be the same")
    S_fit, m_fit, b_fit = type_matrix(fit_rows), np.array([r["measured_ms"] for r in fit_rows]), block_counts(fit_rows)
    S, m, blocks = type_matrix(score_rows), np.array([r["measured_ms"] for r in score_rows]), block_counts(score_rows)
    result = {"fit": str(args.fit), "score": str(args.score), "seeds": seeds, "n_fit": len(fit_rows), "n_score": len(score_rows),
              "device": score_t.device, "kinds": {},
              "fresh_validation": {k: score_t.data["validation"].get(k) for k in ("seed", "started", "load_average", "canary")},
              "fresh_in_run_choice": score_t.data["validation"]["corrections"]["chosen"],
              "noise_floor": noise_floor(score_rows)}
    print(f"{score_t.device.get('runtime')} {score_t.device.get('dtype')}: fitted on {len(fit_rows)} subnets (seed {seeds[0]}), "
          f"scored on {len(score_rows)} others (seed {seeds[1]})")
    # The level of a session can move as a whole (the host's slow and fast phases, which the canary only
    # partly follows); "level" rescales the transferred predictions by one factor, the median ratio on the
    # scored set, to separate a level shift from a wrong shape.
    print(f"{'correction':<14} {'within ±10 %':>12} {'MAPE %':>8} {'max %':>7} {'τ':>6} {'level':>6} {'±10 % after level':>18}")
    for kind in KINDS:
        params = correction_params(kind, S_fit, m_fit, b_fit)
        if params is None:
            continue
        pred = predict(params, S, blocks)
        s = score(pred, m)
        level = float(np.median(m / pred))
        s_level = score(level * pred, m)
        result["kinds"][kind] = {"params": params, "score": s, "level": level, "score_after_level": s_level}
        print(f"{kind:<14} {100 * s['within_10pct']:>11.0f}% {s['mape_pct']:>8.1f} {s['max_err_pct']:>7.1f} {s['kendall_tau']:>6.3f}"
              f" {level:>6.3f} {100 * s_level['within_10pct']:>13.0f}% ({s_level['mape_pct']:.1f} %)")
    floor = result["noise_floor"]
    if floor:
        print(f"test-retest noise floor of the fresh validation: {json.dumps(floor)}")
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
