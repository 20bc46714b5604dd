// The worker side of pools.mjs, for both transports: a worker_threads worker answers on its
// parentPort, a forked child on its IPC channel (process.send). Requests are { op, arg } and
// answered in the order they arrive, which is what lets the pool match answers to callers
// without tagging them.

import { isMainThread, parentPort } from 'node:worker_threads';
import work from './work.cjs';

const answer = ({ op, arg }) => (op === 'tiny' ? work.tiny(arg) : work.heavyItem(arg));

if (!isMainThread) {
  parentPort.on('message', (request) => parentPort.postMessage(answer(request)));
} else if (process.send) {
  // The open IPC channel keeps this child alive; it ends when the pool kills it or the
  // parent goes away (the channel closes).
  process.on('message', (request) => process.send(answer(request)));
} else {
  console.error('worker.mjs is started by pools.mjs, not run directly');
  process.exit(2);
}
