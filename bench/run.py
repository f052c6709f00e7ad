"""One command for every benchmark: `python bench/run.py [--quick] [--only NAME] [--rows N]`.

Prints a table of figures (each a ratio against a baseline measured in the same run) and writes
bench/results/latest.json plus a timestamped copy."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api
import bench_export
import bench_import
import bench_latency
import bench_queue
import bench_search
from common import BENCH_DIR, WORK, Result, log

NAMES = ("queue", "latency", "import", "export", "search", "api")


async def run_one(name: str, args: argparse.Namespace) -> Result:
    if name == "queue":
        return await bench_queue.run(args.quick, args.jobs)
    if name == "latency":
        return await bench_latency.run(args.quick)
    if name == "import":
        return await bench_import.run(args.quick, args.rows, args.big)
    if name == "export":
        return await bench_export.run(args.quick, args.rows)
    if name == "search":
        return await bench_search.run(args.quick, args.rows)
    return await bench_api.run(args.quick)


def table(results: list[dict]) -> str:
    head = (
        f"{'metric':44} {'value':>12} {'unit':7} {'baseline':30} {'base':>10} {'ratio':>7}  target"
    )
    lines = [head, "-" * len(head)]
    for res in results:
        if "error" in res:
            lines.append(f"{res['name']:44} ERROR: {res['error'].splitlines()[-1][:80]}")
        for f in res.get("figures", []):
            ratio = "" if f["ratio"] is None else f"{f['ratio']:.2f}x"
            base = "" if f["baseline_value"] is None else f"{f['baseline_value']:.1f}"
            verdict = {True: "MET", False: "MISSED", None: ""}[f["met"]]
            lines.append(
                f"{f['metric']:44} {f['value']:>12.1f} {f['unit']:7} {f['baseline'] or '':30} "
                f"{base:>10} {ratio:>7}  {f['target']} {verdict}"
            )
    return "\n".join(lines)


def merged(latest: Path, report: dict) -> dict:
    """With --only, keep the other benchmarks' latest results (each names its run)."""
    for res in report["results"]:
        res["run"] = report["started"] + (" quick" if report["quick"] else "")
    try:
        previous = json.loads(latest.read_text())
    except (FileNotFoundError, ValueError):
        return report
    fresh = {r["name"] for r in report["results"]}
    kept = [r for r in previous.get("results", []) if r["name"] not in fresh]
    if not kept:
        return report
    return report | {"results": kept + report["results"], "merged": True}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, ~2-3 minutes")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only these")
    parser.add_argument("--rows", type=int, help="rows of the import/export file")
    parser.add_argument("--jobs", type=int, help="jobs per throughput run")
    parser.add_argument("--big", action="store_true", help="also import 10M rows (RSS check)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    began = time.time()
    results: list[dict] = []
    for name in args.only or NAMES:
        try:
            results.append((await run_one(name, args)).as_dict())
        except Exception as exc:
            traceback.print_exc()
            results.append({"name": name, "error": "".join(traceback.format_exception(exc))})
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "seconds": round(time.time() - began, 1),
        "quick": args.quick,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(began))
    (out / f"{stamp}{'-quick' if args.quick else ''}.json").write_text(json.dumps(report, indent=2))
    (out / "latest.json").write_text(json.dumps(merged(out / "latest.json", report), indent=2))
    print()
    print(table(results))
    log(f"wrote {out / 'latest.json'} in {report['seconds']}s")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
