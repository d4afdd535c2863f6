"""Benchmark: how long the book takes to execute, chapter by chapter, and how much memory each chapter needs.

Executes every chapter listed in ``_toc.yml`` from a clean state, one after another, the way the book build
does but without its cache: each ``chapters/*.md`` is read with ``jupytext.read(path, fmt="md:myst")`` and run
by ``nbclient.NotebookClient`` in a fresh ``python3`` kernel whose working directory is ``chapters/``, with
``TQDM_DISABLE=1`` in the environment (as ``make book`` sets it). Files of the table of contents without a
``kernelspec`` in their front matter (the introduction, the references) are plain Markdown pages that the
book does not execute; they are listed with no time.

Per chapter it reports

* the wall time from starting the kernel to shutting it down (kernel start-up, imports, every cell), and
* its slowest code cells (from the timestamps nbclient records in each cell's metadata), and
* the peak resident memory of the kernel process: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read by one
  extra cell appended at the end of the notebook, i.e. the operating system's own high-water mark of the
  kernel's RSS over its whole life (exact, not sampled), plus the same figure for any child processes the
  kernel started and waited for (``RUSAGE_CHILDREN``, e.g. DataLoader workers; usually 0),

then the total, prints a table and writes JSON to ``benchmarks/results/``. The goal (from the issue): the
whole book in under 10 minutes on a 2-core CPU.

    python benchmarks/book_timing.py                          # every chapter, full MNIST from ../shared/data
    python benchmarks/book_timing.py --only 03_elbo 04_gaussian_kl
    python benchmarks/book_timing.py --embedded               # the data a reader without a download gets

Data: the chapters load MNIST through ``ae_course.data``, which reads ``$AE_COURSE_DATA``. This script sets it
for the kernels to ``--data-dir`` (default: $AE_COURSE_DATA, else ``../shared/data`` relative to the
repository). If that folder has no MNIST files it says so and the chapters fall back as they would on a
reader's machine (user cache, download, embedded subset); ``--embedded`` forces the embedded 4,000/1,000 digits
(``AE_COURSE_OFFLINE=1`` and an empty data folder).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from common import atomic_write  # benchmarks/common.py: the script's folder is on sys.path

import jupytext
import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]

PEAK_MARKER = "__ae_course_book_timing_peak__"
PEAK_CELL = f"""\
import json as _json, resource as _resource, sys as _sys
_unit = 1 if _sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, in KiB on Linux
print("{PEAK_MARKER}" + _json.dumps({{
    "self": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * _unit,
    "children": _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss * _unit}}))
"""


def toc_files(toc_path: Path) -> list[str]:
    """The files of a Jupyter Book table of contents, in reading order (root first, then parts/chapters/sections)."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def resolve(file: str) -> Path:
    for suffix in ("", ".md", ".ipynb"):
        path = REPO / f"{file}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{file} (listed in _toc.yml) not found as .md or .ipynb under {REPO}")


def run_chapter(path: Path, timeout: int) -> dict:
    nb = jupytext.read(path, fmt="md:myst") if path.suffix == ".md" else nbformat.read(path, as_version=4)
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    if "kernelspec" not in nb.metadata or n_code == 0:
        return {"executed": False, "why": "plain Markdown page (no kernelspec or no code cells): the book does not execute it"}
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    load = os.getloadavg()[0]
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as err:
        error = str(err).strip().splitlines()[-1][:300]
    except Exception as err:  # a timeout or a dead kernel: report it and go on with the next chapter
        error = f"{type(err).__name__}: {err}"[:300]
    seconds = time.perf_counter() - start
    peak = {}
    for output in nb.cells[-1].get("outputs", []):
        if output.get("output_type") == "stream" and PEAK_MARKER in output.get("text", ""):
            peak = json.loads(output["text"].split(PEAK_MARKER, 1)[1].strip())
    return {"executed": True, "code_cells": n_code, "seconds": seconds, "peak_rss_bytes": peak.get("self"),
            "peak_rss_children_bytes": peak.get("children"), "error": error, "load_average_at_start": load,
            "slowest_cells": cell_times(nb.cells[:-1])[:8]}


