#!/usr/bin/env python3
"""Builds and runs every benchmark, then writes docs/benchmarks.md with tables and SVG charts.

Usage: tools/bench_report.py [--quick] [--output FILE] [--save-json DIR]
       tools/bench_report.py --from-json DIR [--output FILE]

Default mode: runs `cmake --workflow --preset bench` (a Release build in build/bench), runs each
benchmark program of build/bench/benchmarks with --json, then, when node and npm are on PATH,
the Node.js scripts of benchmarks/node (running `npm ci` first when node_modules is missing).
A C++ benchmark that fails to build or run stops the script with exit status 1 and nothing is
written; a Node.js script that fails (or is absent) becomes a "Not run" line in the document.
--quick is passed on to every benchmark (smaller counts: a smoke run, not figures to quote).
--save-json DIR keeps the raw results (plus environment.json), for a later --from-json.

--from-json DIR renders from the JSON files in DIR without building or running anything:
pool_bench.json, coro_bench.json, tick_bench.json, channel_bench.json, process_bench.json,
server_bench.json, cluster_bench.json, node_tick.json, node_process.json, node_server.json,
any other *.json in a known shape, and environment.json (the date, the compiler and the
failures recorded by a default-mode run), each optional.

The document (default docs/benchmarks.md) has one section per benchmark: its table with each
result's ratio to its workload's reference, its claims with whether each holds, and one
horizontal bar chart per workload with two or more numeric contenders, written as SVG into a
folder named after the document (docs/benchmarks/). Each section has its reference rule (see
CPP_BENCHMARKS and NODE_BENCHMARKS): in the C++ benchmarks, the workload's first contender
whose name starts with "offload" (offload's own result); in the Node.js scripts, which have no
offload contender, the workload's first nonzero row. A row's "better" field ("higher" or
"lower") says which way is better, else its unit does; a result in "x" (a speedup) is already
a ratio, so it gets no ratio and no chart. The output is a function of the JSON alone: the same
JSON gives byte-identical files, other numbers give the same headings and the same file names.
Python 3 standard library only.
"""
import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape as xml_escape

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "bench"
BENCH_BIN = BUILD_DIR / "benchmarks"
NODE_DIR = ROOT / "benchmarks" / "node"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
ENVIRONMENT = "environment.json"

# How a section picks the reference (= 1.00x) of each workload's ratios.
REFERENCE_OFFLOAD = "offload"  # its first contender named "offload...", else its first nonzero row
REFERENCE_FIRST_NONZERO = "first nonzero row"  # its first nonzero row; no row is offload's

# (key = JSON file stem, section heading, where it comes from); the document's fixed order.
# The C++ benchmarks (and any other *.json, written by bench_common.hpp) use REFERENCE_OFFLOAD;
# the Node.js scripts use REFERENCE_FIRST_NONZERO (their "offloaded" is Node's worker_threads).
CPP_BENCHMARKS = [
    ("pool_bench", "Thread pool — `pool_bench`", "benchmarks/pool_bench.cpp"),
    ("coro_bench", "Coroutines — `coro_bench`", "benchmarks/coro_bench.cpp"),
    ("tick_bench", "The tick model — `tick_bench`", "benchmarks/tick_bench.cpp"),
    ("channel_bench", "Channels — `channel_bench`", "benchmarks/channel_bench.cpp"),
    ("process_bench", "Process pool — `process_bench`", "benchmarks/process_bench.cpp"),
    ("server_bench", "A server under load — `server_bench`", "benchmarks/server_bench.cpp"),
    ("cluster_bench", "Beyond one machine — `cluster_bench`", "benchmarks/cluster_bench.cpp"),
]
NODE_BENCHMARKS = [
    ("node_tick", "Node.js: the tick model — `tick.mjs`", "benchmarks/node/tick.mjs"),
    ("node_process", "Node.js: processes — `process.mjs`", "benchmarks/node/process.mjs"),
    ("node_server", "Node.js: a server under load — `server.mjs`", "benchmarks/node/server.mjs"),
]
LINUX_ONLY = {"process_bench"}
NEEDS_ASIO = {"server_bench"}  # built only when CMake finds standalone Asio (libasio-dev)
# Built only when CMake finds MPI, and run under mpirun: one driver, two serving ranks, as the
# tests run them (docs/cluster.md: as root, in a container, on a small machine).
NEEDS_MPI = {"cluster_bench"}
MPIRUN = ["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader",
          "--mca", "btl_vader_single_copy_mechanism", "none"]
