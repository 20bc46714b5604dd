// Workloads 3, 7 and 9 of BENCHMARKS.md in Node.js, for comparison with
// benchmarks/process_bench.cpp and pool_bench.cpp. Three contenders, each with 2 workers (as
// the C++ ProcessPool(2)):
//   worker_threads pool      threads of this process, postMessage / 'message';
//   child_process.fork pool  child processes, process.send / 'message' (JSON over a pipe);
//   worker-farm              the npm package, its child processes (skipped when not installed).
// Figures:
//   round trip   one tiny call at a time: median ns per call (median of the runs' medians);
//   throughput   tiny calls with a bounded number in flight: calls per second;
//   heavy array  the 400 items, all sent at once: total ms, speedup over a serial loop;
//   memory       RSS (and PSS, private) of an idle worker process, and the RSS a worker thread
//                adds to its process.
//
//   usage: node process.mjs [--quick] [--json FILE]

import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Report, median, medianOf, parseOptions, processMemoryKib, sleep } from './common.mjs';
import { FARM_MISSING_NOTE, Farm, Pool, loadWorkerFarm } from './pools.mjs';
import work from './work.cjs';

const WORKERS = 2;
const HEAVY_ITEMS = 400;
// worker-farm lets 10 calls be in flight per child by default; the two plain pools get the
// same allowance, so that the contenders differ in transport and bookkeeping only.
const IN_FLIGHT_PER_WORKER = 10;
// How many calls the throughput loop keeps outstanding: enough to keep every worker's
// allowance full, few enough that the waiting queues stay small.
const THROUGHPUT_WINDOW = 200;
const THREAD_MEMORY_PROBE = '--thread-memory-probe';  // internal: see rssPerIdleThreadKib

const ROUND_TRIP = '3/7. round trip, tiny call (median)';
const THROUGHPUT = '7. throughput, tiny calls';
const HEAVY = '7. heavy array, 400 items (total)';
const MEMORY = '9. resident memory per idle worker';

