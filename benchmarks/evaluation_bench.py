"""Evaluation Agent benchmark: calibration, power, CUPED, sequential sample size, and verdicts
against ground truth, all on the sandbox's real user simulator.

Usage:
    python benchmarks/evaluation_bench.py [--world tiny] [--seeds 20] [--splits 50]
        [--effect auto] [--aa-rollouts 200] [--replicates 3] [--out benchmarks/results]

Sections (all seeded; the same arguments give the same numbers):

1. A/A calibration. For each simulation seed the whole population is simulated once on the
   baseline; because simulated users do not interact, any split of them is an A/A test, so
   each seed is re-split ``--splits`` times with different hash salts (half the users per
   arm, the full stage's length). Reported: false-positive rate at alpha of the fixed-horizon
   Welch test (raw and CUPED), the delta-method ratio test, the exchange score, the mSPRT
   checked after every pair of users, a Welch test peeked at ``--looks`` times, and how often
   the stage's guardrail rule fires falsely.
2. Power. The same splits with a known effect injected into the treatment's north-star
   (``--effect`` relative, added as effect x control mean; "auto" sizes it for 80 % analytic
   power of the raw Welch test). Reported: empirical versus analytic power (raw, CUPED), the
   mSPRT's power, and its average sample size relative to the fixed horizon.
3. Staged A/A rollouts through ``run_stage`` (canary → ramp → full, new simulation per stage):
   false keeps, false vetoes, SRM alarms.
4. Verdicts versus ground truth over real lever changes (config edits in git worktrees of the
   sandbox repository), each evaluated ``--replicates`` times with different experiment ids.

Prints tables and writes ``evaluation-<world>.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from agentx.agents.evaluation.analysis import check_guardrails, estimate_effects
from agentx.agents.evaluation.exchange import estimate_exchange
from agentx.agents.evaluation.policy import EvaluationPolicy, load_policy
from agentx.agents.evaluation.rollout import run_rollout, stage_assignment
from agentx.agents.evaluation.truth import tally_verdicts
from agentx.agents.evaluation.verdict import decide
from agentx.models import Decision, Verdict
from agentx.sandbox.target import METRICS, SandboxTarget
from agentx.sandbox.world import load_world
from agentx.settings import Settings, load_settings
from agentx.stats import (
    compare_metric,
    cuped_adjust,
    msprt_test,
    power_two_sample,
    ratio_effect,
    welch_effect,
)
from agentx.target.models import ArmHandle, OnlineReadout
from agentx.workspace import git

NORTH = "watch_time"
LEVERS: dict[str, tuple[str, str]] = {
    "exploration_slots=1": (r"^exploration_slots\s*=\s*\d+", "exploration_slots = 1"),
    "exploration_slots=2": (r"^exploration_slots\s*=\s*\d+", "exploration_slots = 2"),
    "exploration_slots=4": (r"^exploration_slots\s*=\s*\d+", "exploration_slots = 4"),
    "mf_pool=200": (r"^mf_pool\s*=\s*\d+", "mf_pool = 200"),
    "mf_pool=120": (r"^mf_pool\s*=\s*\d+", "mf_pool = 120"),
    "mf_pool=20": (r"^mf_pool\s*=\s*\d+", "mf_pool = 20"),
    "fresh_pool=20": (r"^fresh_pool\s*=\s*\d+", "fresh_pool = 20"),
    "fresh_pool=5": (r"^fresh_pool\s*=\s*\d+", "fresh_pool = 5"),
    "category_cap=2": (r"^category_cap\s*=\s*\d+", "category_cap = 2"),
    "category_cap=0": (r"^category_cap\s*=\s*\d+", "category_cap = 0"),
    "mf_dim=4": (r"^mf_dim\s*=\s*\d+", "mf_dim = 4"),
    "mf_dim=32": (r"^mf_dim\s*=\s*\d+", "mf_dim = 32"),
    "epochs=2": (r"^epochs\s*=\s*\d+", "epochs = 2"),
    "ctr_smoothing=0": (r"^ctr_smoothing\s*=\s*[\d.]+", "ctr_smoothing = 0.0"),
    "popular_pool=0": (r"^popular_pool\s*=\s*\d+", "popular_pool = 0"),
    "popular_pool=60": (r"^popular_pool\s*=\s*\d+", "popular_pool = 60"),
    "mf_iters=1": (r"^mf_iters\s*=\s*\d+", "mf_iters = 1"),
}


@dataclass
class Counter:
    """Rejection counts of one procedure."""

    hits: int = 0
    runs: int = 0
    extra: list[float] = field(default_factory=list)

    def add(self, hit: bool, value: float | None = None) -> None:
        self.hits += int(hit)
        self.runs += 1
        if value is not None:
            self.extra.append(value)

    @property
    def rate(self) -> float:
        return self.hits / self.runs if self.runs else float("nan")

    def band(self) -> float:
        """Half-width of a 95 % binomial (Wilson-free normal) interval of the rate."""
        p = self.rate
        return float(1.96 * np.sqrt(max(p * (1 - p), 1e-12) / max(self.runs, 1)))


def _population_readout(target: SandboxTarget, days: int, seed: int) -> OnlineReadout:
    """Everyone simulated on the baseline (both handles serve the same repository)."""
    control = target.launch("control", target.repo_path)
    twin = target.launch("treatment", target.repo_path)
    everyone = np.zeros(target.user_ids().size, dtype=np.int64)
    return target.collect(control, twin, everyone, days=days, seed=seed)


def _split(pop: OnlineReadout, arms: np.ndarray, shift: float = 0.0) -> OnlineReadout:
    """An A/A (or, with ``shift``, A/B) readout from one population simulation."""
    metrics, pre, users = {}, {}, {}
    for index, name in enumerate(("control", "treatment")):
        mask = arms == index
        users[name] = np.flatnonzero(mask)
        metrics[name] = {k: v[mask] for k, v in pop.metrics["control"].items()}
        pre[name] = {k: v[mask] for k, v in pop.pre["control"].items()}
    if shift:
        metrics["treatment"][NORTH] = metrics["treatment"][NORTH] + shift
    return OnlineReadout(
        arms=["control", "treatment"], users=users, metrics=metrics, pre=pre, days=pop.days
    )


def _peeking_welch(c: np.ndarray, t: np.ndarray, looks: int, alpha: float) -> bool:
    n = min(c.size, t.size)
    for k in range(1, looks + 1):
        m = max(2, n * k // looks)
        if welch_effect(c[:m], t[:m], alpha=alpha).p_value < alpha:
            return True
    return False


def _sequential(readout: OnlineReadout, alpha: float) -> tuple[bool, float]:
    """mSPRT on CUPED-adjusted values as run_stage does; (reject, n_at_stop / N)."""
    c, t = readout.metrics["control"][NORTH], readout.metrics["treatment"][NORTH]
    adj = cuped_adjust(c, readout.pre["control"][NORTH], t, readout.pre["treatment"][NORTH])
    res = msprt_test(adj.y_control_adj, adj.y_treatment_adj, alpha)
    n = min(c.size, t.size)
    return res.reject, (res.n_at_stop if res.reject and res.n_at_stop else n) / n


def calibration_and_power(
    target: SandboxTarget, settings: Settings, policy: EvaluationPolicy, args: argparse.Namespace
) -> dict[str, Any]:
    """Sections 1 and 2."""
    alpha = settings.alpha
    days = settings.stages[-1].days
    users = target.user_ids()
    aa = {
        k: Counter()
        for k in ("welch", "cuped", "delta_ctr", "exchange", "msprt", "peek", "guardrail")
    }
    ab = {k: Counter() for k in ("welch", "cuped", "msprt")}
    vr: list[float] = []
    sds: list[float] = []
    means: list[float] = []
    ns: list[int] = []
    effect = None if args.effect == "auto" else float(args.effect)
    pops = [_population_readout(target, days, 10_000 + s) for s in range(args.seeds)]
    y_all = np.concatenate([p.metrics["control"][NORTH] for p in pops])
    n_arm = int(np.mean([(stage_assignment(users, f"n{j}", 0.5) == 0).sum() for j in range(5)]))
    if effect is None:  # 80 % analytic power of the raw fixed-horizon Welch test
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)
        effect = float(z * y_all.std(ddof=1) * np.sqrt(2 / n_arm) / y_all.mean())
    for s, pop in enumerate(pops):
        for j in range(args.splits):
            arms = stage_assignment(users, f"bench-aa-{s}-{j}", 0.5)
            r = _split(pop, arms)
            c, t = r.metrics["control"], r.metrics["treatment"]
            pc, pt = r.pre["control"], r.pre["treatment"]
            aa["welch"].add(welch_effect(c[NORTH], t[NORTH], alpha=alpha).p_value < alpha)
            cup = compare_metric(c[NORTH], t[NORTH], pc[NORTH], pt[NORTH], alpha=alpha)
            aa["cuped"].add(cup.p_value < alpha)
            vr.append(cup.variance_reduction)
            ctr = ratio_effect(c["ctr.num"], c["ctr.den"], t["ctr.num"], t["ctr.den"], alpha=alpha)
            aa["delta_ctr"].add(ctr.p_value < alpha)
            exch, _ = estimate_exchange(r, METRICS, policy.exchange, alpha)
            aa["exchange"].add(exch is not None and exch.p_value < alpha)
            reject, _ = _sequential(r, alpha)
            aa["msprt"].add(reject)
            aa["peek"].add(_peeking_welch(c[NORTH], t[NORTH], args.looks, alpha))
            effects, problems = estimate_effects(r, METRICS, alpha)
            g_alpha = policy.guardrail_alpha or alpha
            guards = check_guardrails(effects, problems, settings.guardrails, g_alpha)
            aa["guardrail"].add(any(g.breached for g in guards))
            # Power: the same split with a known effect on the north-star.
            base = float(c[NORTH].mean())
            shifted = _split(pop, arms, shift=effect * base)
            tc, tt = shifted.metrics["control"][NORTH], shifted.metrics["treatment"][NORTH]
            ab["welch"].add(welch_effect(tc, tt, alpha=alpha).p_value < alpha)
            ab["cuped"].add(
                compare_metric(tc, tt, pc[NORTH], pt[NORTH], alpha=alpha).p_value < alpha
            )
            reject, ratio = _sequential(shifted, alpha)
            ab["msprt"].add(reject, ratio)
            sds.append(float(np.concatenate([c[NORTH], t[NORTH]]).std(ddof=1)))
            means.append(base)
            ns.append(int(min(c[NORTH].size, t[NORTH].size)))
    sd, mean, n = float(np.mean(sds)), float(np.mean(means)), int(np.mean(ns))
    mean_vr = float(np.mean(vr))
    analytic = power_two_sample(effect * mean, sd, n, alpha)
    analytic_cuped = power_two_sample(effect * mean, sd * np.sqrt(1 - mean_vr), n, alpha)
    ratios = np.asarray(ab["msprt"].extra)
    return {
        "alpha": alpha,
        "runs": aa["welch"].runs,
        "users_per_arm": n,
        "days": days,
        "false_positive_rate": {k: {"rate": v.rate, "band95": v.band()} for k, v in aa.items()},
        "cuped_variance_reduction": {
            "mean": mean_vr,
            "min": float(np.min(vr)),
            "max": float(np.max(vr)),
        },
        "injected_effect": effect,
        "power": {
            "welch": {
                "empirical": ab["welch"].rate,
                "analytic": analytic,
                "band95": ab["welch"].band(),
            },
            "cuped": {
                "empirical": ab["cuped"].rate,
                "analytic": analytic_cuped,
                "band95": ab["cuped"].band(),
            },
            "msprt": {"empirical": ab["msprt"].rate, "band95": ab["msprt"].band()},
        },
        "msprt_sample_size_ratio": {
            "mean_all_runs": float(ratios.mean()),
            "mean_when_rejected": float(ratios[ratios < 1].mean()) if (ratios < 1).any() else 1.0,
        },
    }


def staged_aa(
    target: SandboxTarget, settings: Settings, policy: EvaluationPolicy, runs: int
) -> dict[str, Any]:
    """Section 3: whole A/A rollouts through run_stage."""
    control = target.launch("control", target.repo_path)
    treatment = target.launch("treatment", target.repo_path)
    counts = {"KEEP": 0, "EXTEND": 0, "DISCARD": 0, "halted": 0, "srm_alarm": 0, "early_stop": 0}
    halts: dict[str, int] = {}
    for k in range(runs):
        arm = treatment.model_copy()
        rollout = run_rollout(
            target, control, arm, f"bench-aa-rollout-{k}", settings, policy=policy
        )
        if not rollout.rolled_back:
            target.rollback(arm)  # stop this rollout's arm processes before the next one
        verdict = decide(rollout, settings.north_star, settings.alpha, policy=policy)
        counts[verdict.decision.value] += 1
        counts["srm_alarm"] += any(not s.srm_ok for s in rollout.stages)
        counts["early_stop"] += rollout.stages[-1].decision == "stop_early"
        if rollout.halted_at:
            counts["halted"] += 1
            key = (rollout.halt_reason or "").split(":")[0]
            halts[key] = halts.get(key, 0) + 1
    return {"runs": runs, "counts": counts, "halt_reasons": halts}


def lever_tally(
    target: SandboxTarget, settings: Settings, policy: EvaluationPolicy, replicates: int, root: Path
) -> dict[str, Any]:
    """Section 4: real lever changes, verdicts against ground truth."""
    control = target.launch("control", target.repo_path)
    verdicts: list[Verdict] = []
    rows = []
    for name, (pattern, value) in LEVERS.items():
        path = root / re.sub(r"[^a-z0-9]+", "-", name.lower())
        if not path.exists():
            git.add_worktree(target.repo_path, path, f"bench/{path.name}")
            config = path / "config.toml"
            config.write_text(re.sub(pattern, value, config.read_text(), flags=re.MULTILINE))
        treatment = target.launch("treatment", path)
        truth = target.ground_truth(path).relative
        decisions = []
        for r in range(replicates):
            arm = treatment.model_copy() if treatment.ok else ArmHandle(**treatment.model_dump())
            rollout = run_rollout(
                target, control, arm, f"bench-{name}-{r}", settings, policy=policy
            )
            if not rollout.rolled_back:
                target.rollback(arm)  # stop this rollout's arm processes before the next one
            verdict = decide(rollout, settings.north_star, settings.alpha, policy=policy)
            verdict.true_effects = truth
            verdicts.append(verdict)
            decisions.append(
                verdict.decision.value
                + ("" if verdict.decision == Decision.KEEP else f"/{verdict.root_cause}")
                + f"@{rollout.last_stage}"
            )
        rows.append(
            {
                "lever": name,
                "truth": {k: round(v, 4) for k, v in truth.items()},
                "verdicts": decisions,
            }
        )
    directions = {m.name: m.direction for m in METRICS}
    tally = tally_verdicts(
        verdicts,
        settings.north_star,
        settings.guardrails,
        policy.min_interesting_effect,
        exchange=policy.exchange,
        directions=directions,
    )
    for row, start in zip(rows, range(0, len(verdicts), replicates), strict=True):
        row["truth_class"] = tally.rows[start].truth
        row["outcomes"] = [t.outcome for t in tally.rows[start : start + replicates]]
    return {
        "replicates": replicates,
        "counts": tally.counts,
        "harmful_launches": tally.harmful_launches,
        "judged": tally.judged,
        "levers": rows,
    }


def _print_tables(result: dict[str, Any]) -> None:
    cal = result["calibration"]
    print(
        f"\nA/A calibration — {cal['runs']} splits, {cal['users_per_arm']} users/arm, "
        f"{cal['days']} days, alpha {cal['alpha']}"
    )
    print(f"{'procedure':<42}{'false-positive rate':>22}")
    labels = {
        "welch": "fixed horizon, Welch (raw)",
        "cuped": "fixed horizon, CUPED + Welch",
        "delta_ctr": "fixed horizon, delta method (ctr)",
        "exchange": "fixed horizon, exchange score",
        "msprt": "sequential mSPRT, peek every user pair",
        "peek": f"Welch peeked at {result['args']['looks']} looks (naive)",
        "guardrail": "any guardrail breach (stage rule)",
    }
    for key, label in labels.items():
        v = cal["false_positive_rate"][key]
        print(f"{label:<42}{v['rate']:>14.3f} ± {v['band95']:.3f}")
    vr = cal["cuped_variance_reduction"]
    print(
        f"\nCUPED variance reduction on {NORTH}: mean {vr['mean']:.3%} "
        f"(min {vr['min']:.3%}, max {vr['max']:.3%})"
    )
    print(f"\nPower at an injected {cal['injected_effect']:+.1%} on {NORTH}")
    print(f"{'test':<24}{'empirical':>12}{'analytic':>12}")
    for key in ("welch", "cuped", "msprt"):
        v = cal["power"][key]
        analytic = f"{v['analytic']:.3f}" if "analytic" in v else "—"
        print(f"{key:<24}{v['empirical']:>8.3f}±{v['band95']:.2f}{analytic:>12}")
    ss = cal["msprt_sample_size_ratio"]
    print(
        f"mSPRT sample size / fixed horizon: {ss['mean_all_runs']:.3f} over all runs, "
        f"{ss['mean_when_rejected']:.3f} when it rejected"
    )
    aa = result["staged_aa"]
    c = aa["counts"]
    print(
        f"\nStaged A/A rollouts ({aa['runs']}): KEEP {c['KEEP']} ({c['KEEP'] / aa['runs']:.3f}), "
        f"EXTEND {c['EXTEND']}, DISCARD {c['DISCARD']}, halted {c['halted']} "
        f"({c['halted'] / aa['runs']:.3f}), SRM alarms {c['srm_alarm']}, "
        f"early stops {c['early_stop']}"
    )
    print(f"  halts by reason: {aa['halt_reasons']}")
    lt = result["levers"]
    print(f"\nVerdicts vs ground truth: {len(LEVERS)} levers x {lt['replicates']} replicates")
    print(f"{'lever':<22}{'true wt':>9}{'truth':>9}  verdicts")
    for row in lt["levers"]:
        print(
            f"{row['lever']:<22}{row['truth'].get(NORTH, 0):>+9.3f}{row['truth_class']:>9}  "
            + ", ".join(row["verdicts"])
        )
    print(
        "tally:",
        ", ".join(f"{k} {v}" for k, v in lt["counts"].items()),
        f"| harmful launches {lt['harmful_launches']}",
    )


def main() -> None:
    """Run every section and print/write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", default="tiny")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sandbox and settings")
    parser.add_argument("--seeds", type=int, default=20, help="population simulations (A/A, power)")
    parser.add_argument("--splits", type=int, default=40, help="re-randomisations per simulation")
    parser.add_argument("--looks", type=int, default=10, help="looks of the naive peeking test")
    parser.add_argument("--effect", default="auto", help="injected relative effect or 'auto'")
    parser.add_argument("--aa-rollouts", type=int, default=100)
    parser.add_argument("--replicates", type=int, default=2, help="runs of each lever")
    parser.add_argument(
        "--guardrail-alpha", type=float, default=None, help="override the harness's level"
    )
    parser.add_argument("--workspace", type=Path, default=None, help="keep the sandbox here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    policy = load_policy()
    if args.guardrail_alpha is not None:
        policy = policy.model_copy(update={"guardrail_alpha": args.guardrail_alpha})
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workspace or Path(tmp)
        settings = load_settings(world=args.world, seed=args.seed, workspace=root / "ws")
        target = SandboxTarget.create(root / "sandbox", load_world(args.world), seed=args.seed)
        timings = {}
        t0 = time.perf_counter()
        calibration = calibration_and_power(target, settings, policy, args)
        timings["calibration_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        staged = staged_aa(target, settings, policy, args.aa_rollouts)
        timings["staged_aa_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        levers = lever_tally(target, settings, policy, args.replicates, root / "levers")
        timings["levers_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    result = {
        "world": args.world,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "policy": policy.model_dump(),
        "calibration": calibration,
        "staged_aa": staged,
        "levers": levers,
        "timings": timings,
    }
    _print_tables(result)
    parts = ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
    print(f"\ntotal {timings['total_s']:.0f} s ({parts})")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.guardrail_alpha is None else f"-guardrail-alpha-{args.guardrail_alpha:g}"
    path = args.out / f"evaluation-{args.world}{suffix}.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
