"""How a benchmark report is shown: console tables, JSON, and a Markdown report with PNG plots.

matplotlib is optional (``pip install 'edgepose[plots]'``) and used only for the plots; without
it the Markdown report is still written and says how to get them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO

from edge.bench import STAGES, BenchOptions, run
from edge.errors import ConfigError

log = logging.getLogger(__name__)
PLOTS_HINT = "install matplotlib for the plots: pip install 'edgepose[plots]'"


def _f(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def model_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    head = ["model", "backend", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "FPS"]
    rows = [[m["model"], m["backend"], str(m["threads"]), _f(m["ms"]["p50"], "{:.2f}"), _f(m["ms"]["p90"], "{:.2f}"),
             _f(m["ms"]["p99"], "{:.2f}"), _f(m["ms"]["mean"], "{:.2f}"), _f(m["fps"])] for m in report["model_only"]]
    return head, rows


def pipeline_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    head = ["model", "backend", "threads", "FPS", "x model-only", *[f"{s} ms" for s in STAGES],
            "latency p50/p99 ms", "drops", "CPU %", "RSS MB", "SoC °C", "throttled"]
    rows = []
    for p in report["pipeline"]:
        st = [_f((p["stage_ms"].get(s) or {}).get("mean"), "{:.2f}") for s in STAGES]
        temp = p.get("soc_temp_c")
        thr = p.get("throttled")
        rows.append([
            p["model"], p["backend"], str(p["threads"]), _f(p["fps"]), _f(p.get("ratio_to_model_only"), "{:.3f}"), *st,
            f"{_f(p['latency_ms']['p50'])}/{_f(p['latency_ms']['p99'])}", str(p["dropped_total"]),
            _f((p.get("cpu_percent") or {}).get("mean"), "{:.0f}"), _f((p.get("rss_mb") or {}).get("max"), "{:.0f}"),
            _f(temp["max"]) if temp else "n/a", (",".join(thr["flags_seen"]) or "none") if thr else "n/a",
        ])
    return head, rows


def text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def unavailable_lines(report: dict) -> list[str]:
    seen: dict[str, str] = {}
    for p in report["pipeline"]:
        seen.update(p.get("unavailable", {}))
    return [f"{k}: n/a ({v})" for k, v in sorted(seen.items())]


def format_tables(report: dict) -> str:
    """The console view: one table for model-only, one for the pipeline, then notes."""
    parts = []
    if report["model_only"]:
        parts.append("model only (backend.run on prepared frames)\n" + text_table(*model_rows(report)))
    if report["pipeline"]:
        parts.append("whole pipeline (ms per stage are means; latency is capture -> output)\n"
                     + text_table(*pipeline_rows(report)))
    notes = report.get("notes", []) + unavailable_lines(report)
    if notes:
        parts.append("\n".join(f"note: {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


class ProgressBar:
    """A one-line progress bar on a terminal; silent when the stream is not a terminal."""

    def __init__(self, stream: IO[str], width: int = 30):
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()
        self._label = ""

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        if label != self._label and self._label:
            self.stream.write("\n")
        self._label = label
        n = int(self.width * done / total) if total else self.width
        self.stream.write(f"\r[{'#' * n}{'.' * (self.width - n)}] {100 * done // max(1, total):3d}% {label}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._label:
            self.stream.write("\n")
            self.stream.flush()


def write_json(report: dict, target: str, stdout: IO[str]) -> None:
    """``target`` is a file path, or '-' for stdout."""
    text = json.dumps(report, indent=2) + "\n"
    if target == "-":
        stdout.write(text)
    else:
        Path(target).write_text(text, encoding="utf-8")


def _plots(report: dict, out: Path) -> list[tuple[str, str]]:
    """PNG plots per pipeline run: latency histogram, FPS and SoC temperature over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for i, p in enumerate(report["pipeline"]):
        title = f"{p['model']} {p['backend']} {p['threads']}t"
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(p["latencies_ms"], bins=40, color="#4477aa")
        ax.axvline(p["latency_ms"]["p50"], color="k", ls="--", label=f"p50 {p['latency_ms']['p50']:.1f} ms")
        ax.axvline(p["latency_ms"]["p99"], color="r", ls=":", label=f"p99 {p['latency_ms']['p99']:.1f} ms")
        ax.set(xlabel="capture -> output latency (ms)", ylabel="frames", title=title)
        ax.legend()
        name = f"latency_{i}.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append((f"Latency histogram, {title}", name))

        fig, ax = plt.subplots(figsize=(7, 3.5))
        t = [s["t_s"] for s in p["samples"]]
        ax.plot(t, [s["fps"] for s in p["samples"]], color="#4477aa", marker=".", label="FPS")
        ax.set(xlabel="time (s)", ylabel="FPS", title=title)
        temps = [(s["t_s"], s["soc_temp_c"]) for s in p["samples"] if s.get("soc_temp_c") is not None]
        if temps:
            ax2 = ax.twinx()
            ax2.plot([x for x, _ in temps], [y for _, y in temps], color="#cc3311", marker=".", label="SoC °C")
            ax2.set_ylabel("SoC temperature (°C)")
        else:
            reason = p.get("unavailable", {}).get("soc_temp_c", "not readable")
            ax.set_title(f"{title}\nSoC temperature n/a: {reason}", fontsize=8)
        name = f"timeline_{i}.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append((f"FPS and SoC temperature over time, {title}", name))
    return made


