// Helpers shared by the Node.js benchmark scripts: options, medians, and a report that prints
// the same markdown table and writes the same JSON shape as benchmarks/bench_common.hpp, so
// the figures can sit beside the C++ ones.

import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';

export function parseOptions(argv, script) {
  const options = { quick: false, json: null };
  for (let n = 0; n < argv.length; ++n) {
    if (argv[n] === '--quick') options.quick = true;
    else if (argv[n] === '--json' && n + 1 < argv.length) options.json = argv[++n];
    else {
      console.error(`usage: node ${script} [--quick] [--json FILE]`);
      process.exit(2);
    }
  }
  return options;
}

export function median(values) {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The median of `runs` results of the async function `measure`, run one after another. */
export async function medianOf(runs, measure) {
  const values = [];
  for (let run = 0; run < runs; ++run) values.push(await measure());
  return median(values);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The machine, as one line: CPU model, hardware threads, Node version. */
export function machineDescription() {
  const model = cpus()[0]?.model ?? 'unknown CPU';
  return `${model}, ${availableParallelism()} hardware threads, Node ${process.version}`;
}

/** Resident memory of a process in KiB, from /proc: RSS counts every page it has in memory,
 *  PSS divides shared pages among their sharers, private counts the pages only it uses. */
export function processMemoryKib(pid) {
  const field = (text, key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const smaps = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return {
    rss: field(status, 'VmRSS'),
    pss: field(smaps, 'Pss'),
    private: field(smaps, 'Private_Clean') + field(smaps, 'Private_Dirty'),
  };
}

/** Rows grouped by workload; the first row of a workload is the reference of its ratios. */
export class Report {
  #title;
  #rows = [];
  #claims = [];

  constructor(title) {
    this.#title = title;
  }

  /** `better` ('higher' or 'lower') goes into the JSON only, for units that do not say it
   *  (tools/bench_report.py reads it): 'ms' is a cost and 'calls/s' a rate, but 'x' is either. */
  add(workload, contender, value, unit, better) {
    this.#rows.push({ workload, contender, value, unit, text: '', ...(better && { better }) });
  }

  addText(workload, contender, text) {
    this.#rows.push({ workload, contender, value: 0, unit: '', text });
  }

  claim(claim, measured, target) {
    this.#claims.push({ claim, measured, target });
  }

  print(notes) {
    console.log(`## ${this.#title}\n\nMachine: ${machineDescription()}\n`);
    if (notes) console.log(`${notes}\n`);
    console.log('| workload | contender | result | vs first row |\n|---|---|---:|---:|');
    const reference = new Map();
    for (const row of this.#rows) {
      if (row.text === '' && !reference.has(row.workload)) reference.set(row.workload, row.value);
    }
    for (const row of this.#rows) {
      if (row.text !== '') {
        console.log(`| ${row.workload} | ${row.contender} | ${row.text} | |`);
        continue;
      }
      const base = reference.get(row.workload);
      const ratio = base > 0 ? `${(row.value / base).toFixed(2)}x` : '';
      console.log(`| ${row.workload} | ${row.contender} | ${row.value.toFixed(1)} ${row.unit} | ${ratio} |`);
    }
    if (this.#claims.length > 0) {
      console.log('\n| claim | measured | target |\n|---|---:|---|');
      for (const c of this.#claims) console.log(`| ${c.claim} | ${c.measured.toFixed(3)} | ${c.target} |`);
    }
    console.log('');
  }

  /** The JSON of bench_common.hpp (title, machine, rows, claims; one row a line, so that
   *  two runs diff well), plus any `extra` fields after them. */
  writeJson(path, extra = {}) {
    const list = (items) => items.map((item) => `    ${JSON.stringify(item)}`).join(',\n');
    const fields = [
      `"title": ${JSON.stringify(this.#title)}`,
      `"machine": ${JSON.stringify(machineDescription())}`,
      `"rows": [\n${list(this.#rows)}\n  ]`,
      `"claims": [\n${list(this.#claims)}\n  ]`,
      ...Object.entries(extra).map(([key, value]) => `${JSON.stringify(key)}: ${JSON.stringify(value)}`),
    ];
    writeFileSync(path, `{\n  ${fields.join(',\n  ')}\n}\n`);
  }
}