def cell_times(cells) -> list[dict]:
    """Seconds per executed code cell, slowest first, from the timestamps nbclient records in each cell's
    metadata (``execution.iopub.execute_input`` to ``execution.shell.execute_reply``), with the cell's index
    among the code cells and its first source line, to find where a chapter spends its time."""
    from datetime import datetime
    times = []
    code_index = -1
    for cell in cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        stamps = cell.get("metadata", {}).get("execution", {})
        start, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if start and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                       - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            times.append({"code_cell": code_index, "seconds": round(seconds, 2), "first_line": first[:100]})
    return sorted(times, key=lambda t: -t["seconds"])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("AE_COURSE_DATA") or str(REPO / ".." / "shared" / "data"),
                   help="set as $AE_COURSE_DATA for the kernels")
    p.add_argument("--embedded", action="store_true",
                   help="run on the embedded 4,000/1,000 MNIST digits (AE_COURSE_OFFLINE=1, empty data folder)")
    p.add_argument("--only", nargs="*", default=None,
                   help="run only these chapters (names as in _toc.yml, with or without 'chapters/')")
    p.add_argument("--timeout", type=int, default=1200, help="seconds per cell, as in _config.yml")
    p.add_argument("--goal-minutes", type=float, default=10.0)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--tag", default="")
    p.add_argument("--show-cells", type=int, default=3, help="print this many of each chapter's slowest cells")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"  # inherited by the kernels, as in `make book`
    empty = None
    if args.embedded:
        empty = tempfile.TemporaryDirectory(prefix="ae_course_empty_")
        os.environ.update(AE_COURSE_OFFLINE="1", AE_COURSE_DATA=empty.name)
        data = "embedded subset (AE_COURSE_OFFLINE=1, empty data folder)"
    else:
        data_dir = Path(args.data_dir).expanduser().resolve()
        if data_dir.is_dir():
            os.environ["AE_COURSE_DATA"] = str(data_dir)      # a wrong AE_COURSE_DATA is an error in ae_course.data
        else:
            os.environ.pop("AE_COURSE_DATA", None)
        if (data_dir / "mnist" / "train-images-idx3-ubyte.gz").exists():
            data = f"full data sets from {data_dir}"
        else:
            data = (f"NO MNIST files in {data_dir}/mnist: the chapters fall back as on a reader's machine "
                    "(user cache, download unless AE_COURSE_OFFLINE is set, else the embedded subset; "
                    "--embedded forces the subset)")
            print(f"WARNING: {data}", flush=True)

    files = toc_files(REPO / "_toc.yml")
    if args.only:
        wanted = {name.removeprefix("chapters/").removesuffix(".md") for name in args.only}
        unknown = wanted - {Path(f).name for f in files}
        if unknown:
            sys.exit(f"not in _toc.yml: {sorted(unknown)}")
        files = [f for f in files if Path(f).name in wanted]
    print(f"data: {data}; {len(files)} files from _toc.yml; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)

    load_before = os.getloadavg()
    results = {}
    for file in files:
        try:
            path = resolve(file)
        except FileNotFoundError as err:  # a chapter listed before it was written: report it, go on
            results[file] = {"executed": True, "code_cells": 0, "seconds": 0.0, "peak_rss_bytes": None,
                             "peak_rss_children_bytes": None, "error": str(err), "load_average_at_start": os.getloadavg()[0]}
            print(f"{file:36s}       - MISSING: {err}", flush=True)
            continue
        result = run_chapter(path, args.timeout)
        results[file] = result
        if result["executed"]:
            peak = result["peak_rss_bytes"]
            print(f"{file:36s} {result['seconds']:7.1f} s  peak RSS "
                  f"{peak / 2**20 if peak else float('nan'):7.0f} MiB  load {result['load_average_at_start']:.2f}"
                  f"{'  ERROR: ' + result['error'] if result['error'] else ''}", flush=True)
            for cell in result["slowest_cells"][:args.show_cells]:
                print(f"    cell {cell['code_cell']:3d} {cell['seconds']:7.1f} s  {cell['first_line']}", flush=True)
        else:
            print(f"{file:36s}       - (not executed: plain Markdown)", flush=True)
    load_after = os.getloadavg()
    if empty is not None:
        empty.cleanup()

    executed = {f: r for f, r in results.items() if r["executed"]}
    total = sum(r["seconds"] for r in executed.values())
    peaks = [r["peak_rss_bytes"] for r in executed.values() if r["peak_rss_bytes"]]
    failed = [f for f, r in executed.items() if r["error"]]
    goal = args.goal_minutes * 60
    summary = {
        "data": data, "total_seconds": total, "goal_seconds": goal, "goal_met": total <= goal and not failed,
        "max_peak_rss_bytes": max(peaks) if peaks else None, "failed": failed, "chapters": results,
        "complete_toc": args.only is None,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "python": sys.version.split()[0], "load_average_1_5_15_min_before": load_before,
                    "load_average_after": load_after},
    }
    try:
        import torch
        summary["machine"]["torch"] = torch.__version__
    except ImportError:
        pass

    print()
    print("| chapter | wall time (s) | peak RSS (MiB) |")
    print("|---|---:|---:|")
    for file, r in executed.items():
        peak = f"{r['peak_rss_bytes'] / 2**20:.0f}" if r["peak_rss_bytes"] else "?"
        print(f"| {Path(file).name}{' (FAILED)' if r['error'] else ''} | {r['seconds']:.1f} | {peak} |")
    print(f"| **total** ({len(executed)} chapter{'' if len(executed) == 1 else 's'}) | **{total:.1f}** | max {max(peaks) / 2**20:.0f} |"
          if peaks else f"| **total** | **{total:.1f}** | |")
    print(f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs; "
          f"goal {goal / 60:g} min{'' if args.only is None else ' (for the whole book; this run is a subset)'}: "
          f"{'met' if summary['goal_met'] else 'NOT met'}{'; failed: ' + ', '.join(failed) if failed else ''}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"book_timing_{time.strftime('%Y%m%d-%H%M%S')}{('_' + args.tag) if args.tag else ''}.json"
    atomic_write(path, json.dumps(summary, indent=2).encode())
    print(f"wrote {path}")
    if failed:
        sys.exit(1)
    return summary




if __name__ == "__main__":
    main()
