"""What starting one `connectra` command costs: the CPU time of `connectra --version` and of
`connectra healthcheck` (the image's HEALTHCHECK), against `python -c pass` in the same run.

    git worktree add --detach /tmp/connectra-cli-before REV   # the version to compare with
    python bench/bench_cli_start.py [--runs 30] [--against /tmp/connectra-cli-before]

Each command runs as the container runs it, the venv's `connectra` script, with only PATH,
HOME, LANG and `PYTHONPATH=<checkout>` set (the checkout comes before the venv's editable
install; a child is asked which `connectra.cli` it imports before anything is measured;
children run in `BENCH_WORK_DIR`, so that `python -c` does not import the current directory's).
`healthcheck` is given no `--url`: it reads its settings (API_PORT, METRICS_PORT=0) and asks
a `/readyz` that a thread of this script answers with 200, so it exits 0 as in a healthy
container. CPU is the child's user + system time (`RUSAGE_CHILDREN` before and after each
run, one child at a time). After a warm-up run of each (which also writes the checkouts'
bytecode), `--runs` rounds run every command once each, in an order rotated round by round.
Also measured per round: the cumulative time of `import connectra.cli` under
`python -X importtime`. Printed: medians, each command's ratio to `python -c pass`, and with
`--against`, this / against; JSON in `results/cli-start-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import http.server
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import PYTHON, REPO, WORK, log, write_report

CONNECTRA_SCRIPT = Path(PYTHON).with_name("connectra")
BASELINE = "python -c pass"
COMMANDS = ("connectra --version", "connectra healthcheck")
IMPORT_LINE = "| connectra.cli"


class Ready(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200, as a ready process's `/readyz` does."""

    def do_GET(self) -> None:
        body = b'{"status": "ready", "problems": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet: one probe per run."""


@contextmanager
def ready_listener() -> Iterator[int]:
    """A `/readyz` answering 200 on a free loopback port, served by a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def side_env(checkout: Path, api_port: int) -> dict[str, str]:
    """Only what a container sets that matters here, with `connectra` from `checkout`."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        PYTHONPATH=str(checkout), API_HOST="127.0.0.1", API_PORT=str(api_port), METRICS_PORT="0"
    )
    return env


def argv(command: str) -> list[str]:
    """The child's arguments for a command's name."""
    if command == BASELINE:
        return [PYTHON, "-c", "pass"]
    return [str(CONNECTRA_SCRIPT), *command.split()[1:]]


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one child, run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=WORK, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu, wall


def import_seconds(env: dict[str, str]) -> float:
    """Cumulative seconds of `import connectra.cli`, from `python -X importtime`."""
    args = [PYTHON, "-X", "importtime", "-c", "import connectra.cli"]
    done = subprocess.run(
        args, env=env, cwd=WORK, capture_output=True, text=True, timeout=60, check=True
    )
    line = next(line for line in done.stderr.splitlines() if line.endswith(IMPORT_LINE))
    return int(line.split("|")[1]) / 1e6


