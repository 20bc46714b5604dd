// The Node.js contenders, behind one interface: call(op, arg) resolves with the worker's
// answer, close() ends every worker and resolves once they are gone.
//   Pool.threads(n)    n worker_threads workers (postMessage / 'message');
//   Pool.processes(n)  n child_process.fork children (process.send / 'message');
//   Farm               the npm package worker-farm, n child processes (optional dependency).

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.mjs', import.meta.url));
const FARM_CHILD_MODULE = fileURLToPath(new URL('./farm-child.cjs', import.meta.url));

// Child processes still alive. Killed when this process exits, even after an error, so that a
// failed run leaves no idle node processes behind on a shared machine. (Killed by a signal,
// this process runs no handler, but then the children's IPC channels close and they exit.)
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

function track(child) {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', resolve));
}

function die(what, error) {
  console.error(`${what}:`, error);
  process.exit(1);
}

/** The two transports a Pool can use, with the same small interface. */
function threadEndpoint() {
  const worker = new Worker(WORKER_SCRIPT);
  worker.on('error', (error) => die('worker thread failed', error));
  return {
    send: (message) => worker.postMessage(message),
    onMessage: (handler) => worker.on('message', handler),
    pid: process.pid,  // a thread lives in this process
    close: () => worker.terminate(),
  };
}

function processEndpoint() {
  const child = fork(WORKER_SCRIPT);
  track(child);
  child.on('error', (error) => die('forked worker failed', error));
  return {
    send: (message) => child.send(message),
    onMessage: (handler) => child.on('message', handler),
    pid: child.pid,
    close: () => {
      const gone = exited(child);
      child.kill();
      return gone;
    },
  };
}

/**
 * A fixed set of workers. A call goes to the worker with the fewest calls in flight (so one
 * call at a time always reuses the same worker), at most `inFlightPerWorker` per worker; the
 * rest wait here. Each worker answers in order, so a FIFO of resolvers per worker is enough.
 */
export class Pool {
  #workers;
  #inFlightPerWorker;
  #queue = [];

  static threads(size, options) {
    return new Pool(Array.from({ length: size }, threadEndpoint), options);
  }

  static processes(size, options) {
    return new Pool(Array.from({ length: size }, processEndpoint), options);
  }

  constructor(endpoints, { inFlightPerWorker = 1 } = {}) {
    this.#inFlightPerWorker = inFlightPerWorker;
    this.#workers = endpoints.map((endpoint) => ({ endpoint, waiting: [] }));
    for (const worker of this.#workers) {
      worker.endpoint.onMessage((value) => this.#answered(worker, value));
    }
  }

  get size() {
    return this.#workers.length;
  }

  get pids() {
    return this.#workers.map((worker) => worker.endpoint.pid);
  }

  call(op, arg) {
    return new Promise((resolve) => {
      this.#queue.push({ message: { op, arg }, resolve });
      this.#dispatch();
    });
  }

  async close() {
    await Promise.all(this.#workers.map((worker) => worker.endpoint.close()));
  }

  #dispatch() {
    while (this.#queue.length > 0) {
      const worker = this.#leastBusy();
      if (worker.waiting.length >= this.#inFlightPerWorker) return;
      const { message, resolve } = this.#queue.shift();
      worker.waiting.push(resolve);
      worker.endpoint.send(message);
    }
  }

  #leastBusy() {
    let best = this.#workers[0];
    for (const worker of this.#workers) {
      if (worker.waiting.length < best.waiting.length) best = worker;
    }
    return best;
  }

  #answered(worker, value) {
    const resolve = worker.waiting.shift();
    this.#dispatch();
    resolve(value);
  }
}

/** worker-farm's main function, or null when it is not installed (no `npm ci` yet). */
export async function loadWorkerFarm() {
  try {
    return (await import('worker-farm')).default;
  } catch (error) {
    if (error.code !== 'ERR_MODULE_NOT_FOUND') throw error;
    return null;
  }
}

export const FARM_MISSING_NOTE =
  'note: worker-farm is not installed, so its rows are skipped (run `npm ci` in benchmarks/node)';

/**
 * A worker-farm farm of `size` child processes, otherwise with worker-farm's defaults (up to
 * 10 calls in flight per child). The children are started at once rather than on the first
 * call, and recorded as they start so that close() can wait for them to exit: worker-farm's
 * end() calls back before its children are gone.
 */
export class Farm {
  #workerFarm;
  #api;
  #children = [];

  constructor(workerFarm, size) {
    this.#workerFarm = workerFarm;
    const options = {
      maxConcurrentWorkers: size,
      autoStart: true,
      onChild: (child) => {
        track(child);
        this.#children.push(child);
      },
    };
    this.#api = workerFarm(options, FARM_CHILD_MODULE, ['tiny', 'heavy']);
    this.size = size;
  }

  get pids() {
    return this.#children.filter((child) => child.exitCode === null).map((child) => child.pid);
  }

  call(op, arg) {
    return new Promise((resolve, reject) => {
      this.#api[op](arg, (error, value) => (error ? reject(error) : resolve(value)));
    });
  }

  async close() {
    const gone = Promise.all(this.#children.map(exited));
    await new Promise((resolve) => this.#workerFarm.end(this.#api, resolve));
    await gone;
  }
}