MPI_ENVIRONMENT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
REFERENCE_RULES = dict([(key, REFERENCE_OFFLOAD) for key, _, _ in CPP_BENCHMARKS]
                       + [(key, REFERENCE_FIRST_NONZERO) for key, _, _ in NODE_BENCHMARKS])

LOWER_IS_BETTER_UNITS = {"ns", "us", "µs", "ms", "s", "kib", "mib", "gib", "%"}
RATIO_UNITS = {"x", "×"}  # already a ratio (a speedup): no ratio of it, no chart


# --- reading results ---------------------------------------------------------------------------

class Row:
    """One result: a number with its unit, or a text (then value is None)."""

    def __init__(self, workload, contender, value, unit, text="", better=None):
        self.workload = workload
        self.contender = contender
        self.value = value if is_number(value) else None
        self.unit = unit or ""
        self.text = "" if self.value is not None else (text or "n/a")
        self.stated_better = better if better in ("higher", "lower") else None  # the JSON's
        self.better = self.stated_better or better_of(self.unit)
        self.relative = self.unit.strip().lower() not in RATIO_UNITS  # False: no ratio, no chart
        self.offload = False  # offload's own result: set by apply_reference_rule, per section


class Benchmark:
    def __init__(self, title, machine=None, rows=(), claims=(), parameters=()):
        self.title = title
        self.machine = machine
        self.rows = list(rows)
        self.claims = list(claims)  # (claim, measured or None, target)
        self.parameters = list(parameters)  # (name, value) shown on one line
        self.reference_rule = REFERENCE_OFFLOAD


def apply_reference_rule(benchmark, rule):
    """Sets the section's rule; under REFERENCE_OFFLOAD, a contender named "offload..." is
    offload's own result; under REFERENCE_FIRST_NONZERO no row is."""
    if rule not in (REFERENCE_OFFLOAD, REFERENCE_FIRST_NONZERO):
        raise ValueError("unknown reference rule %r" % rule)
    benchmark.reference_rule = rule
    for row in benchmark.rows:
        row.offload = rule == REFERENCE_OFFLOAD and row.contender.lower().startswith("offload")
    return benchmark


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def better_of(unit):
    """'lower', 'higher' or None, from a unit: times, sizes and percentages are costs."""
    unit = unit.strip().lower()
    if "/s" in unit:
        return "higher"
    if unit in LOWER_IS_BETTER_UNITS:
        return "lower"
    return None


def load_json(path):
    """json.load, also accepting the bare nan / inf that C++ streams print."""
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        fixed = re.sub(r"(?<=[:\[,\s])(-?)(nan|inf)(?=[\s,\]}])",
                       lambda m: "NaN" if m.group(2) == "nan" else m.group(1) + "Infinity", text)
        return json.loads(fixed)


def scalar_parameters(data, skip):
    return [(key, value) for key, value in data.items() if key not in skip
            and isinstance(value, (str, int, float)) and not isinstance(value, bool)]


def from_report(data):
    """bench_common.hpp's Report::write_json shape: title, machine, rows, claims."""
    rows = [Row(r.get("workload", ""), r.get("contender", ""),
                None if r.get("text") else r.get("value"), r.get("unit", ""), r.get("text", ""),
                r.get("better"))
            for r in data.get("rows", [])]
    parameters = scalar_parameters(data, {"title", "machine"})
    return Benchmark(data.get("title", ""), data.get("machine"), rows, claims_of(data), parameters)


def claims_of(data):
    """The claims of any shape that has them: (claim, measured or None, target)."""
    return [(c.get("claim", ""), c.get("measured") if is_number(c.get("measured")) else None,
             str(c.get("target", ""))) for c in data.get("claims", [])]


