// The module worker-farm's child processes load (with require()): worker-farm calls each
// exported method with the caller's arguments and a Node-style callback last.
'use strict';

const { heavyItem, tiny } = require('./work.cjs');

module.exports = {
  tiny: (x, done) => done(null, tiny(x)),
  heavy: (i, done) => done(null, heavyItem(i)),
};