function check(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: got ${actual}, expected ${expected}`);
}

// --- workloads 3 and 7: round trip and throughput ----------------------------------------

/** Median ns of one call('tiny') awaited before the next is made, over `calls` calls. */
async function roundTripNs(workers, calls) {
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; ++i) {
    const start = performance.now();
    const value = await workers.call('tiny', i);
    samples[i] = (performance.now() - start) * 1e6;
    check(value, work.tiny(i), 'round trip');
  }
  return median(samples);
}

/** Tiny calls per second, `calls` of them, a new one made as each answer arrives. */
function callsPerSecond(workers, calls) {
  return new Promise((resolve) => {
    const start = performance.now();
    let made = 0;
    let answered = 0;
    const makeCall = () => {
      const i = made++;
      workers.call('tiny', i).then((value) => {
        check(value, work.tiny(i), 'throughput');
        if (++answered === calls) resolve(calls / ((performance.now() - start) / 1000));
        else if (made < calls) makeCall();
      });
    };
    for (let n = 0; n < Math.min(THROUGHPUT_WINDOW, calls); ++n) makeCall();
  });
}

// --- workload 7: the heavy array -----------------------------------------------------------

function checksum(values) {
  return values.reduce((sum, value) => sum + value, 0);
}

function serialHeavy() {
  const start = performance.now();
  const values = Array.from({ length: HEAVY_ITEMS }, (_, i) => work.heavyItem(i));
  return { ms: performance.now() - start, checksum: checksum(values) };
}

async function offloadedHeavy(workers) {
  const start = performance.now();
  const values = await Promise.all(
    Array.from({ length: HEAVY_ITEMS }, (_, i) => workers.call('heavy', i)));
  return { ms: performance.now() - start, checksum: checksum(values) };
}

/** Rounds of serial, then each contender, so drift hits all alike; the speedup is each
 *  round's ratio against its own serial run. */
async function heavyArray(report, contenders, runs) {
  const serialMs = [];
  const perContender = contenders.map(() => ({ ms: [], speedups: [] }));
  for (let run = 0; run < runs; ++run) {
    const serial = serialHeavy();
    serialMs.push(serial.ms);
    for (const [c, { workers }] of contenders.entries()) {
      const offloaded = await offloadedHeavy(workers);
      check(offloaded.checksum, serial.checksum, 'heavy array checksum');
      perContender[c].ms.push(offloaded.ms);
      perContender[c].speedups.push(serial.ms / offloaded.ms);
    }
  }
  report.add(HEAVY, 'serial loop', median(serialMs), 'ms');
  for (const [c, { name }] of contenders.entries()) {
    report.add(HEAVY, name, median(perContender[c].ms), 'ms');
  }
  for (const [c, { name }] of contenders.entries()) {
    report.claim(`heavy array speedup over serial, ${name} (median of runs)`,
                 median(perContender[c].speedups), 'context');
  }
}

// --- workload 9: memory --------------------------------------------------------------------

/** RSS, PSS and private KiB of an idle worker process: fresh workers, each answers a few
 *  calls (so it has loaded its code), then idles; the median over the workers. */
async function idleProcessMemoryKib(workers) {
  await Promise.all(Array.from({ length: 4 * WORKERS }, (_, i) => workers.call('tiny', i)));
  await sleep(200);
  const samples = workers.pids.map(processMemoryKib);
  const field = (key) => median(samples.map((sample) => sample[key]));
  return { rss: field('rss'), pss: field('pss'), private: field('private') };
}

/** The probe, in a fresh process: RSS growth per idle worker thread, sent to the parent. A
 *  fresh process each time, because in this one the memory of earlier workers would be reused
 *  and hide what a new thread costs. */
async function threadMemoryProbe(count) {
  const before = process.memoryUsage.rss();
  const pool = Pool.threads(count);
  await Promise.all(Array.from({ length: count }, (_, i) => pool.call('tiny', i)));
  await sleep(200);
  const growthKib = (process.memoryUsage.rss() - before) / 1024 / count;
  await pool.close();
  process.send(growthKib);
}

function rssPerIdleThreadKib(count) {
  return new Promise((resolve, reject) => {
    const probe = fork(fileURLToPath(import.meta.url), [THREAD_MEMORY_PROBE, String(count)]);
    let growth = NaN;
    probe.on('message', (value) => { growth = value; });
    probe.on('error', reject);
    probe.on('exit', (code) => (code === 0 ? resolve(growth) : reject(new Error(`probe exit ${code}`))));
  });
}

async function memory(report, workerFarm, runs) {
  const processes = Pool.processes(WORKERS);
  const forked = await idleProcessMemoryKib(processes);
  await processes.close();
  const farm = workerFarm && new Farm(workerFarm, WORKERS);
  const farmed = farm && await idleProcessMemoryKib(farm);
  await farm?.close();
  const threadKib = await medianOf(runs, () => rssPerIdleThreadKib(8));

  report.add(MEMORY, 'child_process.fork worker process: RSS', forked.rss, 'KiB');
  if (farmed) report.add(MEMORY, 'worker-farm child process: RSS', farmed.rss, 'KiB');
  report.add(MEMORY, 'worker_threads worker (RSS growth of its process)', threadKib, 'KiB');
  report.add(MEMORY, 'child_process.fork worker process: PSS', forked.pss, 'KiB');
  report.add(MEMORY, 'child_process.fork worker process: private', forked.private, 'KiB');
  if (farmed) {
    report.add(MEMORY, 'worker-farm child process: PSS', farmed.pss, 'KiB');
    report.add(MEMORY, 'worker-farm child process: private', farmed.private, 'KiB');
  }
}

// --- the run -------------------------------------------------------------------------------

function openContenders(workerFarm) {
  const options = { inFlightPerWorker: IN_FLIGHT_PER_WORKER };
  const contenders = [
    { name: `worker_threads pool (${WORKERS})`, workers: Pool.threads(WORKERS, options) },
    { name: `child_process.fork pool (${WORKERS})`, workers: Pool.processes(WORKERS, options) },
  ];
  if (workerFarm) {
    contenders.push({ name: `worker-farm (${WORKERS} children)`, workers: new Farm(workerFarm, WORKERS) });
  }
  return contenders;
}

/** Workers started, code compiled, on both sides, before anything is timed. */
async function warmUp(contenders) {
  serialHeavy();
  for (const { workers } of contenders) {
    await roundTripNs(workers, 1000);
    await callsPerSecond(workers, 5000);
    await offloadedHeavy(workers);
  }
}

async function main() {
  const options = parseOptions(process.argv.slice(2), 'process.mjs');
  const runs = options.quick ? 3 : 7;
  const roundTrips = options.quick ? 2000 : 20000;
  const throughputCalls = options.quick ? 10000 : 100000;
  const report = new Report('Node.js worker_threads, child processes and worker-farm ' +
                            '(workloads 3, 7 and 9)');
  const workerFarm = await loadWorkerFarm();
  const contenders = openContenders(workerFarm);
  await warmUp(contenders);

  console.error('round trip');
  for (const { name, workers } of contenders) {
    report.add(ROUND_TRIP, name, await medianOf(runs, () => roundTripNs(workers, roundTrips)), 'ns');
  }
  console.error('throughput');
  for (const { name, workers } of contenders) {
    report.add(THROUGHPUT, name, await medianOf(runs, () => callsPerSecond(workers, throughputCalls)),
               'calls/s');
  }
  console.error('heavy array');
  await heavyArray(report, contenders, runs);
  await Promise.all(contenders.map(({ workers }) => workers.close()));
  console.error('memory');
  await memory(report, workerFarm, runs);
  if (!workerFarm) {
    for (const workload of [ROUND_TRIP, THROUGHPUT, HEAVY, MEMORY]) {
      report.addText(workload, 'worker-farm', 'skipped: not installed');
    }
  }

  report.print(`${WORKERS} workers per contender, up to ${IN_FLIGHT_PER_WORKER} calls in flight per ` +
               `worker; ${roundTrips} round trips and ${throughputCalls} calls (${THROUGHPUT_WINDOW} ` +
               `outstanding) per run; median of ${runs} runs` +
               (workerFarm ? '' : `\n\n${FARM_MISSING_NOTE}`));
  if (options.json) {
    report.writeJson(options.json, { node: process.version, workers: WORKERS, runs, roundTrips,
                                     throughputCalls, window: THROUGHPUT_WINDOW });
  }
}

if (process.argv[2] === THREAD_MEMORY_PROBE) await threadMemoryProbe(Number(process.argv[3]));
else await main();