def write_report(report: dict, directory: str | Path) -> Path:
    """DIR/report.md (+ bench.json and PNG plots); returns the Markdown path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    m = report["machine"]
    lines = [
        f"# edgepose bench {report['started']}", "",
        f"- machine: {m.get('board') or m['cpu']} ({m['arch']}, {m['cores']} cores), {m['os']}, kernel {m['kernel']}",
        f"- python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items()),
        f"- settings: `{json.dumps(report['settings'])}`", "",
    ]
    if report["model_only"]:
        lines += ["## Model only", "", md_table(*model_rows(report)), ""]
    if report["pipeline"]:
        lines += ["## Whole pipeline", "", md_table(*pipeline_rows(report)), ""]
        try:
            plots = _plots(report, out) if any(p["samples"] for p in report["pipeline"]) else []
        except ImportError:
            log.warning("no plots in the report: %s", PLOTS_HINT)
            lines += [f"_No plots: {PLOTS_HINT}._", ""]
            plots = []
        for caption, name in plots:
            lines += [f"![{caption}]({name})", ""]
    notes = report.get("notes", []) + unavailable_lines(report)
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def cli_bench(args, stdout, stderr) -> int:
    """``edgepose bench``: tables on stdout (stderr when --json goes to stdout), JSON, a report."""
    opts = BenchOptions(
        models=[m for spec in args.model for m in split_list(spec)], backends=split_list(args.backend),
        threads=split_list(args.threads, int), iterations=args.iterations, warmup=args.warmup, source=args.source,
        pipeline=args.pipeline, seconds=args.seconds, realtime=args.realtime, loop=args.loop, outputs=args.output,
        family=args.family, config=args.config,
    )
    if args.write and not args.tune:
        raise ConfigError("--write CONFIG goes with --tune (it writes the combination --tune found best)")
    if args.tune:
        return _cli_tune(args, opts, stdout, stderr)
    bar = ProgressBar(stderr)
    try:
        report = run(opts, progress=bar)
    finally:
        bar.close()
    (stderr if args.json == "-" else stdout).write(format_tables(report))
    if args.json:
        write_json(report, args.json, stdout)
    if args.report:
        path = write_report(report, args.report)
        stderr.write(f"report written to {path}\n")
    return 0


def _cli_tune(args, opts: BenchOptions, stdout, stderr) -> int:
    from edge.bench_tune import format_tune, tune, write_placement

    if args.rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    bar = ProgressBar(stderr)
    try:
        result = tune(opts, rounds=args.rounds, progress=bar)
    finally:
        bar.close()
    (stderr if args.json == "-" else stdout).write(format_tune(result))
    if args.json:
        write_json(result, args.json, stdout)
    if args.write:
        best = result["best_throughput"]
        changed = write_placement(args.write, best["workers"], best["threads"])
        stderr.write(f"wrote {changed} into {args.write}\n")
    return 0


def split_list(text: str | None, cast=str) -> list:
    """'tflite,onnx' -> ['tflite', 'onnx']; repeated flags are joined first by the caller."""
    if not text:
        return []
    return [cast(x.strip()) for x in text.split(",") if x.strip()]