TICK_METRICS = [  # (JSON field, workload, unit, better); unit "x": no ratio, no chart
    ("total_ms", "total time", "ms", "lower"),
    ("speedup", "speedup vs serial (same round)", "x", "higher"),
    ("ticks", "ticks of the 1 ms interval", "ticks", "higher"),
    ("largest_tick_gap_ms", "largest gap between ticks", "ms", "lower"),
    ("loop_cpu_ms", "CPU time of the loop's thread", "ms", "lower"),
    ("loop_sleeps", "times the loop's thread slept (each a wake-up)", "sleeps", "lower"),
]


def from_tick(data):
    """tick_bench.cpp's and tick.mjs's shape: one result per approach, a figure per metric (tick.mjs
    has no loop-thread figures: those rows say n/a)."""
    rows = []
    for field, workload, unit, better in TICK_METRICS:
        for result in data.get("results", []):
            rows.append(Row(workload, result.get("approach", "?"), result.get(field), unit,
                            better=better))
    parameters = scalar_parameters(data, {"workload", "machine", "results", "claims"})
    return Benchmark(data.get("workload", ""), data.get("machine"), rows, claims_of(data),
                     parameters)


def from_channels(data):
    """channel_bench.cpp's shape: messages per second per workload and contender."""
    rows = [Row(r.get("workload", ""), r.get("contender", ""),
                r["messages_per_second"] / 1e6 if is_number(r.get("messages_per_second"))
                else None, "M msg/s")
            for r in data.get("results", [])]
    parameters = scalar_parameters(data, {"benchmark", "machine", "results", "unit"})
    title = "%s, million messages per second" % data.get("benchmark", "channels")
    return Benchmark(title, data.get("machine"), rows, [], parameters)


def normalise(data):
    """A Benchmark from any of the known JSON shapes; ValueError for anything else."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if isinstance(data.get("rows"), list):
        return from_report(data)
    results = data.get("results")
    if isinstance(results, list) and results and isinstance(results[0], dict):
        if "approach" in results[0]:
            return from_tick(data)
        if "messages_per_second" in results[0]:
            return from_channels(data)
    raise ValueError("unrecognised JSON shape (no rows, no known results)")


# --- formatting --------------------------------------------------------------------------------

def number(value):
    """A fixed, readable rendering: whole numbers as such, else 3 significant figures or more."""
    magnitude = abs(value)
    if value == int(value) and magnitude < 1e9:
        return "%d" % value
    if magnitude >= 100:
        return "%.1f" % value
    if magnitude >= 1:
        return "%.2f" % value
    if magnitude >= 0.001:
        return "%.3f" % value
    return "%.2e" % value


def result_text(row):
    if row.value is None:
        return row.text
    if row.unit == "x":
        return "%.2fx" % row.value
    return ("%s %s" % (number(row.value), row.unit)).strip()


def ratio_text(ratio):
    return "%.2fx" % ratio if ratio is not None else ""


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def slug(text):
    """Lower case words joined by '-', parenthesised asides (counts, units) dropped."""
    text = re.sub(r"\([^)]*\)", " ", text.lower())
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:60].rstrip("-") or "chart"


def is_offload(row):
    return row.offload


def references(rows, rule):
    """workload -> the reference (= 1.00x) of its ratios, by the section's rule:
    REFERENCE_OFFLOAD, its first numeric offload contender (when that is 0, the workload gets no
    ratios), else (a workload without one) its first nonzero row; REFERENCE_FIRST_NONZERO, its
    first nonzero row. Rows in "x" (already ratios) are never references, and a workload whose
    rows are all zero has none."""
    found = {}
    if rule == REFERENCE_OFFLOAD:
        for row in rows:
            if row.value is not None and row.relative and is_offload(row):
                found.setdefault(row.workload, row)
    for row in rows:
        if row.value and row.relative:
            found.setdefault(row.workload, row)
    return found


def workload_better(rows, reference):
    """'higher', 'lower' or None for a workload's chart: a "better" its rows state, else the one
    its reference's unit implies."""
    stated = [row.stated_better for row in rows if row.stated_better]
    return stated[0] if stated else reference.better


def ratio_of(row, reference):
    if reference is None or row.value is None or not row.relative or not reference.value:
        return None
    return row.value / reference.value


