"""The one benchmark runner: ``python -m benchmarks.run [NAME ...] [--quick] [--out DIR]``.

Each ``benchmarks/bench_<name>.py`` defines

- ``run(ctx: Context) -> dict``: measures the kit and its baseline side by side, in the same run, and
  returns JSON-able results (ratios included, as ``ratio_*`` keys with the goal beside them);
- ``report(result: dict) -> str``: a short markdown section with the ratios;
- optionally ``plot(result: dict, path: Path) -> bool``: writes a PNG where a picture says more.

Results go to ``OUT/results.json`` and ``OUT/report.md`` (default ``benchmarks/results``).
Progress is printed as each benchmark starts and ends.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass
class Context:
    out: Path  # where a benchmark may write files (bundles, plots)
    quick: bool  # fewer iterations, for a smoke run
    long: bool = False  # add the long runs (bench_serve's 10-minute soak)

    def log(self, message: str) -> None:
        print(f"  {message}", flush=True)


def available() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--long", action="store_true", help="add the long runs (serve: a 10-minute soak)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["_machine"] = {"python": platform.python_version(), "machine": platform.machine(), "node": platform.node()}
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"[{name}] running", flush=True)
        t0 = time.perf_counter()
        result = module.run(Context(args.out, args.quick, args.long))
        result["_seconds"] = round(time.perf_counter() - t0, 1)
        result["_date"] = time.strftime("%Y-%m-%d %H:%M:%S")
        results[name] = result
        if hasattr(module, "plot"):
            module.plot(result, args.out / f"{name}.png")
        print(f"[{name}] done in {result['_seconds']} s", flush=True)
        results_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    sections = ["# Benchmark report", ""]
    for name in sorted(k for k in results if not k.startswith("_")):
        module = importlib.import_module(f"benchmarks.bench_{name}")
        sections += [f"## {name}", "", module.report(results[name]).rstrip(), ""]
        if (args.out / f"{name}.png").is_file():
            sections += [f"![{name}]({name}.png)", ""]
    (args.out / "report.md").write_text("\n".join(sections))
    print(f"results: {results_path}\nreport:  {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
