// Unit tests of the dashboard's pure helpers (api/static/pure.js), without a browser:
// `node --test tests/js/*.test.js` (run by .ci/run).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { fmtDur, cronToWords, layoutGraph, GRAPH } = require('../../api/static/pure.js');

test('durations read as a person would say them', () => {
  assert.equal(fmtDur(0), '< 1 s'); // the API's instants have whole seconds
  assert.equal(fmtDur(250), '250 ms');
  assert.equal(fmtDur(2500), '2.5 s');
  assert.equal(fmtDur(42000), '42 s');
  assert.equal(fmtDur(125000), '2 min 5 s');
  assert.equal(fmtDur(3 * 3600000 + 7 * 60000), '3 h 7 min');
});

test('a missing or impossible duration is a dash', () => {
  for (const ms of [null, undefined, NaN, -1]) assert.equal(fmtDur(ms), '—');
});

test('common cron expressions in words', () => {
  const cases = {
    '* * * * *': 'every minute',
    '*/5 * * * *': 'every 5 minutes',
    '0 * * * *': 'every hour, on the hour',
    '15,45 * * * *': 'every hour at :15 and :45',
    '30 */2 * * *': 'every 2 hours at :30',
    '0 9 * * *': 'every day at 09:00',
    '0 9 * * 1-5': 'at 09:00 on weekdays',
    '0 10 * * 0,6': 'at 10:00 on weekends',
    '0 0 * * 7': 'at 00:00 on Sunday', // 7 is Sunday too
    '0 6 1,15 * *': 'at 06:00 on day 1 and 15 of the month',
    '0 0 1 jan *': 'at 00:00 on 1 January',
    '*/10 8 * * *': 'every 10 minutes from 08:00 to 08:59',
    'CRON_TZ=Europe/Berlin 0 9 * * *': 'every day at 09:00 (Europe/Berlin)',
    '@daily': 'every day at 00:00',
  };
  for (const [expr, words] of Object.entries(cases)) assert.equal(cronToWords(expr), words, expr);
});

test('cron expressions too unusual for words give null (the raw text is shown)', () => {
  for (const expr of ['', 'nonsense', '0 9 * *', '0 9 */2 * *', '0 9 1 * 1', '0-59/7 1-5 * * *']) {
    assert.equal(cronToWords(expr), null, expr);
  }
});

test('the graph lays steps out in layers by dependency depth', () => {
  const nodes = [
    { id: 'extract' },
    { id: 'load', deps: ['transform'] },
    { id: 'transform', deps: ['extract'] },
    { id: 'report', deps: ['extract'] },
  ];
  const { pos, width, height } = layoutGraph(nodes, []);
  const column = (id) => (pos[id].x - GRAPH.PAD) / (GRAPH.W + GRAPH.GX);
  assert.deepEqual(['extract', 'transform', 'report', 'load'].map(column), [0, 1, 1, 2]);
  assert.notEqual(pos.transform.y, pos.report.y); // same layer, two rows
  assert.equal(width, GRAPH.PAD * 2 + 3 * GRAPH.W + 2 * GRAPH.GX);
  assert.equal(height, GRAPH.PAD * 2 + 2 * GRAPH.H + GRAPH.GY);
});

test('children follow their parents\' order, so edges do not cross', () => {
  const nodes = [{ id: 'a' }, { id: 'b' }, { id: 'after_b', deps: ['b'] }, { id: 'after_a', deps: ['a'] }];
  const { pos } = layoutGraph(nodes, []);
  assert.ok(pos.a.y < pos.b.y);
  assert.ok(pos.after_a.y < pos.after_b.y);
});

test('handlers get their own lane below the steps, and a cycle still ends', () => {
  const { pos, height, handlerTop } = layoutGraph(
    [{ id: 'x', deps: ['y'] }, { id: 'y', deps: ['x'] }], [{ id: 'onExit' }]);
  assert.ok(pos.x && pos.y);
  assert.ok(handlerTop > Math.max(pos.x.y, pos.y.y) + GRAPH.H);
  assert.equal(height, handlerTop + GRAPH.H + GRAPH.PAD);
});

test('an empty graph is a small empty drawing', () => {
  const { pos, width, height } = layoutGraph([], []);
  assert.deepEqual([pos, width, height], [{}, GRAPH.W + 2 * GRAPH.PAD, 40]);
});