def target_holds(measured, target):
    """'yes' / 'no' when the target reads like '<= 0.5', '>= 1.9', '< 1 %', '= 1 (yes)'; else ''."""
    if measured is None:
        return ""
    match = re.match(r"\s*(<=|>=|==|=|<|>|≤|≥)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
                     target)
    if not match:
        return ""
    op, bound = match.group(1), float(match.group(2))
    tolerance = 1e-9 * max(1.0, abs(bound))
    holds = {
        "<=": measured <= bound + tolerance, "≤": measured <= bound + tolerance,
        ">=": measured >= bound - tolerance, "≥": measured >= bound - tolerance,
        "<": measured < bound, ">": measured > bound,
        "=": abs(measured - bound) <= tolerance, "==": abs(measured - bound) <= tolerance,
    }[op]
    return "yes" if holds else "no"


# --- charts ------------------------------------------------------------------------------------

COLOUR_OFFLOAD = "#286983"
COLOUR_BEHIND = "#9893a5"  # a contender offload beats
COLOUR_AHEAD = "#d7827e"   # a contender ahead of offload
COLOUR_REFERENCE = "#222"  # the reference, when it is not offload (the Node.js scripts)
CHAR_WIDTH = 6.8           # estimated px per character at 12 px sans-serif


def nice_ticks(low, high):
    """Candidate grid values 1, 2, 5 x 10^k spanning [low, high], with 0.5 and 2 at least."""
    candidates = [m * 10.0 ** k for k in range(-9, 10) for m in (1, 2, 5)]
    low, high = min(low, 0.5), max(high, 2.0)
    start = max([c for c in candidates if c <= low * (1 + 1e-9)] or [candidates[0]])
    stop = min([c for c in candidates if c >= high * (1 - 1e-9)] or [candidates[-1]])
    ticks = [c for c in candidates if start * (1 - 1e-9) <= c <= stop * (1 + 1e-9)]
    if len(ticks) > 7:  # a wide range: the ends and every n-th power of ten that includes 1
        powers = [c for c in ticks if abs(math.log10(c) - round(math.log10(c))) < 1e-9]
        step = 1
        while len(powers) // step > 6:
            step += 1
        ticks = sorted({start, stop} | {c for c in powers if round(math.log10(c)) % step == 0})
    return start, stop, ticks


def tick_label(value):
    return ("%g" % value) + "x"