def check_side(label: str, checkout: Path, env: dict[str, str]) -> dict[str, Any]:
    """Where the side's `connectra.cli` comes from (it must be its checkout), its commit, its
    edited files and how many modules importing it loads."""
    code = "import sys, connectra.cli as c; print(c.__file__); print(len(sys.modules))"
    args = [PYTHON, "-c", code]
    done = subprocess.run(args, env=env, cwd=WORK, capture_output=True, text=True, check=True)
    found, modules = done.stdout.split()
    if not Path(found).resolve().is_relative_to(checkout.resolve() / "connectra"):
        raise RuntimeError(f"{label}: connectra.cli comes from {found}, not {checkout}")
    git = ["git", "--no-optional-locks", "-C", str(checkout)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    edited = subprocess.run(
        [*git, "status", "--porcelain", "--", "connectra"], capture_output=True, text=True
    )
    return {
        "checkout": str(checkout),
        "commit": commit.stdout.strip(),
        "edited": edited.stdout.splitlines(),
        "modules_after_import": int(modules),
    }


def measure(sides: dict[str, Path], runs: int, api_port: int) -> dict[str, dict[str, Any]]:
    """Every (side, command) and the baseline, interleaved: CPU and wall of each run, and the
    import time of each side's `connectra.cli`."""
    envs = {label: side_env(checkout, api_port) for label, checkout in sides.items()}
    envs["baseline"] = envs["this"]
    items = [("baseline", BASELINE)] + [(s, c) for s in sides for c in COMMANDS]
    items += [(s, "import") for s in sides]
    found: dict[str, dict[str, Any]] = {
        f"{s} {c}": {"cpu": [], "wall": [], "import": []} for s, c in items
    }
    for round_no in range(runs + 1):  # round 0 warms up and is not kept
        shift = round_no % len(items)
        for label, command in items[shift:] + items[:shift]:
            env = envs[label]
            record = found[f"{label} {command}"]
            if command == "import":
                seconds = import_seconds(env)
                if round_no:
                    record["import"].append(seconds)
                continue
            cpu, wall = run_once(argv(command), env)
            if round_no:
                record["cpu"].append(cpu)
                record["wall"].append(wall)
    return found


def summary(found: dict[str, dict[str, Any]], sides: dict[str, Path]) -> dict[str, Any]:
    """Medians in milliseconds, ratios to the baseline and this / against."""
    med = {
        key: {k: statistics.median(v) * 1e3 for k, v in r.items() if v} for key, r in found.items()
    }
    base = med[f"baseline {BASELINE}"]["cpu"]
    rows: dict[str, Any] = {}
    for key, values in med.items():
        row = {f"{k}_ms": round(v, 2) for k, v in values.items()}
        if "cpu" in values:
            row["cpu_ratio_to_baseline"] = round(values["cpu"] / base, 2)
        rows[key] = row
    if "against" in sides:
        for command in (*COMMANDS, "import"):
            kind = "import" if command == "import" else "cpu"
            this, against = med[f"this {command}"][kind], med[f"against {command}"][kind]
            rows[f"this {command}"]["ratio_to_against"] = round(this / against, 3)
    return rows


def table(rows: dict[str, Any]) -> str:
    """The summary as aligned lines."""
    lines = [
        f"{'side and command':36} {'CPU ms':>8} {'wall ms':>8} {'x pass':>7} {'this/against':>12}"
    ]
    for key, row in rows.items():
        spent = row.get("cpu_ms", row.get("import_ms"))
        wall = f"{row['wall_ms']:8.1f}" if "wall_ms" in row else f"{'(import)':>8}"
        ratio = f"{row['cpu_ratio_to_baseline']:6.1f}x" if "cpu_ratio_to_baseline" in row else ""
        versus = f"{row['ratio_to_against']:11.2f}x" if "ratio_to_against" in row else ""
        lines.append(f"{key:36} {spent:8.1f} {wall} {ratio:>7} {versus:>12}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds of every command")
    parser.add_argument("--this", type=Path, default=REPO, help="the checkout to measure")
    parser.add_argument("--against", type=Path, help="a checkout to compare with")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    sides = {"this": args.this} | ({"against": args.against} if args.against else {})
    began = time.time()
    with ready_listener() as port:
        checked = {
            label: check_side(label, path, side_env(path, port)) for label, path in sides.items()
        }
        log(f"sides: {checked}; load average {os.getloadavg()}")
        found = measure(sides, args.runs, port)
    rows = summary(found, sides)
    print(table(rows))
    report = {
        "runs": args.runs,
        "python": sys.version,
        "sides": checked,
        "load_average_after": os.getloadavg(),
        "summary": rows,
        "details": found,
    }
    log(f"wrote {write_report('cli-start', report, began)}")


if __name__ == "__main__":
    main()
