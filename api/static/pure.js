/* dagloop dashboard: the pure helpers (no DOM, no fetch), unit-tested with `node --test`
 * (tests/js/, run by .ci/run) so that they do not depend on Chromium.
 *
 * Loaded before app.js as a classic script, it sets `window.dagloopPure`; under Node it is a
 * CommonJS module. Durations in words, cron expressions in words, the step graph's layout.
 */
(function (root) {
  'use strict';

  function fmtDur(ms) {
    if (ms === null || ms === undefined || isNaN(ms) || ms < 0) return '—';
    // The API's instants have whole seconds, so 0 means "within the same second".
    if (ms === 0) return '< 1 s';
    if (ms < 1000) return Math.round(ms) + ' ms';
    var sec = ms / 1000;
    if (sec < 60) return (sec < 10 ? sec.toFixed(1) : Math.round(sec)) + ' s';
    var m = Math.floor(sec / 60), rs = Math.round(sec % 60);
    if (m < 60) return m + ' min ' + rs + ' s';
    var hr = Math.floor(m / 60);
    return hr + ' h ' + (m % 60) + ' min';
  }

  // ---- cron in words -----------------------------------------------------------------------
  var DOW = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
  var MON = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
    'September', 'October', 'November', 'December'];
  var MACROS = {
    '@yearly': 'every year on 1 January at 00:00', '@annually': 'every year on 1 January at 00:00',
    '@monthly': 'at 00:00 on day 1 of the month', '@weekly': 'at 00:00 on Sunday',
    '@daily': 'every day at 00:00', '@midnight': 'every day at 00:00',
    '@hourly': 'every hour, on the hour'
  };
  function ordinalList(items) {
    if (items.length <= 1) return items.join('');
    return items.slice(0, -1).join(', ') + ' and ' + items[items.length - 1];
  }
  function pad2(n) { return (n < 10 ? '0' : '') + n; }
  // One cron field as a sorted list of integers, or {step} for "*/n", or '*' for any; null if
  // the form is too unusual to put in words (the raw expression is shown instead).
  function parseField(f, min, max, names) {
    if (f === '*' || f === '?') return '*';
    var m = /^\*\/(\d+)$/.exec(f);
    if (m) return { step: parseInt(m[1], 10) };
    var out = [];
    var parts = f.split(',');
    for (var i = 0; i < parts.length; i++) {
      var p = parts[i].toLowerCase();
      var r = /^([a-z0-9]+)(?:-([a-z0-9]+))?(?:\/(\d+))?$/.exec(p);
      if (!r) return null;
      var a = toNum(r[1], names), b = r[2] !== undefined ? toNum(r[2], names) : a;
      var st = r[3] !== undefined ? parseInt(r[3], 10) : 1;
      if (a === null || b === null || st < 1) return null;
      if (r[3] !== undefined && r[2] === undefined) b = max;
      for (var v = a; v <= b; v += st) out.push(v);
    }
    out = out.map(function (v) { return names === DOW && v === 7 ? 0 : v; });
    out = out.filter(function (v, idx) { return out.indexOf(v) === idx && v >= min && v <= max; });
    out.sort(function (x, y) { return x - y; });
    return out.length ? out : null;
  }
  function toNum(tok, names) {
    if (/^\d+$/.test(tok)) return parseInt(tok, 10);
    if (!names) return null;
    for (var i = 0; i < names.length; i++) {
      if (names[i].slice(0, 3).toLowerCase() === tok) return names === MON ? i + 1 : i;
    }
    return null;
  }
  function dayPart(dom, mon, dow) {
    if (dom === '*' && mon === '*' && dow === '*') return '';
    if (dom === '*' && mon === '*' && Array.isArray(dow)) {
      var key = dow.join(',');
      if (key === '1,2,3,4,5') return 'on weekdays';
      if (key === '0,6') return 'on weekends';
      return 'on ' + ordinalList(dow.map(function (d) { return DOW[d]; }));
    }
    if (Array.isArray(dom) && dow === '*') {
      if (mon === '*') return 'on day ' + ordinalList(dom.map(String)) + ' of the month';
      if (Array.isArray(mon)) {
        return 'on ' + ordinalList(dom.map(String)) + ' ' + ordinalList(mon.map(function (x) { return MON[x - 1]; }));
      }
    }
    return null;
  }
  function cronToWords(expr) {
    var text = String(expr || '').trim(), tz = '';
    var m = /^(?:CRON_TZ|TZ)=(\S+)\s+([\s\S]*)$/.exec(text);
    if (m) { tz = m[1]; text = m[2].trim(); }
    var suffix = tz ? ' (' + tz + ')' : '';
    if (MACROS[text.toLowerCase()]) return MACROS[text.toLowerCase()] + suffix;
    var every = /^@every\s+(\S+)$/i.exec(text);
    if (every) return 'every ' + every[1] + suffix;
    var f = text.split(/\s+/);
    if (f.length !== 5) return null;
    var mi = parseField(f[0], 0, 59), ho = parseField(f[1], 0, 23);
    var dom = parseField(f[2], 1, 31), mon = parseField(f[3], 1, 12, MON), dow = parseField(f[4], 0, 7, DOW);
    if (!mi || !ho || !dom || !mon || !dow) return null;
    if (mon && mon.step || dom && dom.step || dow && dow.step) return null;
    var days = dayPart(dom, mon, dow);
    if (days === null) return null;
    var time;
    if (mi === '*' && ho === '*') time = 'every minute';
    else if (mi.step && ho === '*') time = mi.step === 1 ? 'every minute' : 'every ' + mi.step + ' minutes';
    else if (Array.isArray(mi) && ho === '*') {
      time = mi.length === 1 && mi[0] === 0 ? 'every hour, on the hour'
        : 'every hour at ' + ordinalList(mi.map(function (x) { return ':' + pad2(x); }));
    } else if (Array.isArray(mi) && mi.length === 1 && ho.step) {
      time = 'every ' + (ho.step === 1 ? 'hour' : ho.step + ' hours') + (mi[0] ? ' at :' + pad2(mi[0]) : '');
    } else if (Array.isArray(mi) && Array.isArray(ho) && mi.length * ho.length <= 6) {
      var times = [];
      ho.forEach(function (hh) { mi.forEach(function (mm) { times.push(pad2(hh) + ':' + pad2(mm)); }); });
      time = 'at ' + ordinalList(times);
      if (!days) return 'every day ' + time + suffix;
    } else if (mi.step && Array.isArray(ho) && ho.length === 1) {
      time = 'every ' + mi.step + ' minutes from ' + pad2(ho[0]) + ':00 to ' + pad2(ho[0]) + ':59';
    } else return null;
    return time + (days ? ' ' + days : '') + suffix;
  }

  // ---- step graph layout: layered by dependency depth, left to right ---------------------------
  // Box width and height, the gaps between layers (x) and rows (y), the padding, in pixels.
  var GRAPH = { W: 168, H: 38, GX: 56, GY: 16, PAD: 12 };

  // nodes: [{id, deps: [ids]}]; handlers: drawn in their own lane below. Returns each node's
  // top-left corner by id, the drawing's size and where the handlers' lane starts.
  function layoutGraph(nodes, handlers) {
    var W = GRAPH.W, H = GRAPH.H, GX = GRAPH.GX, GY = GRAPH.GY, PAD = GRAPH.PAD;
    var byId = {};
    nodes.forEach(function (n) { byId[n.id] = n; });
    var depth = {};
    function depthOf(id, seen) {
      if (depth[id] !== undefined) return depth[id];
      if (seen[id]) return 0; // a cycle: the loader rejects these, but never loop forever
      seen[id] = true;
      var d = 0;
      (byId[id].deps || []).forEach(function (dep) { if (byId[dep]) d = Math.max(d, depthOf(dep, seen) + 1); });
      depth[id] = d;
      return d;
    }
    var layers = [];
    nodes.forEach(function (n) {
      var d = depthOf(n.id, {});
      (layers[d] = layers[d] || []).push(n);
    });
    // One barycentre pass: order each layer by the mean position of its parents, so
    // edges mostly run straight and cross less.
    var index = {};
    layers.forEach(function (layer, d) {
      if (d > 0) {
        var key = {};
        layer.forEach(function (n, i) {
          var ps = (n.deps || []).filter(function (p) { return index[p] !== undefined; });
          var bary = ps.length ? ps.reduce(function (acc, p) { return acc + index[p]; }, 0) / ps.length : i;
          key[n.id] = [bary, i];
        });
        layer.sort(function (a, b) { return key[a.id][0] - key[b.id][0] || key[a.id][1] - key[b.id][1]; });
      }
      layer.forEach(function (n, i) { index[n.id] = i; });
    });
    var maxLen = layers.reduce(function (acc, l) { return Math.max(acc, l.length); }, 0);
    var pos = {};
    layers.forEach(function (layer, d) {
      var offset = (maxLen - layer.length) * (H + GY) / 2;
      layer.forEach(function (n, i) { pos[n.id] = { x: PAD + d * (W + GX), y: PAD + offset + i * (H + GY) }; });
    });
    var width = Math.max(PAD * 2 + layers.length * (W + GX) - GX, W + PAD * 2);
    var height = PAD * 2 + maxLen * (H + GY) - GY;
    var handlerTop = height + 26;
    if (handlers.length) {
      width = Math.max(width, PAD * 2 + handlers.length * (W + GX) - GX);
      height = handlerTop + H + PAD;
    }
    if (!nodes.length) height = handlers.length ? height : 40;
    return { pos: pos, width: width, height: height, handlerTop: handlerTop };
  }

  var pure = { fmtDur: fmtDur, cronToWords: cronToWords, layoutGraph: layoutGraph, GRAPH: GRAPH };
  if (typeof module === 'object' && module.exports) module.exports = pure;
  else root.dagloopPure = pure;
})(this);
