// Workload 12 of BENCHMARKS.md in Node.js, for comparison with benchmarks/server_bench.cpp:
// the same line protocol, the same server and the same load as examples/05_server.cpp.
//
// A `net` server on 127.0.0.1 answers `ping` with `pong` and `heavy N` with the heavy item N:
//   naive      computed inline on the event loop: no ping is answered meanwhile;
//   offloaded  sent to a worker_threads pool (one worker per core), the reply written when
//              the worker answers.
// The load runs in a worker thread of its own (its own event loop, as the C++ load has its own
// thread): 8 ping clients driven by one 1 ms ticker (a client still waiting for its answer
// skips the tick), while 2 heavy clients share the 400 items with 2 requests in flight each.
// Figures are medians over the rounds; the speedup is the ratio within one round.
//
//   usage: node server.mjs [--quick] [--json FILE]

import { createConnection, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { Report, median, parseOptions } from './common.mjs';
import { Pool } from './pools.mjs';
import work from './work.cjs';

const MAX_REQUEST_BYTES = 64;
const MAX_HEAVY_ITEM = 1_000_000;
const PING_CLIENTS = 8;
const HEAVY_CLIENTS = 2;
const HEAVY_IN_FLIGHT = 2;
const PING_INTERVAL_MS = 1;

// --- the server --------------------------------------------------------------------------------

/** One request line (without its newline) -> { ping } | { heavy: N } | { error: reason }. */
function parseLine(line) {
  if (line.endsWith('\r')) line = line.slice(0, -1);
  if (line === 'ping') return { ping: true };
  if (!line.startsWith('heavy ')) return { error: "malformed request: expected 'ping' or 'heavy N'" };
  const digits = line.slice(6);
  if (!/^[0-9]{1,7}$/.test(digits)) return { error: "malformed request: N in 'heavy N' must be a decimal number" };
  const item = Number(digits);
  if (item > MAX_HEAVY_ITEM) return { error: `heavy N: N must be at most ${MAX_HEAVY_ITEM}` };
  return { heavy: item };
}

/** Serves one connection: requests answered side by side, replies written in request order. */
function serveConnection(socket, answerHeavy) {
  socket.setNoDelay(true);
  let line = '';
  let skipping = false;  // inside an oversized request, up to its newline
  const replies = [];    // in request order; undefined: not ready yet
  const flush = () => {
    let out = '';
    while (replies.length > 0 && replies[0] !== undefined) out += replies.shift();
    if (out !== '' && !socket.destroyed) socket.write(out);
  };
  let slotBase = 0;  // the request number of replies[0]
  let ended = false;  // the client ended its stream: end ours once every reply is written
  const reply = (number, text) => {
    replies[number - slotBase] = text;
    const before = replies.length;
    flush();
    slotBase += before - replies.length;
    if (ended && replies.length === 0) socket.end();
  };
  const handle = (request) => {
    const number = slotBase + replies.length;
    replies.push(undefined);
    if (request.ping) reply(number, 'pong\n');
    else if (request.error) reply(number, `error ${request.error}\n`);
    else answerHeavy(request.heavy, (value) => reply(number, `heavy ${request.heavy} ${value}\n`));
  };
  socket.on('data', (chunk) => {
    for (const c of chunk.toString('latin1')) {
      if (c === '\n') {
        if (!skipping) handle(parseLine(line));
        line = '';
        skipping = false;
      } else if (skipping) {
        continue;
      } else if (line.length === MAX_REQUEST_BYTES) {
        handle({ error: `request longer than ${MAX_REQUEST_BYTES} bytes` });
        line = '';
        skipping = true;
      } else {
        line += c;
      }
    }
  });
  socket.on('end', () => {
    ended = true;
    if (line !== '' && !skipping) handle({ error: 'truncated request (the stream ended before its newline)' });
    else if (replies.length === 0) socket.end();
  });
  socket.on('error', () => socket.destroy());
}

function startServer(answerHeavy) {
  return new Promise((resolve) => {
    const server = createServer((socket) => serveConnection(socket, answerHeavy));
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

const naive = (item, done) => done(work.heavyItem(item));
const offloadedTo = (pool) => (item, done) => pool.call('heavy', item).then(done);

// --- the load (runs in a worker thread) --------------------------------------------------------

function lineClient(port) {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' }, () => resolve(client));
    socket.setNoDelay(true);
    let incoming = '';
    const waiting = [];
    socket.on('data', (chunk) => {
      incoming += chunk.toString('latin1');
      for (let at = incoming.indexOf('\n'); at >= 0; at = incoming.indexOf('\n')) {
        const line = incoming.slice(0, at);
        incoming = incoming.slice(at + 1);
        waiting.shift()?.(line);
      }
    });
    socket.on('error', reject);
    const client = {
      request: (text) => new Promise((answered) => {
        waiting.push(answered);
        socket.write(text);
      }),
      close: () => socket.end(),
    };
  });
}

async function runLoad({ port, items }) {
  const pingUs = [];
  const values = new Float64Array(items);
  let heavyLeft = HEAVY_CLIENTS;
  let errors = 0;
  const pingers = await Promise.all(Array.from({ length: PING_CLIENTS }, () => lineClient(port)));
  const busy = new Array(PING_CLIENTS).fill(false);
  const start = performance.now();
  let end = start;
  const ticker = setInterval(() => {
    pingers.forEach((client, i) => {
      if (busy[i]) return;
      busy[i] = true;
      const sent = performance.now();
      client.request('ping\n').then((line) => {
        busy[i] = false;
        if (line !== 'pong') ++errors;
        else if (heavyLeft > 0) pingUs.push((performance.now() - sent) * 1000);
      });
    });
  }, PING_INTERVAL_MS);
  const heavyClient = async (index) => {
    const client = await lineClient(port);
    const mine = [];
    for (let item = index; item < items; item += HEAVY_CLIENTS) mine.push(item);
    let next = 0;
    const one = async () => {
      while (next < mine.length) {
        const item = mine[next++];
        const line = await client.request(`heavy ${item}\n`);
        const prefix = `heavy ${item} `;
        if (!line.startsWith(prefix)) ++errors;
        else values[item] = Number(line.slice(prefix.length));
      }
    };
    await Promise.all(Array.from({ length: HEAVY_IN_FLIGHT }, one));
    client.close();
    if (--heavyLeft === 0) end = performance.now();
  };
  await Promise.all(Array.from({ length: HEAVY_CLIENTS }, (_, i) => heavyClient(i)));
  clearInterval(ticker);
  while (busy.some((b) => b)) await new Promise((r) => setTimeout(r, 1));
  for (const client of pingers) client.close();
  const checksum = values.reduce((sum, v) => sum + v, 0);
  return { pingUs, heavySeconds: (end - start) / 1000, checksum, errors };
}

if (!isMainThread) parentPort.postMessage(await runLoad(workerData));

// --- the benchmark -----------------------------------------------------------------------------

function loadAgainst(port, items) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { port, items } });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

