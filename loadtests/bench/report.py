"""What a run printed and saved: per-run lines, ratios to the ceiling, plots, the summary."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from loadtests.bench import E2E_TARGET_MS


def _fmt(s: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "   -   " if v is None else f"{v:7.2f}"

    return f"p50={f(s['p50'])} p95={f(s['p95'])} p99={f(s['p99'])} max={f(s['max'])} ms"


def print_one(which: str, name: str, r: dict[str, Any]) -> None:
    print(
        f"  [{which}/{name}] sent={r['sent']} accepted={r['accepted']} "
        f"delivered={r['delivered_per_console']} errors={r['errors']} drain={r['drain_s']}s"
        f" stale_connection_retries={r['stale_connection_retries']}"
    )
    print(f"    ingest         {_fmt(r['ingest_ms'])}")
    print(f"    SOS->console   {_fmt(r['sos_to_console_ms'])}")
    print(f"    SOS->slowest   {_fmt(r['sos_to_slowest_console_ms'])}")
    if "cpu" in r:
        print(
            f"    cpu (cores)    { {k: v['cores'] for k, v in r['cpu'].items() if k != 'wall_s'} }"
        )
    if "cpu_ms_per_sos" in r:
        print(f"    cpu ms per SOS {r['cpu_ms_per_sos']}")
    if r["sample_errors"] or r["console_failures"]:
        print(f"    errors: {r['sample_errors']} {r['console_failures']}")
    if "burst" in r:
        print(f"    burst          {r['burst']}", flush=True)


def ratios(ours: dict[str, Any], ceil: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, r in ours.items():
        c = ceil.get(name)
        if c is None:
            continue
        if name == "sweep":
            each = [
                round(a / b, 2) if a and b else None
                for a, b in zip(r["best_rates"], c["best_rates"], strict=True)
            ]
            out["sweep_best_rate_each"] = each
            known = [x for x in each if x is not None]
            if known:
                out["sweep_best_rate"] = statistics.median(known)
            continue
        rr: dict[str, Any] = {}
        for metric in ("ingest_ms", "sos_to_console_ms", "sos_to_slowest_console_ms"):
            rr[metric] = {
                p: round(r[metric][p] / c[metric][p], 2)
                for p in ("p50", "p95", "p99", "max")
                if r[metric][p] and c[metric][p]
            }
        if "cpu_ms_per_sos" in r and "cpu_ms_per_sos" in c:
            rr["cpu_ms_per_sos"] = {
                k: round(v / c["cpu_ms_per_sos"][k], 2)
                for k, v in r["cpu_ms_per_sos"].items()
                if c["cpu_ms_per_sos"].get(k)
            }
        out[name] = rr
    return out


def plot(results: dict[str, Any], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for ax, which in zip(axes, ("ansim", "ceiling"), strict=True):
        r = results.get(which, {}).get(name)
        if not r:
            ax.set_visible(False)
            continue
        t = [s[0] for s in r["series"]]
        ax.scatter(t, [s[1] for s in r["series"]], s=2, alpha=0.4, label="ingest (201)")
        ax.scatter(
            [s[0] for s in r["series"] if s[2] is not None],
            [s[2] for s in r["series"] if s[2] is not None],
            s=2,
            alpha=0.4,
            label="SOS -> console",
        )
        if "burst" in r:
            b0, b1 = r["burst"]["window_s"]
            ax.axvspan(b0, b1, color="red", alpha=0.12, label="burst")
        ax.axhline(E2E_TARGET_MS, color="grey", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("ms from scheduled send")
        ax.set_title(f"{which}: {name} {r['segments']}")
        ax.legend(loc="upper right", markerscale=4)
    axes[-1].set_xlabel("scheduled send time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(results: dict[str, Any]) -> None:
    print("\n=== ansim vs ceiling (ratio = ansim / ceiling; latency: lower is better) ===")
    o, c, rt = results.get("ansim", {}), results.get("ceiling", {}), results.get("ratios", {})
    for name in ("idle", "steady", "burst", "smoke"):
        if name not in o:
            continue
        print(f"{name}:")
        for metric in ("ingest_ms", "sos_to_console_ms", "sos_to_slowest_console_ms"):
            line = f"  {metric:27s} ansim {_fmt(o[name][metric])}"
            if name in c:
                line += f" | ceiling p99={c[name][metric]['p99']} | ratio {rt[name][metric]}"
            print(line)
        print(
            f"  counts sent/accepted/delivered: {o[name]['sent']}/{o[name]['accepted']}/"
            f"{o[name]['delivered_per_console']} errors={o[name]['errors']} "
            f"5xx={o[name]['server_errors_5xx']}"
        )
        if "cpu_ms_per_sos" in o[name]:
            line = f"  cpu ms per SOS: ansim {o[name]['cpu_ms_per_sos']}"
            if name in c:
                line += f" | ceiling {c[name]['cpu_ms_per_sos']}"
            print(line)
        if "burst" in o[name]:
            print(f"  burst recovery: ansim {o[name]['burst']['recovered_after_s']} s", end="")
            if name in c:
                print(f", ceiling {c[name]['burst']['recovered_after_s']} s", end="")
            print()
    if "sweep" in o:
        print(
            f"sweep: best rate with p99<= {E2E_TARGET_MS} ms: ansim {o['sweep']['best_rates']}"
            + (f", ceiling {c['sweep']['best_rates']}" if "sweep" in c else "")
            + (
                f"; ratio {rt['sweep_best_rate_each']}, median {rt.get('sweep_best_rate')}"
                if "sweep_best_rate_each" in rt
                else ""
            )
        )
    if "mass" in o:
        m = o["mass"]
        for phase in ("empty", "open"):
            r = m[phase]
            snap = _fmt(r["snapshot"]["ms"])
            print(
                f"mass/{phase} ({r['open_incidents']} open): snapshot ms {snap}"
                f" ({r['snapshot']['incidents_in_snapshot']} incidents,"
                f" {r['snapshot']['bytes_max']} bytes); ingest {_fmt(r['run']['ingest_ms'])};"
                f" slowest console {_fmt(r['run']['sos_to_slowest_console_ms'])};"
                f" linked {r['run']['linked_sos']}; cpu ms per SOS {r['run']['cpu_ms_per_sos']};"
                f" RSS MB {r['rss_mb_after']}"
            )
        print(f"mass ratios, open / empty: {m['ratios_open_to_empty']}")