def chart_svg(title, subtitle, rows, reference, better):
    """A horizontal bar chart, log scale, bars growing from the 1.0 line (the reference)."""
    entries = [(row, ratio_of(row, reference)) for row in rows]
    positive = [r for _, r in entries if r is not None and r > 0]
    start, stop, ticks = nice_ticks(min(positive, default=1.0), max(positive, default=1.0))
    lo, hi = math.log10(start), math.log10(stop)

    label_width = 16 + CHAR_WIDTH * max(len(row.contender) for row in rows)
    value_texts = [(result_text(row), ratio_text(ratio) or "n/a") for row, ratio in entries]
    value_end = 16 + CHAR_WIDTH * max(len(value) for value, _ in value_texts)
    ratio_end = value_end + 16 + CHAR_WIDTH * max(len(ratio) for _, ratio in value_texts)
    plot_x, plot_width = label_width, 400.0
    width = max(plot_x + plot_width + ratio_end + 8, 16 + 8.2 * len(title),
                16 + CHAR_WIDTH * len(subtitle))
    top, row_height = 78.0, 26.0
    plot_bottom = top + row_height * len(rows)
    height = plot_bottom + 52

    def x_of(ratio):
        return plot_x + (math.log10(ratio) - lo) / (hi - lo) * plot_width

    width, height = math.ceil(width), math.ceil(height)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="sans-serif" font-size="12">' % (width, height, width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="8" y="22" font-size="15" font-weight="bold">%s</text>' % xml_escape(title),
           '<text x="8" y="42" fill="#555">%s</text>' % xml_escape(subtitle)]
    for tick in ticks:
        x = x_of(tick)
        is_axis = abs(tick - 1.0) < 1e-12
        style = ('stroke="#222" stroke-width="1.5"' if is_axis
                 else 'stroke="#ccc" stroke-width="1" stroke-dasharray="3,3"')
        out.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" %s/>'
                   % (x, x, top - 8, plot_bottom, style))
        out.append('<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s"%s>%s</text>'
                   % (x, top - 12, "#222" if is_axis else "#777",
                      ' font-weight="bold"' if is_axis else "", tick_label(tick)))
    for index, ((row, ratio), value_text) in enumerate(zip(entries, value_texts)):
        y = top + row_height * index
        middle = y + row_height / 2
        offload_row = is_offload(row)
        out.append('<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s'
                   '</text>' % (plot_x - 8, middle, xml_escape(row.contender)))
        if ratio is not None and ratio > 0:
            x0, x1 = x_of(1.0), x_of(ratio)
            if row is reference:
                colour = COLOUR_OFFLOAD if offload_row else COLOUR_REFERENCE
                out.append('<path d="M %.1f %.1f l 6 6 l -6 6 l -6 -6 z" fill="%s"/>'
                           % (x0, middle - 6, colour))
            else:
                if offload_row or better is None:
                    colour = COLOUR_OFFLOAD if offload_row else COLOUR_BEHIND
                else:
                    ahead = ratio < 1 if better == "lower" else ratio > 1
                    colour = COLOUR_AHEAD if ahead else COLOUR_BEHIND
                out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="16" fill="%s"/>'
                           % (min(x0, x1), middle - 8, max(abs(x1 - x0), 1.0), colour))
        value, ratio_label = value_text
        out.append('<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle" '
                   'fill="#333">%s</text>'
                   % (plot_x + plot_width + value_end, middle, xml_escape(value)))
        out.append('<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle" '
                   'font-weight="bold" fill="#333">%s</text>'
                   % (plot_x + plot_width + ratio_end, middle, xml_escape(ratio_label)))
    legend = [(COLOUR_OFFLOAD, "offload")] if any(is_offload(row) for row in rows) else []
    if not is_offload(reference):
        legend.append((COLOUR_REFERENCE, "reference (= 1.0)"))
    if better is None:
        legend.append((COLOUR_BEHIND, "other contender"))
    else:
        leader = "offload" if is_offload(reference) else "reference"
        legend += [(COLOUR_BEHIND, "%s ahead" % leader), (COLOUR_AHEAD, "contender ahead")]
    x = 8.0
    for colour, text in legend:
        out.append('<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>'
                   % (x, plot_bottom + 22, colour))
        out.append('<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>'
                   % (x + 18, plot_bottom + 28, xml_escape(text)))
        x += 36 + CHAR_WIDTH * len(text)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def chart_subtitle(reference, better, unit):
    direction = {"lower": "; lower is better", "higher": "; higher is better"}.get(better, "")
    what = "each result (%s)" % unit if unit else "each result"
    return "%s relative to %s (= 1.0)%s; log scale" % (what, reference.contender, direction)


# --- the document ------------------------------------------------------------------------------

def workloads_in_order(rows):
    order = []
    for row in rows:
        if row.workload not in order:
            order.append(row.workload)
    return order


def render_benchmark(key, benchmark, chart_folder, charts, used_names):
    """Markdown lines for one benchmark; adds (file name, SVG text) pairs to `charts`."""
    lines = []
    if benchmark.title:
        lines += ["*%s*" % benchmark.title.replace("*", "\\*"), ""]
    if benchmark.parameters:
        lines += ["Parameters: " + ", ".join("%s %s" % (name.replace("_", " "), value)
                                              for name, value in benchmark.parameters), ""]
    refs = references(benchmark.rows, benchmark.reference_rule)
    if benchmark.reference_rule == REFERENCE_FIRST_NONZERO:
        lines += ["No contender here is offload: each workload's ratios are to its first nonzero "
                  "row.", "", "| workload | contender | result | ratio vs first nonzero row |",
                  "|---|---|---:|---:|"]
    elif all(is_offload(reference) for reference in refs.values()):
        lines += ["| workload | contender | result | ratio vs offload |", "|---|---|---:|---:|"]
    else:
        lines += ["Where a workload has no offload contender, its ratios are to its first nonzero "
                  "row.", "", "| workload | contender | result | ratio vs offload or first row |",
                  "|---|---|---:|---:|"]
    order = workloads_in_order(benchmark.rows)
    for row in sorted(benchmark.rows, key=lambda row: order.index(row.workload)):  # stable sort
        ratio = ratio_text(ratio_of(row, refs.get(row.workload)))
        lines.append("| %s | %s | %s | %s |" % (cell(row.workload), cell(row.contender),
                                                cell(result_text(row)), ratio))
    lines.append("")
    if benchmark.claims:
        lines += ["| claim | measured | target | holds? |", "|---|---:|---|---|"]
        for claim, measured, target in benchmark.claims:
            shown_value = "%.3f" % measured if measured is not None else "n/a"
            lines.append("| %s | %s | %s | %s |" % (cell(claim), shown_value, cell(target),
                                                    target_holds(measured, target)))
    else:
        lines.append("This benchmark states no claims.")
    lines.append("")
    for workload in workloads_in_order(benchmark.rows):
        rows = [row for row in benchmark.rows if row.workload == workload]
        numeric = [row for row in rows if row.value is not None and row.relative]
        reference = refs.get(workload)
        if len(numeric) < 2 or reference is None or not reference.value:
            continue
        better = workload_better(numeric, reference)
        name = "%s-%s" % (slug(key), slug(workload))
        candidate, n = name, 2
        while candidate in used_names:
            candidate, n = "%s-%d" % (name, n), n + 1
        used_names.add(candidate)
        file_name = candidate + ".svg"
        subtitle = chart_subtitle(reference, better, reference.unit)
        charts.append((file_name, chart_svg(workload, subtitle, numeric, reference, better)))
        alt = "%s: each contender relative to %s" % (workload, reference.contender)
        alt = re.sub(r"[\[\]]", "", alt)
        lines += ["![%s](%s/%s)" % (alt, chart_folder, file_name), ""]
    return lines


