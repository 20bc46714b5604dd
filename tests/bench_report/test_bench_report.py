#!/usr/bin/env python3
"""Checks tools/bench_report.py --from-json on the two fixture runs next to this file.

run_a/ holds JSON trimmed from real --quick runs of pool_bench, tick_bench, channel_bench and
process_bench, and from a real full run of benchmarks/node/{tick,process}.mjs (node_tick.json
as written, node_process.json with fewer rows): the four C++ shapes, and the Node.js scripts'
Report shape with its extra fields and "better" fields; run_b/ is the same with other numbers.
Checked: both render to the same structure (headings, chart files, every line once the numbers
are masked) with different numbers; every chart parses as SVG; the "holds?" column; the Node.js
sections have no offload reference (Node's "offloaded" is its worker_threads pool), the C++
sections do; a row's "better" is used; speedups (unit x) get no ratio and no chart; rendering
twice is byte-identical; failures and unknown shapes become "Not run" lines.
Python 3 standard library only: run it directly or through CTest (bench_report_renders).
"""
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ElementTree

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE.parent.parent / "tools" / "bench_report.py"
SVG = "{http://www.w3.org/2000/svg}"


def load_module():
    sys.dont_write_bytecode = True  # no tools/__pycache__ left behind in the source tree
    spec = importlib.util.spec_from_file_location("bench_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(json_dir, out_dir):
    """Runs the script; returns (markdown text, {svg name: bytes})."""
    output = pathlib.Path(out_dir) / "benchmarks.md"
    result = subprocess.run([sys.executable, str(SCRIPT), "--from-json", str(json_dir), "--output", str(output)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError("bench_report.py failed (%d):\n%s%s" % (result.returncode, result.stdout, result.stderr))
    charts = {path.name: path.read_bytes() for path in sorted((pathlib.Path(out_dir) / "benchmarks").glob("*.svg"))}
    return output.read_text(encoding="utf-8"), charts


def headings(text):
    return [line for line in text.splitlines() if line.startswith("#")]


def masked(text):
    """The text with every number and yes/no verdict replaced: what must not change between runs."""
    text = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    return re.sub(r"\| (yes|no) \|", "| V |", text)


def section(text, heading):
    """The lines of one "## heading" section, up to the next."""
    lines = text.splitlines()
    start = lines.index("## " + heading)
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")), len(lines))
    return lines[start:end]


def table_rows(lines):
    """(workload, contender, result, ratio) of each row of a section's results table."""
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("workload", "---"):
            rows.append(tuple(cells))
    return rows


NODE_TICK = "Node.js: the tick model — `tick.mjs`"
CPP_TICK = "The tick model — `tick_bench`"


def claim_verdict(text, claim):
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == claim:
            return cells[-1]
    raise AssertionError("no claims row for %r" % claim)


class BenchReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.temporary = tempfile.TemporaryDirectory(prefix="bench_report_test.")
        root = pathlib.Path(cls.temporary.name)
        cls.a_text, cls.a_charts = render(HERE / "run_a", root / "a")
        cls.b_text, cls.b_charts = render(HERE / "run_b", root / "b")
        cls.again_text, cls.again_charts = render(HERE / "run_a", root / "again")
        cls.root = root

    @classmethod
    def tearDownClass(cls):
        cls.temporary.cleanup()

    def test_same_structure_different_numbers(self):
        self.assertEqual(headings(self.a_text), headings(self.b_text))
        self.assertEqual(sorted(self.a_charts), sorted(self.b_charts))
        self.assertEqual(masked(self.a_text), masked(self.b_text))
        self.assertNotEqual(self.a_text, self.b_text)
        changed = [name for name in self.a_charts if self.a_charts[name] != self.b_charts[name]]
        self.assertEqual(sorted(changed), sorted(self.a_charts), "every chart shows the new numbers")

    def test_every_section_and_chart(self):
        for heading in ("## Machine", "## Thread pool — `pool_bench`", "## The tick model — `tick_bench`",
                        "## Channels — `channel_bench`", "## Process pool — `process_bench`",
                        "## Node.js: the tick model — `tick.mjs`", "## Node.js: processes — `process.mjs`"):
            self.assertIn(heading, headings(self.a_text))
        self.assertEqual(1, sum(1 for line in self.a_text.splitlines() if line.startswith("Measured on ")))
        self.assertIn("Measured on 2025-01-15", self.a_text)
        # One chart per workload with two or more numeric contenders and an offload reference:
        # not pool_bench's workload 4 text rows, not process_bench's single-contender throughput,
        # not tick's speedup (already a ratio).
        self.assertIn("pool-bench-4-spawn-inside-workers-fib.svg", self.a_charts)
        self.assertNotIn("process-bench-7-throughput-tiny-calls.svg", self.a_charts)
        self.assertFalse(any("speedup" in name for name in self.a_charts))
        self.assertEqual(17, len(self.a_charts))
        for name in self.a_charts:
            self.assertIn("](benchmarks/%s)" % name, self.a_text)
        self.assertIn("| 1. tiny detached tasks (ns/task) | offload::ThreadPool | 110.3 ns | 1.00x |", self.a_text)
        self.assertIn("| 1. tiny detached tasks (ns/task) | textbook pool | 762.1 ns | 6.91x |", self.a_text)
        self.assertIn("| 4. spawn inside workers, fib(24) (ns/spawn) | textbook pool | "
                      "deadlocks (no help while waiting) |  |", self.a_text)
        self.assertIn("| 1x1 bounded(1024) | mutex+condvar | 6.98 M msg/s | 0.10x |", self.a_text)
        # Node.js has no offload contender (its "offloaded" is a worker_threads pool): ratios to
        # the first nonzero row, grouped by workload although the script writes them interleaved.
        self.assertIn("| 5. heavy array on the event loop: ticks (1 ms interval) | chunked | 39 ticks | 1.00x |\n"
                      "| 5. heavy array on the event loop: ticks (1 ms interval) | offloaded | 147 ticks | 3.77x |",
                      self.a_text)
        self.assertIn("| 3/7. round trip, tiny call (median) | child_process.fork pool (2) | 34765.0 ns | 1.50x |",
                      self.a_text)
        self.assertIn("| 7. heavy array, 400 items (total) | worker_threads pool (2) | 126.0 ms | 0.55x |", self.a_text)
        self.assertIn(b"reference (= 1.0)", self.a_charts["node-process-3-7-round-trip-tiny-call.svg"])

    def test_charts_are_svg(self):
        for name, data in self.a_charts.items():
            root = ElementTree.fromstring(data)
            self.assertEqual(SVG + "svg", root.tag, name)
            texts = [element.text for element in root.iter(SVG + "text")]
            self.assertIn("1x", texts, "%s: the 1.0 axis is labelled" % name)
            self.assertTrue(any(t and "better" in t for t in texts), "%s: says which way is better" % name)
        pool = ElementTree.fromstring(self.a_charts["pool-bench-1-tiny-detached-tasks.svg"])
        texts = [element.text for element in pool.iter(SVG + "text")]
        for expected in ("plain loop (inline)", "offload::ThreadPool", "762.1 ns", "6.91x"):
            self.assertIn(expected, texts)
        self.assertTrue(any("lower is better" in (t or "") for t in texts))
        channel = self.a_charts["channel-bench-2x2-unbounded.svg"].decode()
        self.assertIn("higher is better", channel)

    def test_node_sections_have_no_offload_reference(self):
        for text in (self.a_text, self.b_text):
            for heading in (NODE_TICK, "Node.js: processes — `process.mjs`"):
                lines = section(text, heading)
                self.assertIn("| workload | contender | result | ratio vs first nonzero row |", lines)
                self.assertFalse(any("vs offload" in line for line in lines), heading)
                self.assertFalse(any("relative to offload" in line for line in lines), heading)
            rows = table_rows(section(text, NODE_TICK))
            # Node's "offloaded" (a worker_threads pool) is never the 1.00x of a workload ...
            self.assertTrue(all(ratio != "1.00x" for _, contender, _, ratio in rows if contender == "offloaded"))
            # ... each workload's first nonzero row is: serial, or chunked where serial has 0 ticks.
            firsts = {}
            for workload, contender, result, ratio in rows:
                if ratio == "1.00x":
                    firsts.setdefault(workload, contender)
            self.assertEqual({"5. heavy array on the event loop: total": "serial",
                              "5. heavy array on the event loop: ticks (1 ms interval)": "chunked",
                              "5. heavy array on the event loop: largest tick gap": "serial"}, firsts)
        self.assertIn(("5. heavy array on the event loop: total", "offloaded", "149.7 ms", "0.62x"),
                      table_rows(section(self.a_text, NODE_TICK)))
        for name, data in self.a_charts.items():
            if name.startswith("node-"):
                svg = data.decode()
                self.assertNotIn(">offload<", svg, name)  # no offload legend entry
                self.assertNotIn('fill="#286983"', svg, name)  # nor offload's colour
                self.assertIn("reference (= 1.0)", svg, name)
        self.assertIn("relative to chunked (= 1.0)",
                      self.a_charts["node-tick-5-heavy-array-on-the-event-loop-ticks.svg"].decode())
        # The C++ tick_bench's "offloaded" is offload's own result: its reference.
        self.assertIn(("total time", "offloaded", "122.0 ms", "1.00x"), table_rows(section(self.a_text, CPP_TICK)))
        self.assertIn('fill="#286983"', self.a_charts["tick-bench-total-time.svg"].decode())

    def test_reference_rule_is_per_section(self):
        module = load_module()
        def rows():  # an "offload..." contender that is not first
            return [module.Row("w", "serial", 0, "ms"), module.Row("w", "chunked", 4, "ms"),
                    module.Row("w", "offloaded", 2, "ms"), module.Row("w", "speedup", 2, "x")]
        node = module.apply_reference_rule(module.Benchmark("t", rows=rows()), module.REFERENCE_FIRST_NONZERO)
        self.assertFalse(any(row.offload for row in node.rows))
        self.assertEqual("chunked", module.references(node.rows, node.reference_rule)["w"].contender)
        cpp = module.apply_reference_rule(module.Benchmark("t", rows=rows()), module.REFERENCE_OFFLOAD)
        self.assertEqual([False, False, True, False], [row.offload for row in cpp.rows])
        self.assertEqual("offloaded", module.references(cpp.rows, cpp.reference_rule)["w"].contender)
        self.assertEqual(module.REFERENCE_FIRST_NONZERO, module.REFERENCE_RULES["node_tick"])
        self.assertEqual(module.REFERENCE_OFFLOAD, module.REFERENCE_RULES["tick_bench"])

    def test_speedups_have_no_ratio_and_no_chart(self):
        for text in (self.a_text, self.b_text):
            for heading, workload in ((NODE_TICK, "5. heavy array on the event loop: speedup over serial"),
                                      (CPP_TICK, "speedup vs serial (same round)")):
                lines = section(text, heading)
                speedups = [row for row in table_rows(lines) if row[0] == workload]
                self.assertGreaterEqual(len(speedups), 3, heading)
                for _, contender, result, ratio in speedups:
                    self.assertRegex(result, r"^\d+\.\d\dx$")
                    self.assertEqual("", ratio, (heading, contender))
                self.assertFalse(any(line.startswith("![") and "speedup" in line for line in lines), heading)
        self.assertIn(("5. heavy array on the event loop: speedup over serial", "offloaded", "1.63x", ""),
                      table_rows(section(self.a_text, NODE_TICK)))
        self.assertIn(("speedup vs serial (same round)", "offloaded", "1.92x", ""),
                      table_rows(section(self.a_text, CPP_TICK)))
        self.assertFalse(any("speedup" in name for name in list(self.a_charts) + list(self.b_charts)))
        module = load_module()
        self.assertFalse(module.Row("w", "c", 1.5, "x").relative)
        self.assertTrue(module.Row("w", "c", 1.5, "ms").relative)

    def test_better_from_the_row_else_the_unit(self):
        module = load_module()
        self.assertEqual("higher", module.Row("w", "c", 3, "ticks", better="higher").better)
        self.assertIsNone(module.Row("w", "c", 3, "ticks").better)
        self.assertEqual("higher", module.Row("w", "c", 3, "ms", better="higher").better)  # stated wins
        self.assertEqual("lower", module.Row("w", "c", 3, "ms", better="sideways").better)  # unknown: the unit
        # "ticks" implies neither way: the Node.js rows say "higher", as tick_bench's shape does.
        for name in ("node-tick-5-heavy-array-on-the-event-loop-ticks.svg", "tick-bench-ticks-of-the-1-ms-interval.svg"):
            svg = self.a_charts[name].decode()
            self.assertIn("higher is better", svg, name)
            self.assertIn("contender ahead", svg, name)
        node_ticks = ElementTree.fromstring(self.a_charts["node-tick-5-heavy-array-on-the-event-loop-ticks.svg"])
        ahead = [r for r in node_ticks.iter(SVG + "rect") if r.get("fill") == "#d7827e" and r.get("height") == "16"]
        self.assertEqual(2, len(ahead), "offloaded and worker-farm tick more often than chunked")
        self.assertIn("lower is better",
                      self.a_charts["node-tick-5-heavy-array-on-the-event-loop-largest-tick-gap.svg"].decode())

    def test_claims_hold_or_not(self):
        self.assertEqual("yes", claim_verdict(self.a_text, "round trip median, ProcessPool (us)"))
        self.assertEqual("no", claim_verdict(self.a_text,
                                             "heavy array speedup over serial, 2 worker processes (median of runs)"))
        self.assertEqual("", claim_verdict(self.a_text,
                                           "heavy array speedup over serial, 2 plain threads (what the machine allowed)"))
        self.assertEqual("yes", claim_verdict(self.a_text, "spawn inside workers completes"))
        self.assertEqual("yes", claim_verdict(self.a_text, "idle CPU (% of a core)"))
        self.assertEqual("no", claim_verdict(self.b_text,
                                             "heavy array speedup over serial, 2 worker processes (median of runs)"))

    def test_target_parsing(self):
        module = load_module()
        cases = [(0.4, "<= 0.5", "yes"), (0.5, "<= 0.5", "yes"), (0.6, "<= 0.5", "no"),
                 (1.9, ">= 1.9", "yes"), (1.89, ">= 1.9", "no"), (0.5, "< 1 %", "yes"), (1.0, "< 1 %", "no"),
                 (1.0, "= 1 (yes)", "yes"), (0.0, "= 1 (yes)", "no"), (2.0, "> 1.5", "yes"),
                 (1.0, "context", ""), (None, "<= 5", ""), (1.0, "", "")]
        for measured, target, expected in cases:
            self.assertEqual(expected, module.target_holds(measured, target), (measured, target))

    def test_byte_identical_when_rendered_again(self):
        self.assertEqual(self.a_text, self.again_text)
        self.assertEqual(self.a_charts, self.again_charts)

    def test_failures_and_odd_input(self):
        runs = self.root / "odd_input"
        shutil.copytree(HERE / "run_a", runs)
        (runs / "node_process.json").unlink()
        environment = (runs / "environment.json").read_text()
        (runs / "environment.json").write_text(environment.replace(
            '"failures": {}', '"failures": {"node_process": "benchmarks/node/process.mjs does not exist."}'))
        (runs / "node_tick.json").write_text('{"something": "else"}\n')
        channel = (runs / "channel_bench.json").read_text()  # C++ streams print bare nan / inf
        (runs / "channel_bench.json").write_text(channel.replace('"ratio_vs_mutex": 10.04', '"ratio_vs_mutex": inf', 1))
        render(HERE / "run_a", self.root / "odd_output")  # charts of an earlier render, to be replaced
        text, charts = render(runs, self.root / "odd_output")
        self.assertEqual(headings(self.a_text), headings(text))
        self.assertIn("Not run: benchmarks/node/process.mjs does not exist.", text)
        self.assertIn("Not run: node_tick.json could not be read: unrecognised JSON shape", text)
        self.assertIn("channel-bench-1x1-bounded.svg", charts)
        # The earlier render's Node.js charts are gone: the folder holds this render's charts only.
        self.assertFalse(any(name.startswith("node-") for name in charts))
        self.assertEqual(sorted(name for name in self.a_charts if not name.startswith("node-")), sorted(charts))


if __name__ == "__main__":
    unittest.main(verbosity=2)
