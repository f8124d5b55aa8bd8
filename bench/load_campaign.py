"""The service figures of the model card, in one run: ``bench/load.py`` repeated and combined.

Run it with nothing else on the machine (about 20 minutes on 2 cores):
``python bench/load_campaign.py``. Runs of ``bench/load.py`` on this shared machine spread widely
(at 150 streams, 6-19% of frames degraded for one build), so each stream count is run
``--repeats`` times and the medians are what compare. Writes, in ``bench/results/``:

- ``load_repeats.json``: every run at 100, 150 and 200 streams (degraded frames, latency), and
  each count's median degraded fraction and p99 latency;
- ``load_200_streams.json``: the first 200-stream run, which decodes every stream afterwards
  (``--verify``: no text lost);
- ``load_300_streams.json`` (one run, ``--verify``) and ``load_200_passthrough.json`` (the
  pass-through server at 200 streams, the latency baseline);
- ``load.json``: the 200-stream run with the search for the most streams with no degraded frame
  (5 s runs from ``--search-from`` up, ``--search-step`` apart).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOAD = ROOT / "bench" / "load.py"
RUN_FIELDS = ("degraded_fraction", "degraded_frames", "frames", "latency_ms")


def load_run(args: list[str], out: Path) -> dict:
    """One ``bench/load.py`` run with ``args`` -> its JSON (written to ``out``)."""
    subprocess.run([sys.executable, str(LOAD), *args, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def repeats(counts: tuple[int, ...], runs: int, seconds: int, scratch: Path) -> tuple[dict, dict]:
    """``runs`` runs at each of ``counts`` streams -> (the repeats' summary, the first run at the
    largest count, made with ``--verify``)."""
    summary = {"command": f"python bench/load_campaign.py: {runs} runs each of python bench/load.py --streams N "
                          f"--seconds {seconds} (N = {', '.join(map(str, counts))}; the first {counts[-1]}-stream "
                          "run with --verify)",
               "machine": "x86_64, 2 cores", "streams": {}}
    verified = {}
    for n in counts:
        rows = []
        for i in range(runs):
            verify = n == counts[-1] and i == 0
            res = load_run(["--streams", str(n), "--seconds", str(seconds), *(["--verify"] if verify else [])],
                           scratch / f"load_{n}_{i}.json")
            if verify:
                verified = res
            main = res["main"]
            rows.append({k: main[k] for k in RUN_FIELDS})
            print(f"{n} streams, run {i + 1}: {100 * main['degraded_fraction']:.2f}% degraded, "
                  f"p99 {main['latency_ms']['p99']:.1f} ms", flush=True)
        summary["streams"][str(n)] = {
            "runs": rows,
            "median_degraded_fraction": statistics.median(r["degraded_fraction"] for r in rows),
            "median_p99_ms": statistics.median(r["latency_ms"]["p99"] for r in rows)}
    return summary, verified


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--search-from", type=int, default=20)
    ap.add_argument("--search-step", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rvqstream-campaign-") as tmp:
        scratch = Path(tmp)
        summary, verified = repeats((100, 150, 200), args.repeats, args.seconds, scratch)
        (args.out / "load_repeats.json").write_text(json.dumps(summary, indent=1) + "\n")
        (args.out / "load_200_streams.json").write_text(json.dumps(verified, indent=1) + "\n")
        r300 = load_run(["--streams", "300", "--seconds", str(args.seconds), "--verify"],
                        args.out / "load_300_streams.json")
        passthrough = load_run(["--streams", "200", "--seconds", str(args.seconds), "--verify", "--passthrough"],
                               args.out / "load_200_passthrough.json")
        search = load_run(["--streams", "30", "--seconds", "5", "--search", "--search-from", str(args.search_from),
                           "--search-step", str(args.search_step)], scratch / "search.json")
    combined = {**verified,
                "command": (f"python bench/load_campaign.py: the first 200-stream run of load_repeats.json; search: "
                            f"python bench/load.py --streams 30 --seconds 5 --search --search-from "
                            f"{args.search_from} --search-step {args.search_step}"),
                "max_streams_without_degradation": search["max_streams_without_degradation"],
                "search": search["search"]}
    (args.out / "load.json").write_text(json.dumps(combined, indent=1) + "\n")
    print(f"300 streams: {100 * r300['main']['degraded_fraction']:.2f}% degraded, p99 "
          f"{r300['main']['latency_ms']['p99']:.0f} ms; pass-through p99 "
          f"{passthrough['main']['latency_ms']['p99']:.1f} ms; most streams clean: "
          f"{search['max_streams_without_degradation']}")


if __name__ == "__main__":
    main()