def render(results, environment, chart_folder):
    """(markdown text, [(svg file name, svg text)]) for `results` as collect() returns them."""
    quick = environment.get("quick")
    command = environment.get("command") or "python3 tools/bench_report.py"
    date = environment.get("date") or "an unrecorded date"
    lines = ["# Benchmarks", "",
             "Generated by `tools/bench_report.py` from the benchmarks' JSON output: do not edit "
             "by hand. To measure again and rewrite this page and its charts, run `%s` from the "
             "repository root (it builds with `cmake --workflow --preset bench`, a Release build, "
             "runs every program in `build/bench/benchmarks` and the Node.js scripts in "
             "`benchmarks/node`)." % command, "",
             "Measured on %s, %s." % (date, "a quick run (`--quick`: smaller counts, a smoke test, "
                                      "not figures to quote)" if quick else "a full run"), "",
             "Every ratio is a result divided by the first offload contender of the same workload "
             "in the same run (so offload = 1.00x; the Node.js sections have no offload contender "
             "and divide by the workload's first nonzero row). Whether lower or higher is better "
             "is what the benchmark states for the row, else follows from the unit (times, sizes "
             "and percentages lower, rates higher). A result in `x` is a speedup, already a "
             "ratio: it gets no ratio and no chart. The charts use a log scale, bars growing "
             "from the 1.0 line.", "",
             "## Machine", ""]
    machines = []
    for _, _, _, benchmark in results:
        machine = benchmark.machine if isinstance(benchmark, Benchmark) else None
        if machine and machine not in machines:
            machines.append(machine)
    for machine in machines:
        lines.append("- As the benchmarks describe it: %s" % machine)
    lines.append("- Operating system: %s" % environment.get("os", "unrecorded"))
    lines.append("- C++ compiler: %s" % environment.get("compiler", "unrecorded"))
    lines.append("- Node.js: %s" % environment.get("node", "unrecorded"))
    lines.append("")
    lines += ["## Contents", ""]
    for key, heading, _, _ in results:
        lines.append("- [%s](#%s)" % (heading.replace("`", ""), anchor(heading)))
    lines.append("")

    charts, used_names = [], set()
    for key, heading, source, benchmark in results:
        lines += ["## %s" % heading, "", "Source: `%s`." % source, ""]
        if isinstance(benchmark, Benchmark):
            lines += render_benchmark(key, benchmark, chart_folder, charts, used_names)
        else:
            lines += ["Not run: %s" % benchmark, ""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n", charts


def anchor(heading):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to '-'."""
    text = heading.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def collect(json_dir, environment):
    """[(key, heading, source, Benchmark or a reason it is missing)] in the document's order."""
    failures = environment.get("failures", {})
    known = CPP_BENCHMARKS + NODE_BENCHMARKS
    known_keys = {key for key, _, _ in known}
    extra = sorted(p.stem for p in json_dir.glob("*.json")
                   if p.stem not in known_keys and p.name != ENVIRONMENT)
    results = []
    for key, heading, source in known + [(k, "`%s`" % k, "%s.json" % k) for k in extra]:
        rule = REFERENCE_RULES.get(key, REFERENCE_OFFLOAD)
        path = json_dir / ("%s.json" % key)
        if key in failures:
            results.append((key, heading, source, failures[key]))
        elif not path.is_file():
            results.append((key, heading, source, "no results (%s.json) were found." % key))
        else:
            try:
                benchmark = apply_reference_rule(normalise(load_json(path)), rule)
                results.append((key, heading, source, benchmark))
            except ValueError as error:
                reason = "%s.json could not be read: %s." % (key, error)
                results.append((key, heading, source, reason))
    return results


def write_document(json_dir, output):
    environment = {}
    if (json_dir / ENVIRONMENT).is_file():
        environment = load_json(json_dir / ENVIRONMENT)
    chart_dir = output.with_suffix("")
    text, charts = render(collect(json_dir, environment), environment, chart_dir.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    chart_dir.mkdir(parents=True, exist_ok=True)
    written = set()
    for name, svg in charts:
        (chart_dir / name).write_text(svg, encoding="utf-8")
        written.add(name)
    for stale in sorted(chart_dir.glob("*.svg")):
        if stale.name not in written:
            stale.unlink()  # a chart of an earlier run's workload: the folder is generated
    output.write_text(text, encoding="utf-8")
    print("bench_report: wrote %s and %d charts in %s"
          % (shown(output), len(charts), shown(chart_dir)))


def shown(path):
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --- measuring ---------------------------------------------------------------------------------

def first_line(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except OSError:
        return None
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def cxx_compiler():
    """The compiler CMake chose for build/bench, else c++."""
    compiler = "c++"
    cache = BUILD_DIR / "CMakeCache.txt"
    if cache.is_file():
        match = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.+)$", cache.read_text(errors="replace"), re.M)
        if match:
            compiler = match.group(1).strip()
    return first_line([compiler, "--version"]) or "unknown (%s --version failed)" % compiler


def asio_found():
    """Whether the bench build's CMake cache found standalone Asio's asio.hpp."""
    cache = BUILD_DIR / "CMakeCache.txt"
    text = cache.read_text(errors="replace") if cache.is_file() else ""
    match = re.search(r"^OFFLOAD_ASIO_INCLUDE_DIR:\w+=(.*)$", text, re.M)
    return bool(match) and not match.group(1).strip().endswith("-NOTFOUND")


def mpi_found():
    """Whether the bench build's CMake cache found MPI's launcher (mpiexec / mpirun)."""
    cache = BUILD_DIR / "CMakeCache.txt"
    text = cache.read_text(errors="replace") if cache.is_file() else ""
    match = re.search(r"^MPIEXEC_EXECUTABLE:\w+=(.*)$", text, re.M)
    return bool(match) and not match.group(1).strip().endswith("-NOTFOUND")


def fail(message):
    sys.exit("bench_report: %s" % message)


def run_cpp(json_dir, quick, failures):
    if not shutil.which("cmake"):
        fail("cmake is not on PATH; nothing written")
    print("bench_report: cmake --workflow --preset bench", flush=True)
    build = subprocess.run(["cmake", "--workflow", "--preset", "bench"], cwd=ROOT, check=False)
    if build.returncode != 0:
        fail("the benchmarks failed to build (cmake --workflow --preset bench); nothing written")
    for key, _, _ in CPP_BENCHMARKS:
        program = BENCH_BIN / key
        if not program.is_file() and (BENCH_BIN / (key + ".exe")).is_file():
            program = BENCH_BIN / (key + ".exe")
        if not program.is_file():
            if key in LINUX_ONLY and not sys.platform.startswith("linux"):
                failures[key] = "Linux only, not built on this platform."
                continue
            if key in NEEDS_ASIO and not asio_found():
                failures[key] = "not built: CMake found no standalone Asio (libasio-dev)."
                continue
            if key in NEEDS_MPI and not mpi_found():
                failures[key] = "not built: CMake found no MPI (libopenmpi-dev openmpi-bin)."
                continue
            fail("%s was not built (expected %s); nothing written" % (key, shown(program)))
        target = json_dir / (key + ".json")
        target.unlink(missing_ok=True)  # a --save-json folder may hold an earlier run's
        command = [str(program)] + (["--quick"] if quick else []) + ["--json", str(target)]
        launcher, environment = ([], None)
        if key in NEEDS_MPI:
            launcher, environment = (MPIRUN, dict(os.environ, **MPI_ENVIRONMENT))
        print("bench_report: running %s" % " ".join(launcher + [shown(program)] + command[1:]),
              flush=True)
        status = subprocess.run(launcher + command, cwd=ROOT, check=False,
                                env=environment).returncode
        if status != 0:
            how = ("was killed by signal %d" % -status if status < 0
                   else "failed with exit status %d" % status)
            fail("%s %s; nothing written" % (key, how))
        if not target.is_file():
            fail("%s wrote no JSON; nothing written" % key)


def run_node(json_dir, quick, failures):
    scripts = [(key, pathlib.Path(source).name) for key, _, source in NODE_BENCHMARKS]
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        for key, _ in scripts:
            failures[key] = "node and npm are not both on PATH."
        return None
    version = first_line([node, "--version"])
    if not (NODE_DIR / "node_modules").is_dir():
        print("bench_report: npm ci (in benchmarks/node)", flush=True)
        result = subprocess.run([npm, "ci"], cwd=NODE_DIR, capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            reason = last_line(result.stderr or result.stdout)
            for key, _ in scripts:
                failures[key] = ("`npm ci` failed in benchmarks/node (exit status %d): %s"
                                 % (result.returncode, reason))
            return version
    for key, script in scripts:
        if not (NODE_DIR / script).is_file():
            failures[key] = "benchmarks/node/%s does not exist." % script
            continue
        target = json_dir / (key + ".json")
        target.unlink(missing_ok=True)
        command = [node, script] + (["--quick"] if quick else []) + ["--json", str(target)]
        print("bench_report: running node %s" % " ".join(command[1:]), flush=True)
        result = subprocess.run(command, cwd=NODE_DIR, stderr=subprocess.PIPE, text=True,
                                check=False)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            failures[key] = "`node %s` failed (exit status %d): %s" % (script, result.returncode,
                                                                       last_line(result.stderr))
            target.unlink(missing_ok=True)
        elif not target.is_file():
            failures[key] = "`node %s` wrote no JSON." % script
    return version


def last_line(text):
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].replace("|", "/") if lines else "no message"


def measure(json_dir, quick):
    failures = {}
    run_cpp(json_dir, quick, failures)
    node_version = run_node(json_dir, quick, failures)
    environment = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "quick": quick,
        "command": "python3 tools/bench_report.py" + (" --quick" if quick else ""),
        "os": "%s %s (%s)" % (platform.system(), platform.release(), platform.machine()),
        "compiler": cxx_compiler(),
        "node": node_version or "not available",
        "failures": failures,
    }
    (json_dir / ENVIRONMENT).write_text(json.dumps(environment, indent=2, sort_keys=True) + "\n")


def main(argv):
    parser = argparse.ArgumentParser(
        description="Builds and runs the benchmarks; writes docs/benchmarks.md and its charts.")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--from-json", metavar="DIR", type=pathlib.Path,
                        help="render from the JSON files in DIR; build and run nothing")
    parser.add_argument("--output", metavar="FILE", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="the page to write (default docs/benchmarks.md); the charts go to "
                             "the folder of the same name without .md")
    parser.add_argument("--save-json", metavar="DIR", type=pathlib.Path,
                        help="keep the raw JSON results of this run in DIR")
    options = parser.parse_args(argv)
    output = options.output.resolve()
    if options.from_json:
        if not options.from_json.is_dir():
            fail("%s is not a directory" % options.from_json)
        write_document(options.from_json, output)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_report.") as temporary:
        json_dir = pathlib.Path(temporary)
        if options.save_json:
            json_dir = options.save_json.resolve()
            json_dir.mkdir(parents=True, exist_ok=True)
        measure(json_dir, options.quick)
        write_document(json_dir, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