function quantile(values, q) {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))];
}

async function measure(answerHeavy, items) {
  const server = await startServer(answerHeavy);
  const load = await loadAgainst(server.address().port, items);
  await new Promise((resolve) => server.close(resolve));
  return load;
}

async function main() {
  const options = parseOptions(process.argv.slice(2), 'server.mjs');
  const rounds = options.quick ? 1 : 7;
  const items = options.quick ? 40 : 400;
  const workers = availableParallelism();
  const pool = Pool.threads(workers);
  const modes = [
    { name: 'naive (heavy inline on the event loop)', answer: naive },
    { name: 'offloaded (worker_threads pool)', answer: offloadedTo(pool) },
  ];
  await measure(offloadedTo(pool), 40);  // warm-up: JIT, workers started
  const figures = modes.map(() => ({ p50: [], p99: [], max: [], rate: [], speedup: [] }));
  let checksum = null;
  for (let round = 0; round < rounds; ++round) {
    let naiveRate = 0;
    for (const [m, mode] of modes.entries()) {
      const load = await measure(mode.answer, items);
      if (load.errors !== 0 || (checksum !== null && load.checksum !== checksum)) {
        console.error(`server.mjs: the ${mode.name} server lost or garbled answers`);
        process.exit(1);
      }
      checksum = load.checksum;
      const rate = items / load.heavySeconds;
      if (m === 0) naiveRate = rate;
      figures[m].p50.push(quantile(load.pingUs, 0.5));
      figures[m].p99.push(quantile(load.pingUs, 0.99));
      figures[m].max.push(quantile(load.pingUs, 1));
      figures[m].rate.push(rate);
      figures[m].speedup.push(rate / naiveRate);
    }
  }
  await pool.close();

  const report = new Report('Workload 12 in Node.js: a server under load — server.mjs');
  const w = `12. server, ${PING_CLIENTS} ping clients + ${HEAVY_CLIENTS} heavy clients: `;
  for (const [label, key, unit] of [['ping p50', 'p50', 'us'], ['ping p99', 'p99', 'us'],
                                    ['ping max', 'max', 'us'], ['heavy items per second', 'rate', 'items/s']]) {
    modes.forEach((mode, m) => report.add(w + label, mode.name, median(figures[m][key]), unit,
                                          key === 'rate' ? 'higher' : 'lower'));
  }
  report.add(w + 'heavy speedup over naive', modes[1].name, median(figures[1].speedup), 'x', 'higher');
  report.claim('offloaded: ping p99 while heavy items run (us)', median(figures[1].p99), 'context');
  report.claim('offloaded: heavy throughput over naive', median(figures[1].speedup), 'context');
  report.print(`${items} items, ${workers} worker threads, ${rounds} rounds, checksum ${checksum.toFixed(6)}`);
  if (options.json) report.writeJson(options.json, { node: process.version, items, workers, rounds, checksum });
}

if (isMainThread) await main();
