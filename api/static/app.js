/* dagloop dashboard: a read-only single-page app over the public /api/v2 endpoints.
 *
 * Pages (hash routes): #/dags, #/dags/<fileName>, #/runs/<dagName>/<dagRunId>, #/controller.
 * No build step and no dependencies: DOM is built with h()/s() below, never from HTML strings,
 * so names and log lines from the API can never inject markup. Pages that show something still
 * in motion poll with backoff and patch the page in place; leaving the page stops the polling.
 */
(function () {
  'use strict';
  // The pure helpers (pure.js, loaded first; unit-tested with `node --test`).
  var pure = window.dagloopPure;
  var cronToWords = pure.cronToWords, fmtDur = pure.fmtDur;

  // ---- statuses (Dagu codes: 5 is "queued" for a run but "skipped" for a step) -------------
  var RUN_LABELS = ['not_started', 'running', 'failed', 'aborted', 'succeeded', 'queued',
    'partially_succeeded', 'waiting', 'rejected'];
  var NODE_LABELS = ['not_started', 'running', 'failed', 'aborted', 'succeeded', 'skipped',
    'partially_succeeded', 'waiting', 'rejected'];
  var ACTIVE_RUN = { running: true, queued: true, waiting: true };
  var HANDLERS = [['onInit', 'init'], ['onSuccess', 'success'], ['onFailure', 'failure'],
    ['onCancel', 'cancel'], ['onExit', 'exit'], ['onWait', 'wait']];

  function runLabel(obj) {
    if (!obj) return 'none';
    if (obj.statusLabel) return String(obj.statusLabel);
    return RUN_LABELS[obj.status] || 'not_started';
  }
  function nodeLabel(node) {
    if (!node) return 'none';
    if (node.statusLabel) return String(node.statusLabel);
    return NODE_LABELS[node.status] || 'not_started';
  }
  function human(label) { return String(label).replace(/_/g, ' '); }
  function isActive(label) { return ACTIVE_RUN[label] === true; }

  // ---- DOM helpers -------------------------------------------------------------------------
  function setAttrs(el, attrs) {
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') el.textContent = String(v);
      else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    });
  }
  function append(el, children) {
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      if (Array.isArray(c)) append(el, c);
      else el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    });
    return el;
  }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    setAttrs(el, attrs);
    return append(el, Array.prototype.slice.call(arguments, 2));
  }
  var SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs) {
    var el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    return append(el, Array.prototype.slice.call(arguments, 2));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function replace(el) {
    clear(el);
    return append(el, Array.prototype.slice.call(arguments, 1));
  }

  // ---- API ---------------------------------------------------------------------------------
  function ApiError(status, message) { this.status = status; this.message = message; }
  // location.origin, not a relative URL: a page opened as http://user:pass@host/ would
  // otherwise make every fetch() URL carry credentials, which fetch refuses.
  function apiUrl(path, params) {
    var url = new URL('/api/v2' + path, location.origin);
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== '') url.searchParams.set(k, params[k]);
    });
    return url.toString();
  }
  function api(path, params) {
    var headers = { Accept: 'application/json' };
    var token = savedToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    return fetch(apiUrl(path, params), {
      credentials: 'same-origin', cache: 'no-store', headers: headers
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        // Token auth: the page cannot go on without one; a Basic challenge is the browser's.
        if (resp.status === 401 && /^Bearer/i.test(resp.headers.get('WWW-Authenticate') || '')) {
          showSignIn(token ? 'The token was not accepted.' : '');
        }
        if (!resp.ok) {
          var msg = (body && (body.message || body.detail || body.title || body.description)) ||
            (resp.status + ' ' + resp.statusText);
          throw new ApiError(resp.status, msg);
        }
        return body;
      });
    });
  }
  function enc(x) { return encodeURIComponent(String(x)); }

  // ---- sign-in (the API's token auth, DAGU_AUTH_TOKEN) -------------------------------------
  // The token is kept for this tab's session only (sessionStorage: gone with the tab) and sent
  // as `Authorization: Bearer`, never in a URL, which would end up in the browser's history,
  // in server logs and in Referer headers.
  var TOKEN_KEY = 'dagloop.token';
  var tokenInMemory = ''; // where sessionStorage is disabled: until the page is left
  function savedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return tokenInMemory; }
  }
  function saveToken(value) {
    tokenInMemory = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: tokenInMemory serves */ }
    document.getElementById('signout').hidden = !value;
  }
  var signInState = null; // the router state the sign-in form is shown in
  function showSignIn(message) {
    if (signInState === current) return; // several calls of one page were refused
    stopPage(); // the page behind the form stops polling
    signInState = current;
    var input = h('input', { id: 'token', type: 'password', autocomplete: 'current-password',
      required: true, spellcheck: 'false' });
    var form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title', onsubmit: function (ev) {
      ev.preventDefault(); // never submitted: the token must not reach a URL
      var value = input.value.trim();
      if (!value) return;
      saveToken(value);
      route();
    } },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    message ? h('p', { class: 'error-box', role: 'alert' }, message) : null,
    h('p', null, 'This dagloop API needs its token (DAGU_AUTH_TOKEN). It is kept for this tab only.'),
    h('p', null, h('label', { for: 'token' }, 'API token '), input, ' ', h('button', { type: 'submit' }, 'Sign in')));
    document.title = 'Sign in · dagloop';
    replace(main, form);
    input.focus();
  }
  function signOut() {
    saveToken('');
    showSignIn('');
    liveEl.textContent = 'Signed out.';
  }
  function errorBox(err, what) {
    var msg = err instanceof ApiError ? err.message : String(err && err.message || err);
    return h('div', { class: 'error-box', role: 'alert' },
      (what ? what + ': ' : '') + msg + (err && err.status ? ' (HTTP ' + err.status + ')' : ''));
  }

  // ---- time --------------------------------------------------------------------------------
  function parseTime(v) {
    if (!v || v === '-' || typeof v !== 'string') return null;
    if (v.indexOf('0001-01-01') === 0) return null;
    var t = Date.parse(v);
    return isNaN(t) ? null : t;
  }
  function fmtTime(v) {
    var t = parseTime(v);
    if (t === null) return h('span', { class: 'muted' }, '—');
    var d = new Date(t);
    return h('time', { datetime: d.toISOString(), title: d.toISOString() },
      d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric',
        hour: '2-digit', minute: '2-digit', second: '2-digit' }));
  }
  function duration(obj, label) {
    var a = parseTime(obj && obj.startedAt), b = parseTime(obj && obj.finishedAt);
    if (a === null) return null;
    if (b === null) return isActive(label) || label === 'running' ? Date.now() - a : null;
    return b - a;
  }
  var RTF = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }) : null;
  function fmtRelative(v) {
    var t = parseTime(v);
    if (t === null) return '';
    var diff = (t - Date.now()) / 1000, abs = Math.abs(diff);
    if (!RTF) return '';
    if (abs < 60) return RTF.format(Math.round(diff), 'second');
    if (abs < 3600) return RTF.format(Math.round(diff / 60), 'minute');
    if (abs < 86400) return RTF.format(Math.round(diff / 3600), 'hour');
    return RTF.format(Math.round(diff / 86400), 'day');
  }

  // ---- status widgets ----------------------------------------------------------------------
  function badge(label) {
    return h('span', { class: 'badge s-' + label }, human(label));
  }
  // A row of coloured cells, oldest first; each cell names its run for screen readers.
  function statusCells(runs, dagName, caption) {
    var list = h('ul', { class: 'cells', 'aria-label': caption || 'recent runs, oldest first' });
    runs.forEach(function (r) {
      var label = runLabel(r);
      var started = parseTime(r.startedAt) || parseTime(r.queuedAt);
      var desc = human(label) + (started ? ', ' + new Date(started).toLocaleString() : '') +
        (r.dagRunId ? ', run ' + r.dagRunId : '');
      var cell = r.dagRunId
        ? h('a', { class: 'cell s-' + label, href: '#/runs/' + enc(r.name || dagName) + '/' + enc(r.dagRunId),
          'aria-label': desc, title: desc, 'data-status': label })
        : h('span', { class: 'cell s-' + label, role: 'img', 'aria-label': desc, title: desc, 'data-status': label });
      list.appendChild(h('li', null, cell));
    });
    return list;
  }

  // ---- step graph (SVG, layered by dependency depth, left to right) --------------------------
  var graphSeq = 0;
  // nodes: [{id, label, deps: [ids], status, href, title}]; handlers: same, drawn apart.
  function stepGraph(nodes, handlers, ariaLabel) {
    var W = pure.GRAPH.W, H = pure.GRAPH.H, PAD = pure.GRAPH.PAD, GX = pure.GRAPH.GX;
    var L = pure.layoutGraph(nodes, handlers);
    var pos = L.pos, width = L.width, height = L.height, handlerTop = L.handlerTop;
    var markerId = 'arrow' + (++graphSeq);
    var root = s('svg', { class: 'graph', width: width, height: height, viewBox: '0 0 ' + width + ' ' + height,
      role: 'group', 'aria-label': ariaLabel },
    s('defs', null, s('marker', { id: markerId, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { class: 'arrow', d: 'M0,0 L10,5 L0,10 z' }))));
    nodes.forEach(function (n) {
      (n.deps || []).forEach(function (dep) {
        var a = pos[dep], b = pos[n.id];
        if (!a || !b) return;
        var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2, dx = Math.max(20, (x2 - x1) / 2);
        root.appendChild(s('path', { class: 'edge', 'data-from': dep, 'data-to': n.id,
          d: 'M' + x1 + ',' + y1 + ' C' + (x1 + dx) + ',' + y1 + ' ' + (x2 - dx) + ',' + y2 + ' ' + x2 + ',' + y2,
          'marker-end': 'url(#' + markerId + ')' }));
      });
    });
    function drawNode(n, x, y, handler) {
      var label = n.label.length > 21 ? n.label.slice(0, 20) + '…' : n.label;
      var status = n.status || 'none';
      var aria = (handler ? 'handler ' : 'step ') + n.label + (n.status ? ', ' + human(n.status) : '') +
        (n.deps && n.deps.length ? ', after ' + n.deps.join(', ') : '');
      var g = s('g', { class: 'node' + (handler ? ' handler' : ''), 'data-step': n.id,
        'data-status': status, 'aria-label': aria, role: n.onActivate ? 'button' : 'img',
        tabindex: n.onActivate ? 0 : null, transform: 'translate(' + x + ',' + y + ')' },
      s('title', { text: n.title || aria }),
      s('rect', { class: 'box', width: W, height: H, rx: 6 }),
      s('rect', { class: 'bar s-' + status, width: 7, height: H, rx: 3 }),
      s('text', { x: 16, y: H / 2 + 4.5, text: label }));
      if (n.onActivate) {
        g.addEventListener('click', n.onActivate);
        g.addEventListener('keydown', function (ev) {
          if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); n.onActivate(); }
        });
      }
      root.appendChild(g);
    }
    nodes.forEach(function (n) { drawNode(n, pos[n.id].x, pos[n.id].y, false); });
    if (handlers.length) {
      root.appendChild(s('text', { class: 'lane-label', x: PAD, y: handlerTop - 8, text: 'Handlers' }));
      handlers.forEach(function (n, i) { drawNode(n, PAD + i * (W + GX), handlerTop, true); });
    }
    return h('div', { class: 'graph-wrap' }, root);
  }

  function stepDeps(step) {
    var d = step && step.depends;
    if (!d) return [];
    return Array.isArray(d) ? d.map(String) : [String(d)];
  }
  function shellQuote(a) {
    a = String(a);
    return /^[\w@%+=:,./-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'";
  }
  function stepCommand(step) {
    if (!step) return '';
    var cmds = Array.isArray(step.commands) ? step.commands : [];
    if (cmds.length <= 1 && step.cmdWithArgs) return step.cmdWithArgs;
    if (cmds.length <= 1 && typeof step.command === 'string' && step.command) return step.command;
    if (cmds.length) {
      return cmds.map(function (c) {
        return typeof c === 'string' ? c : [c.command].concat(c.args || []).map(shellQuote).join(' ');
      }).join(' && ');
    }
    if (Array.isArray(step.command)) return step.command.join(' ');
    return step.command || step.script || (step.call ? 'call ' + step.call : '') || (step.run ? 'run ' + step.run : '');
  }

  // ---- router ------------------------------------------------------------------------------
  var main = document.getElementById('main');
  var liveEl = document.getElementById('live');
  var current = { token: 0, timers: [] };

  function stopPage() {
    current.timers.forEach(clearTimeout);
    current = { token: current.token + 1, timers: [] };
  }
  function route() {
    stopPage();
    var hash = location.hash.replace(/^#/, '') || '/dags';
    var q = hash.indexOf('?');
    var query = new URLSearchParams(q >= 0 ? hash.slice(q + 1) : '');
    var parts = (q >= 0 ? hash.slice(0, q) : hash).split('/').filter(Boolean).map(decodeURIComponent);
    var page, nav;
    if (parts[0] === 'dags' && parts.length === 1) { page = pageDags; nav = 'dags'; }
    else if (parts[0] === 'dags' && parts.length === 2) { page = pageDag; nav = 'dags'; }
    else if (parts[0] === 'runs' && parts.length === 3) { page = pageRun; nav = 'dags'; }
    else if (parts[0] === 'controller') { page = pageController; nav = 'controller'; }
    else { page = pageNotFound; nav = ''; }
    document.querySelectorAll('[data-nav]').forEach(function (a) {
      if (a.getAttribute('data-nav') === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    liveEl.textContent = '';
    var ctx = makeCtx(current);
    clear(main);
    main.appendChild(h('p', { class: 'muted' }, 'Loading…'));
    Promise.resolve(page(ctx, parts.slice(1), query)).catch(function (err) {
      if (ctx.alive()) replace(main, errorBox(err, 'Could not load this page'));
    });
  }
  function makeCtx(state) {
    return {
      alive: function () { return current === state; },
      // Calls fn() again after a delay it returns (ms), or never if it returns 0; stops when
      // the page is left.
      poll: function (fn, firstDelay) {
        var self = this;
        function tick() {
          if (!self.alive()) return;
          Promise.resolve(fn()).then(function (next) {
            if (next && self.alive()) state.timers.push(setTimeout(tick, document.hidden ? Math.max(next, 15000) : next));
          });
        }
        state.timers.push(setTimeout(tick, firstDelay));
      },
      title: function (t) { document.title = t + ' · dagloop'; }
    };
  }
  function focusMain() { main.focus({ preventScroll: true }); }

  function pageNotFound(ctx) {
    ctx.title('Not found');
    replace(main, h('h1', null, 'Page not found'), h('p', null, h('a', { href: '#/dags' }, 'Back to the DAGs')));
  }

  // ---- page: DAG list ----------------------------------------------------------------------
  var LIST_RUNS = 12;
  function fetchAllDags() {
    var all = [], errors = [];
    function page(n) {
      return api('/dags', { page: n, perPage: 100 }).then(function (body) {
        all = all.concat(body && body.dags || []);
        if (body && Array.isArray(body.errors)) errors = errors.concat(body.errors);
        var pg = body && body.pagination;
        if (pg && pg.totalPages > n && n < 50) return page(n + 1);
        return { dags: all, errors: errors };
      });
    }
    return page(1);
  }
  function fetchRecentRuns() {
    var from = Math.floor(Date.now() / 1000) - 14 * 86400;
    return api('/dag-runs', { fromDate: from, perPage: 1000 }).then(function (body) {
      var byName = {};
      (body && body.dagRuns || []).forEach(function (r) { (byName[r.name] = byName[r.name] || []).push(r); });
      return byName;
    }, function () { return {}; });
  }
  function nextRunOf(item) {
    return item.nextRun || (item.dag && item.dag.nextRun) || null;
  }
  function schedulesOf(dag) {
    var sc = dag && dag.schedule;
    if (!sc) return [];
    if (!Array.isArray(sc)) sc = [sc];
    return sc.map(function (x) { return typeof x === 'string' ? x : x.expression; }).filter(Boolean);
  }
  function scheduleCell(dag) {
    var exprs = schedulesOf(dag);
    if (!exprs.length) return h('span', { class: 'muted' }, 'manual');
    return exprs.map(function (e) {
      var words = cronToWords(e);
      return h('div', { class: 'sched' }, words ? h('span', null, words + ' ') : null,
        h('code', { title: words ? 'cron: ' + e : 'cron expression' }, e));
    });
  }
  function errorsOf(item) {
    var e = item && item.errors;
    if (!e) return [];
    return (Array.isArray(e) ? e : [e]).map(function (x) { return typeof x === 'string' ? x : (x.message || JSON.stringify(x)); });
  }

  function pageDags(ctx, _parts, query) {
    ctx.title('DAGs');
    var state = { q: query.get('q') || '', tag: query.get('tag') || '', sort: query.get('sort') || 'name' };
    var data = null;
    var qInput = h('input', { type: 'search', id: 'dag-filter', value: state.q, placeholder: 'name or tag',
      'aria-controls': 'dag-table', autocomplete: 'off' });
    var tagSelect = h('select', { id: 'dag-tag', 'aria-controls': 'dag-table' }, h('option', { value: '' }, 'all tags'));
    var sortSelect = h('select', { id: 'dag-sort', 'aria-controls': 'dag-table' },
      h('option', { value: 'name' }, 'name'), h('option', { value: 'nextRun' }, 'next run'));
    sortSelect.value = state.sort;
    var banner = h('div');
    var count = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
    var tableHost = h('div');
    replace(main,
      h('h1', null, 'DAGs'),
      banner,
      h('div', { class: 'toolbar', role: 'search' },
        h('label', { for: 'dag-filter' }, 'Filter', qInput),
        h('label', { for: 'dag-tag' }, 'Tag', tagSelect),
        h('label', { for: 'dag-sort' }, 'Sort by', sortSelect)),
      count, tableHost);
    function saveState() {
      var p = new URLSearchParams();
      if (state.q) p.set('q', state.q);
      if (state.tag) p.set('tag', state.tag);
      if (state.sort !== 'name') p.set('sort', state.sort);
      var qs = p.toString();
      history.replaceState(null, '', '#/dags' + (qs ? '?' + qs : ''));
    }
    qInput.addEventListener('input', function () { state.q = qInput.value.trim(); saveState(); render(); });
    tagSelect.addEventListener('change', function () { state.tag = tagSelect.value; saveState(); render(); });
    sortSelect.addEventListener('change', function () { state.sort = sortSelect.value; saveState(); render(); });

    function render() {
      if (!data) return;
      var q = state.q.toLowerCase();
      var rows = data.dags.filter(function (it) {
        var dag = it.dag || {}, tags = dag.tags || [];
        if (state.tag && tags.indexOf(state.tag) < 0) return false;
        if (!q) return true;
        return String(dag.name || it.fileName).toLowerCase().indexOf(q) >= 0 ||
          String(it.fileName || '').toLowerCase().indexOf(q) >= 0 ||
          tags.some(function (t) { return String(t).toLowerCase().indexOf(q) >= 0; });
      });
      rows.sort(function (a, b) {
        var na = String(a.dag && a.dag.name || a.fileName), nb = String(b.dag && b.dag.name || b.fileName);
        if (state.sort === 'nextRun') {
          var ta = parseTime(nextRunOf(a)), tb = parseTime(nextRunOf(b));
          if (ta !== tb) { if (ta === null) return 1; if (tb === null) return -1; return ta - tb; }
        }
        return na.localeCompare(nb);
      });
      count.textContent = rows.length + ' of ' + data.dags.length + ' DAGs';
      var body = h('tbody');
      rows.forEach(function (it) {
        var dag = it.dag || {}, name = dag.name || it.fileName, errs = errorsOf(it);
        var runs = (data.runs[name] || []).slice(0, LIST_RUNS);
        if (!runs.length && it.latestDAGRun && it.latestDAGRun.dagRunId) runs = [it.latestDAGRun];
        runs = runs.slice().reverse();
        var latest = it.latestDAGRun && it.latestDAGRun.dagRunId ? it.latestDAGRun : null;
        var next = nextRunOf(it);
        body.appendChild(h('tr', { class: errs.length ? 'has-error' : null, 'data-dag': name },
          h('td', null, h('a', { class: 'stepname', href: '#/dags/' + enc(it.fileName || name) }, name),
            it.suspended ? [' ', h('span', { class: 'tag' }, 'suspended')] : null,
            dag.description ? h('div', { class: 'muted' }, dag.description) : null,
            errs.length ? h('div', { class: 'err-text', title: errs.join('\n') }, '⚠ not loaded: see the errors above') : null),
          h('td', { class: 'full-sm' }, errs.length ? h('span', { class: 'muted' }, '—') : scheduleCell(dag)),
          h('td', { class: 'hide-sm nowrap' }, next ? [fmtTime(next), h('div', { class: 'muted' }, fmtRelative(next))]
            : h('span', { class: 'muted' }, '—')),
          h('td', { class: 'hide-sm' }, (dag.tags || []).map(function (t) {
            return h('button', { class: 'tag', type: 'button', title: 'show only tag ' + t,
              onclick: function () { state.tag = t; tagSelect.value = t; saveState(); render(); } }, t);
          })),
          h('td', null, runs.length ? statusCells(runs, name, 'last ' + runs.length + ' runs of ' + name + ', oldest first')
            : h('span', { class: 'muted' }, 'no runs')),
          h('td', { class: 'nowrap' }, latest ? [h('a', { href: '#/runs/' + enc(latest.name || name) + '/' + enc(latest.dagRunId) },
            badge(runLabel(latest))), h('div', { class: 'muted' }, fmtRelative(latest.startedAt || latest.queuedAt))]
            : h('span', { class: 'muted' }, '—'))));
      });
      if (!rows.length) body.appendChild(h('tr', null, h('td', { colspan: 6, class: 'muted' },
        data.dags.length ? 'No DAG matches the filter.' : 'No DAG files found in the DAGs directory.')));
      replace(tableHost, h('div', { class: 'table-wrap' }, h('table', { id: 'dag-table', class: 'stack' },
        h('caption', { class: 'sr-only' }, 'DAGs'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Schedule'),
          h('th', { scope: 'col', class: 'hide-sm' }, 'Next run'), h('th', { scope: 'col', class: 'hide-sm' }, 'Tags'),
          h('th', { scope: 'col' }, 'Recent runs'), h('th', { scope: 'col' }, 'Last run'))),
        body)));
    }
    function renderBanner() {
      var broken = data.dags.filter(function (it) { return errorsOf(it).length; });
      var all = broken.map(function (it) { return [it.fileName || (it.dag && it.dag.name), errorsOf(it).join('; ')]; });
      data.errors.forEach(function (e) { all.push(['', typeof e === 'string' ? e : JSON.stringify(e)]); });
      if (!all.length) { clear(banner); return; }
      replace(banner, h('div', { class: 'error-box', role: 'alert', id: 'load-errors' },
        h('strong', null, all.length + (all.length === 1 ? ' DAG file has' : ' DAG files have') + ' errors and will not run:'),
        h('ul', null, all.map(function (x) { return h('li', null, x[0] ? h('code', null, x[0]) : null, x[0] ? ': ' : '', x[1]); }))));
    }
    function load() {
      return Promise.all([fetchAllDags(), fetchRecentRuns()]).then(function (res) {
        if (!ctx.alive()) return 0;
        data = { dags: res[0].dags, errors: res[0].errors, runs: res[1] };
        var tags = {};
        data.dags.forEach(function (it) { ((it.dag && it.dag.tags) || []).forEach(function (t) { tags[t] = true; }); });
        var chosen = state.tag;
        replace(tagSelect, h('option', { value: '' }, 'all tags'),
          Object.keys(tags).sort().map(function (t) { return h('option', { value: t }, t); }));
        if (chosen && !tags[chosen]) tagSelect.appendChild(h('option', { value: chosen }, chosen));
        tagSelect.value = chosen;
        renderBanner();
        render();
        var active = data.dags.some(function (it) { return it.latestDAGRun && isActive(runLabel(it.latestDAGRun)); });
        return active ? 3000 : 15000;
      }, function (err) {
        if (ctx.alive()) replace(tableHost, errorBox(err, 'Could not list the DAGs'));
        return 15000;
      });
    }
    return load().then(function (next) { focusMain(); ctx.poll(load, next); });
  }

  // ---- page: one DAG -------------------------------------------------------------------------
  function paramsList(dag) {
    var p = dag && dag.params;
    if (!p) return [];
    if (typeof p === 'string') return p ? [p] : [];
    return p.map(function (x) { return typeof x === 'string' ? x : JSON.stringify(x); });
  }
  function handlerSteps(obj, fromNodes) {
    var out = [];
    var src = fromNodes ? obj : (obj && (obj.handlerOn || obj.handlers)) || {};
    HANDLERS.forEach(function (pair) {
      var v = fromNodes ? src[pair[0]] : (src[pair[1]] || src[pair[0]]);
      if (v) out.push({ kind: pair[1], value: v });
    });
    return out;
  }
  function pageDag(ctx, parts) {
    var fileName = parts[0];
    ctx.title(fileName);
    var top = h('div'), graphHost = h('div'), histHost = h('div');
    replace(main, h('p', { class: 'crumbs' }, h('a', { href: '#/dags' }, 'DAGs'), ' / '),
      top, h('h2', null, 'Steps'), graphHost, h('h2', null, 'Run history'), histHost);
    function loadDag() {
      return api('/dags/' + enc(fileName)).then(function (body) {
        if (!ctx.alive()) return;
        var dag = body.dag || {}, errs = errorsOf(body);
        ctx.title(dag.name || fileName);
        var params = paramsList(dag);
        var exprs = schedulesOf(dag);
        replace(top,
          h('h1', null, dag.name || fileName, body.suspended ? [' ', h('span', { class: 'tag' }, 'suspended')] : null),
          errs.length ? h('div', { class: 'error-box', role: 'alert' }, h('strong', null, 'This DAG file has errors:'),
            h('ul', null, errs.map(function (e) { return h('li', null, e); }))) : null,
          dag.description ? h('p', null, dag.description) : null,
          h('dl', { class: 'facts' },
            h('dt', null, 'File'), h('dd', null, h('code', null, fileName)),
            h('dt', null, 'Schedule'), h('dd', null, exprs.length ? scheduleCell(dag) : 'manual only'),
            nextRunOf(body) || dag.nextRun ? [h('dt', null, 'Next run'), h('dd', null, fmtTime(nextRunOf(body) || dag.nextRun))] : null,
            (dag.tags || []).length ? [h('dt', null, 'Tags'), h('dd', null, dag.tags.map(function (t) {
              return h('a', { class: 'tag', href: '#/dags?tag=' + enc(t) }, t);
            }))] : null,
            h('dt', null, 'Parameters'), h('dd', null, params.length ? params.map(function (p) { return h('div', null, h('code', null, p)); })
              : h('span', { class: 'muted' }, 'none')),
            dag.defaultParams ? [h('dt', null, 'Default params'), h('dd', null, h('code', null, dag.defaultParams))] : null,
            dag.queue ? [h('dt', null, 'Queue'), h('dd', null, dag.queue)] : null,
            dag.maxActiveRuns !== undefined ? [h('dt', null, 'Max active runs'), h('dd', null, String(dag.maxActiveRuns))] : null,
            dag.maxActiveSteps ? [h('dt', null, 'Max active steps'), h('dd', null, String(dag.maxActiveSteps))] : null,
            dag.histRetentionDays !== undefined ? [h('dt', null, 'History kept'), h('dd', null, dag.histRetentionDays + ' days')] : null,
            body.latestDAGRun && body.latestDAGRun.dagRunId ? [h('dt', null, 'Latest run'), h('dd', null,
              h('a', { href: '#/runs/' + enc(body.latestDAGRun.name || dag.name) + '/' + enc(body.latestDAGRun.dagRunId) },
                badge(runLabel(body.latestDAGRun)), ' ', body.latestDAGRun.dagRunId))] : null));
        var steps = dag.steps || [];
        var nodes = steps.map(function (st) {
          return { id: st.name, label: st.name, deps: stepDeps(st), title: st.name + (stepCommand(st) ? ': ' + stepCommand(st) : '') };
        });
        var handlers = handlerSteps(dag, false).map(function (x) {
          var st = x.value;
          var label = 'on ' + x.kind + (st.name && st.name !== 'on' + x.kind[0].toUpperCase() + x.kind.slice(1) ? ': ' + st.name : '');
          return { id: st.name || x.kind, label: label, deps: [], title: label + (stepCommand(st) ? ' — ' + stepCommand(st) : '') };
        });
        replace(graphHost, steps.length || handlers.length
          ? stepGraph(nodes, handlers, 'step graph of ' + (dag.name || fileName) + ': ' + steps.length + ' steps')
          : h('p', { class: 'muted' }, 'No steps.'),
        steps.length ? h('details', null, h('summary', null, 'Steps as a list'), h('ol', null, steps.map(function (st) {
          return h('li', null, h('span', { class: 'stepname' }, st.name), stepCommand(st) ? [' — ', h('code', null, stepCommand(st))] : null,
            stepDeps(st).length ? h('span', { class: 'muted' }, ' (after ' + stepDeps(st).join(', ') + ')') : null);
        }))) : null);
      });
    }
    function loadHistory() {
      return api('/dags/' + enc(fileName) + '/dag-runs').then(function (body) {
        if (!ctx.alive()) return 0;
        var runs = body && body.dagRuns || [];
        if (!runs.length) { replace(histHost, h('p', { class: 'muted' }, 'No runs yet.')); return 15000; }
        var cols = runs.slice().reverse(); // oldest first, left to right
        var grid = body.gridData || [];
        var gridTable = grid.length ? h('div', { class: 'table-wrap hist-grid' }, h('table', null,
          h('caption', { class: 'sr-only' }, 'Step status per run, oldest run first'),
          h('tbody', null, grid.map(function (row) {
            var hist = row.history || []; // oldest first, like cols
            return h('tr', null, h('th', { scope: 'row' }, row.name), h('td', { class: 'cellcol' },
              h('ul', { class: 'cells', 'aria-label': 'step ' + row.name + ' in the last ' + hist.length + ' runs, oldest first' },
                hist.map(function (st, i) {
                  var label = typeof st === 'number' ? NODE_LABELS[st] || 'not_started' : (st && st.statusLabel) || String(st || 'none');
                  var run = cols[i];
                  var desc = row.name + ': ' + human(label) + (run ? ' in run ' + run.dagRunId : '');
                  return h('li', null, h('span', { class: 'cell s-' + label, role: 'img', 'aria-label': desc, title: desc }));
                }))));
          })))) : null;
        replace(histHost,
          h('div', { class: 'row' }, h('span', { class: 'muted' }, 'Last ' + runs.length + ' runs:'),
            statusCells(cols, fileName, 'last ' + runs.length + ' runs, oldest first')),
          gridTable ? h('details', null, h('summary', null, 'Steps × runs'), gridTable) : null,
          h('div', { class: 'table-wrap' }, h('table', { id: 'run-history' },
            h('thead', null, h('tr', null, ['Status', 'Run', 'Started', 'Finished', 'Duration', 'Params'].map(function (c, i) {
              return h('th', { scope: 'col', class: i === 3 || i === 5 ? 'hide-sm' : null }, c);
            }))),
            h('tbody', null, runs.map(function (r) {
              var label = runLabel(r);
              return h('tr', null, h('td', null, badge(label)),
                h('td', null, h('a', { class: 'mono', href: '#/runs/' + enc(r.name || fileName) + '/' + enc(r.dagRunId) }, r.dagRunId)),
                h('td', { class: 'nowrap' }, fmtTime(r.startedAt || r.queuedAt)),
                h('td', { class: 'nowrap hide-sm' }, fmtTime(r.finishedAt)),
                h('td', { class: 'num' }, fmtDur(duration(r, label))),
                h('td', { class: 'hide-sm' }, r.params ? h('code', null, typeof r.params === 'string' ? r.params : JSON.stringify(r.params)) : ''));
            })))));
        return runs.some(function (r) { return isActive(runLabel(r)); }) ? 2000 : 15000;
      }, function (err) {
        if (ctx.alive()) replace(histHost, errorBox(err, 'Could not load the run history'));
        return 15000;
      });
    }
    return loadDag().catch(function (err) {
      replace(top, h('h1', null, fileName), errorBox(err, 'Could not load this DAG'));
    }).then(function () {
      focusMain();
      return loadHistory();
    }).then(function (next) { ctx.poll(loadHistory, next); });
  }

  // ---- page: one run -----------------------------------------------------------------------
  var LOG_TAIL = 200;
  // One stdout or stderr panel; kept across live refreshes so an open panel stays open.
  function LogPanel(runPath, stepName, stream) {
    var self = this;
    this.lines = LOG_TAIL;
    this.loaded = false;
    this.pre = h('pre', { class: 'logtext', tabindex: 0, 'aria-label': stream + ' of ' + stepName });
    this.info = h('span', { class: 'muted' });
    this.more = h('button', { type: 'button', hidden: true }, 'Load more');
    this.more.addEventListener('click', function () { self.lines *= 4; self.load(); });
    this.el = h('details', { class: 'log', 'data-stream': stream, 'data-step': stepName },
      h('summary', null, stream), h('div', { class: 'log-actions' }, this.info, this.more), this.pre);
    this.el.addEventListener('toggle', function () { if (self.el.open) self.load(); });
    this.url = runPath + '/steps/' + enc(stepName) + '/log';
    this.stream = stream;
  }
  LogPanel.prototype.load = function () {
    var self = this;
    if (this.busy) return Promise.resolve();
    this.busy = true;
    return api(this.url, { stream: this.stream, tail: this.lines }).then(function (body) {
      var content = body && body.content || '';
      var atBottom = self.pre.scrollTop + self.pre.clientHeight >= self.pre.scrollHeight - 4;
      self.pre.textContent = content || '(empty)';
      if (atBottom || !self.loaded) self.pre.scrollTop = self.pre.scrollHeight;
      self.loaded = true;
      var total = body && body.totalLines, shown = body && body.lineCount;
      self.info.textContent = total !== undefined ? 'last ' + shown + ' of ' + total + ' lines' : '';
      self.more.hidden = !(body && body.hasMore);
    }, function (err) {
      self.pre.textContent = err.status === 404 ? '(no ' + self.stream + ' log)' : 'Could not load the log: ' + err.message;
      self.loaded = true;
    }).then(function () { self.busy = false; });
  };

  function gantt(items, runStart, runEnd) {
    var starts = items.map(function (it) { return parseTime(it.node.startedAt); }).filter(function (t) { return t !== null; });
    if (!starts.length) return h('p', { class: 'muted' }, 'No step has started yet.');
    var t0 = Math.min.apply(null, starts.concat(runStart !== null ? [runStart] : []));
    var ends = items.map(function (it) { return it.end; }).filter(function (t) { return t !== null; });
    var t1 = Math.max.apply(null, ends.concat([runEnd !== null ? runEnd : t0 + 1]));
    // Instants have whole seconds, so a timeline shorter than one second would be noise.
    var span = Math.max(t1 - t0, 1000);
    function pct(t) { return ((t - t0) / span * 100).toFixed(3) + '%'; }
    var rows = [];
    items.forEach(function (it) {
      var n = it.node, st = parseTime(n.startedAt), label = nodeLabel(n);
      var name = it.name;
      var track = h('div', { class: 'track' });
      var retries = n.retryCount || 0;
      var desc = name + ': ' + human(label);
      if (st !== null) {
        var end = it.end !== null ? it.end : st;
        var bar = h('div', { class: 'gbar s-' + label });
        bar.style.left = pct(st);
        bar.style.width = ((end - st) / span * 100).toFixed(3) + '%';
        track.appendChild(bar);
        var retriedAt = parseTime(n.retriedAt);
        if (retries && retriedAt !== null && retriedAt > st) {
          var mark = h('div', { class: 'retry', title: 'last retry started ' + new Date(retriedAt).toLocaleTimeString() });
          mark.style.left = pct(retriedAt);
          track.appendChild(mark);
        }
        var text = fmtDur(end - st) + (retries ? ' · ↻ ' + retries + (retries === 1 ? ' retry' : ' retries') : '');
        var lbl = h('span', { class: 'glabel' }, text);
        // The label goes after the bar, or before it, or inside it, wherever it fits.
        var endFrac = (end - t0) / span, startFrac = (st - t0) / span;
        if (endFrac <= 0.75) lbl.style.left = pct(end);
        else if (startFrac > 0.3) { lbl.style.right = (100 - startFrac * 100).toFixed(3) + '%'; lbl.style.paddingRight = '4px'; }
        else { lbl.style.left = pct(st); lbl.classList.add('inside'); lbl.classList.add('on-s-' + label); }
        track.appendChild(lbl);
        desc += ', started ' + fmtDur(st - t0) + ' after the run, took ' + fmtDur(end - st) +
          (retries ? ', ' + retries + ' retries' : '');
      } else {
        desc += ', not started';
      }
      track.setAttribute('role', 'img');
      track.setAttribute('aria-label', desc);
      track.setAttribute('title', desc);
      rows.push(h('div', { class: 'gname', title: name }, name), track);
    });
    rows.push(h('div', { class: 'axis', 'aria-hidden': 'true' }, h('span', null, '0'), h('span', null, fmtDur(span / 2)), h('span', null, fmtDur(span))));
    return h('div', { class: 'gantt', role: 'group', 'aria-label': 'timeline of steps' }, rows);
  }

  function exitCodeOf(node) {
    if (node.exitCode !== undefined && node.exitCode !== null) return String(node.exitCode);
    var m = /exit status (\d+)/.exec(node.error || '');
    return m ? m[1] : '—';
  }

  function pageRun(ctx, parts) {
    var dagName = parts[0], runId = parts[1];
    var runPath = '/dag-runs/' + enc(dagName) + '/' + enc(runId);
    ctx.title(dagName + ' run');
    var top = h('div'), graphHost = h('div'), ganttHost = h('div'), stepsHost = h('div'), outHost = h('div'), logHost = h('div'), specHost = h('div');
    replace(main, h('p', { class: 'crumbs' }, h('a', { href: '#/dags' }, 'DAGs'), ' / ',
      h('a', { href: '#/dags/' + enc(dagName) }, dagName), ' / run'),
    top, h('h2', null, 'Graph'), graphHost, h('h2', null, 'Timeline'), ganttHost,
    h('h2', null, 'Steps'), stepsHost, h('h2', null, 'Outputs'), outHost, h('h2', null, 'Run log'), logHost,
    h('h2', null, 'Spec'), specHost);
    var specLoaded = false;
    var panels = {};
    var lastJson = '', delay = 1000, finalSeen = false, realId = runId;
    var runLog = null;

    // In-page anchors would fight the hash router, so graph nodes scroll to their row instead.
    function showStep(name) {
      return function () {
        var row = document.getElementById('step-' + name);
        if (!row) return;
        row.scrollIntoView({ block: 'center' });
        row.setAttribute('tabindex', '-1');
        row.focus({ preventScroll: true });
      };
    }
    function panel(step, stream) {
      var key = step + '\u0000' + stream;
      if (!panels[key]) panels[key] = new LogPanel('/dag-runs/' + enc(dagName) + '/' + enc(realId), step, stream);
      return panels[key];
    }
    // full: the run changed, so the graph and the steps table are rebuilt; otherwise (an
    // active run ticking) only the facts and the timeline, so keyboard focus is not lost.
    function render(d, full) {
      var label = runLabel(d);
      var active = isActive(label);
      var started = parseTime(d.startedAt), finished = parseTime(d.finishedAt);
      ctx.title(dagName + ' · ' + human(label));
      replace(top,
        h('h1', null, d.name || dagName, ' ', h('span', { id: 'run-status', 'data-status': label }, badge(label))),
        h('dl', { class: 'facts' },
          h('dt', null, 'Run ID'), h('dd', null, h('code', null, d.dagRunId || runId)),
          d.params ? [h('dt', null, 'Parameters'), h('dd', null, h('code', null, typeof d.params === 'string' ? d.params : JSON.stringify(d.params)))] : null,
          d.queuedAt && parseTime(d.queuedAt) ? [h('dt', null, 'Queued'), h('dd', null, fmtTime(d.queuedAt))] : null,
          h('dt', null, 'Started'), h('dd', null, fmtTime(d.startedAt)),
          h('dt', null, 'Finished'), h('dd', null, fmtTime(d.finishedAt)),
          h('dt', null, 'Duration'), h('dd', null, started !== null ? fmtDur((finished !== null ? finished : Date.now()) - started) + (active ? ' so far' : '') : '—'),
          d.rootDAGRunId && d.rootDAGRunId !== d.dagRunId ? [h('dt', null, 'Parent run'), h('dd', null,
            h('a', { href: '#/runs/' + enc(d.rootDAGRunName) + '/' + enc(d.rootDAGRunId) }, d.rootDAGRunName + ' / ' + d.rootDAGRunId))] : null,
          d.revision ? [h('dt', null, 'Revision'), h('dd', { id: 'run-revision' },
            d.revision.commit ? [h('code', { title: d.revision.commit }, d.revision.commit.slice(0, 12)), d.revision.dirty ? ' (file differed from the commit) · ' : ' · '] : null,
            h('code', { title: d.revision.digest }, String(d.revision.digest).slice(0, 19)))] : null,
          d.error ? [h('dt', null, 'Error'), h('dd', { class: 'err-text' }, d.error)] : null));

      var nodes = d.nodes || [];
      var gNodes = nodes.map(function (n) {
        var st = n.step || {}, lab = nodeLabel(n);
        return { id: st.name, label: st.name, deps: stepDeps(st), status: lab, onActivate: showStep(st.name),
          title: st.name + ': ' + human(lab) + (stepCommand(st) ? ' — ' + stepCommand(st) : '') };
      });
      var hs = handlerSteps(d, true);
      var gHandlers = hs.map(function (x) {
        var lab = nodeLabel(x.value), name = (x.value.step && x.value.step.name) || ('on' + x.kind);
        return { id: name, label: 'on ' + x.kind, status: lab, deps: [], onActivate: showStep(name), title: name + ': ' + human(lab) };
      });
      if (full) replace(graphHost, stepGraph(gNodes, gHandlers, 'step graph of this run, coloured by step status'));

      var now = Date.now();
      var items = nodes.map(function (n) { return { name: (n.step || {}).name, node: n }; })
        .concat(hs.map(function (x) { return { name: (x.value.step && x.value.step.name) || 'on' + x.kind, node: x.value }; }));
      items.forEach(function (it) {
        var f = parseTime(it.node.finishedAt), lab = nodeLabel(it.node);
        it.end = f !== null ? f : (lab === 'running' && parseTime(it.node.startedAt) !== null ? now : null);
      });
      replace(ganttHost, gantt(items, started, finished !== null ? finished : (active ? now : null)));

      if (full) renderSteps(items, nodes);
      Object.keys(panels).forEach(function (k) { if (panels[k].el.open) panels[k].load(); });
      liveEl.textContent = active ? 'live: refreshing while the run is ' + human(label) : '';
    }
    function renderSteps(items, nodes) {
      var tbody = h('tbody');
      items.forEach(function (it) {
        var n = it.node, lab = nodeLabel(n), st = n.step || {};
        var isHandler = nodes.indexOf(n) < 0;
        var out = panel(it.name, 'stdout'), err = panel(it.name, 'stderr');
        if (!err.autoOpened && lab === 'failed') { err.autoOpened = true; err.el.open = true; }
        tbody.appendChild(h('tr', { id: 'step-' + it.name, 'data-step': it.name, 'data-status': lab },
          h('td', null, h('span', { class: 'stepname' }, it.name), isHandler ? h('span', { class: 'muted' }, ' (handler)') : null,
            stepCommand(st) ? h('div', null, h('code', null, stepCommand(st))) : null,
            n.error ? h('div', { class: 'err-text' }, n.error) : null,
            out.el, err.el),
          h('td', null, badge(lab)),
          h('td', { class: 'num', 'data-exit-code': exitCodeOf(n) }, exitCodeOf(n)),
          h('td', { class: 'num hide-sm' }, String(n.retryCount || 0)),
          h('td', { class: 'nowrap hide-sm' }, fmtTime(n.startedAt)),
          h('td', { class: 'num' }, fmtDur(it.end !== null && parseTime(n.startedAt) !== null ? it.end - parseTime(n.startedAt) : null))));
      });
      replace(stepsHost, items.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'steps', class: 'stack' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Step'), h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col' }, 'Exit'), h('th', { scope: 'col', class: 'hide-sm' }, 'Retries'),
          h('th', { scope: 'col', class: 'hide-sm' }, 'Started'), h('th', { scope: 'col' }, 'Duration'))),
        tbody)) : h('p', { class: 'muted' }, 'No steps recorded.'));
    }
    function loadOutputs() {
      return api(runPath.replace(enc(runId), enc(realId)) + '/outputs').then(function (body) {
        var outs = body && body.outputs || {};
        var keys = Object.keys(outs);
        replace(outHost, keys.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'outputs' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
          h('tbody', null, keys.map(function (k) {
            var v = outs[k];
            return h('tr', null, h('td', null, h('code', null, k)), h('td', null, h('code', null, typeof v === 'string' ? v : JSON.stringify(v))));
          })))) : h('p', { class: 'muted' }, 'No outputs.'));
      }, function (err) {
        replace(outHost, err.status === 404 ? h('p', { class: 'muted' }, 'No outputs.') : errorBox(err, 'Could not load the outputs'));
      });
    }
    // The spec this run used against the DAG file now: "changed since this run", with the diff.
    function loadSpecDiff() {
      var used = api('/dag-runs/' + enc(dagName) + '/' + enc(realId) + '/spec');
      var now = api('/dags/' + enc(dagName) + '/spec').then(null, function (err) { return err.status === 404 ? null : Promise.reject(err); });
      return Promise.all([used, now]).then(function (both) {
        var before = both[0] && both[0].spec || '', after = both[1] ? both[1].spec || '' : null;
        var lines = after === null ? null : lineDiff(before, after);
        var same = after === before;
        replace(specHost,
          h('p', { id: 'spec-changed', 'data-changed': same ? 'no' : 'yes' },
            after === null ? 'The DAG file is gone.' : same ? 'The DAG file is unchanged since this run.' : 'The DAG file has changed since this run:'),
          lines && !same ? h('pre', { class: 'logtext', id: 'spec-diff', 'aria-label': 'diff from the spec of this run to the current file' },
            lines.map(function (l) { return h('div', { class: 'diff-' + l[0] }, (l[0] === 'del' ? '- ' : l[0] === 'add' ? '+ ' : '  ') + l[1]); })) : null,
          h('details', null, h('summary', null, 'the spec this run used'), h('pre', { class: 'logtext' }, before)));
      }, function (err) { replace(specHost, errorBox(err, 'Could not load the spec')); });
    }
    function renderRunLog() {
      if (!runLog) {
        runLog = { lines: LOG_TAIL, pre: h('pre', { class: 'logtext', tabindex: 0, 'aria-label': 'run log' }) };
        runLog.el = h('details', { class: 'log' }, h('summary', null, 'log of the run'), runLog.pre);
        runLog.el.addEventListener('toggle', function () { if (runLog.el.open) loadRunLog(); });
        replace(logHost, runLog.el);
      }
    }
    function loadRunLog() {
      return api('/dag-runs/' + enc(dagName) + '/' + enc(realId) + '/log', { tail: runLog.lines }).then(function (body) {
        runLog.pre.textContent = body && body.content || '(empty)';
      }, function (err) { runLog.pre.textContent = 'Could not load the run log: ' + err.message; });
    }
    function load() {
      return api(runPath).then(function (body) {
        if (!ctx.alive()) return 0;
        var d = body && (body.dagRunDetails || body.dagRun) || {};
        if (d.dagRunId && realId !== d.dagRunId) { realId = d.dagRunId; panels = {}; }
        var json = JSON.stringify(d);
        var label = runLabel(d);
        var changed = json !== lastJson;
        lastJson = json;
        if (changed || isActive(label)) render(d, changed);
        renderRunLog();
        if (runLog.el.open) loadRunLog();
        if (!specLoaded) { specLoaded = true; loadSpecDiff(); }
        if (changed && (!isActive(label) || !finalSeen)) loadOutputs();
        if (!isActive(label)) { finalSeen = true; liveEl.textContent = ''; return 0; }
        delay = changed ? 1000 : Math.min(delay * 1.5, 5000);
        return delay;
      }, function (err) {
        if (!ctx.alive()) return 0;
        if (!lastJson) { replace(top, h('h1', null, dagName), errorBox(err, 'Could not load run ' + runId)); return err.status === 404 ? 0 : 10000; }
        liveEl.textContent = 'connection problem, retrying…';
        delay = Math.min(delay * 2, 30000);
        return delay;
      });
    }
    return load().then(function (next) { focusMain(); if (next) ctx.poll(load, next); });
  }

  // A line diff (longest common subsequence): [['same'|'del'|'add', line], …]. DAG files are
  // small, so the quadratic table is fine.
  function lineDiff(a, b) {
    var x = a.split('\n'), y = b.split('\n'), n = x.length, m = y.length, i, j;
    var t = [];
    for (i = 0; i <= n; i++) { t.push(new Array(m + 1).fill(0)); }
    for (i = n - 1; i >= 0; i--) for (j = m - 1; j >= 0; j--) t[i][j] = x[i] === y[j] ? t[i + 1][j + 1] + 1 : Math.max(t[i + 1][j], t[i][j + 1]);
    var out = [];
    i = 0; j = 0;
    while (i < n && j < m) {
      if (x[i] === y[j]) { out.push(['same', x[i]]); i++; j++; }
      else if (t[i + 1][j] >= t[i][j + 1]) { out.push(['del', x[i]]); i++; }
      else { out.push(['add', y[j]]); j++; }
    }
    for (; i < n; i++) out.push(['del', x[i]]);
    for (; j < m; j++) out.push(['add', y[j]]);
    return out;
  }

  // ---- page: controller --------------------------------------------------------------------
  function runLink(r) {
    return h('a', { href: '#/runs/' + enc(r.name) + '/' + enc(r.dagRunId) }, r.name, ' ', h('span', { class: 'mono muted' }, String(r.dagRunId).slice(0, 13)));
  }
  function genericTable(rows, id) {
    var cols = [];
    rows.forEach(function (r) { Object.keys(r).forEach(function (k) { if (cols.indexOf(k) < 0) cols.push(k); }); });
    return h('div', { class: 'table-wrap' }, h('table', { id: id },
      h('thead', null, h('tr', null, cols.map(function (c) { return h('th', { scope: 'col' }, c); }))),
      h('tbody', null, rows.map(function (r) {
        return h('tr', null, cols.map(function (c) {
          var v = r[c];
          if (v === undefined || v === null) return h('td', null, '');
          if (/At$/.test(c) && typeof v === 'string' && parseTime(v) !== null) return h('td', { class: 'nowrap' }, fmtTime(v));
          if (c === 'status' || c === 'statusLabel') return h('td', null, typeof v === 'string' ? badge(v) : String(v));
          return h('td', null, typeof v === 'object' ? h('code', null, JSON.stringify(v)) : String(v));
        }));
      }))));
  }
  function pageController(ctx) {
    ctx.title('Controller');
    var planHost = h('div'), lostHost = h('div'), queueHost = h('div'), schedHost = h('div'), syncHost = h('div'), workerHost = h('div');
    replace(main, h('h1', null, 'Controller'),
      syncHost,
      h('h2', null, 'Plan: what the loop will do next, and why'), planHost,
      h('h2', null, 'Lost runs'), lostHost,
      h('h2', null, 'Queues'), queueHost,
      h('h2', null, 'Scheduler instances'), schedHost,
      h('h2', null, 'Workers'), workerHost);
    // The plan document is `dagloop plan --json`: {now, actions: [{action, dag_name, run_id,
    // reason, ...}], queued, running, invalid, schedules}. Unknown keys still show, generically.
    function actionsTable(actions, id) {
      var main3 = ['action', 'dag_name', 'run_id', 'reason'];
      return h('div', { class: 'table-wrap' }, h('table', { id: id },
        h('thead', null, h('tr', null, ['Action', 'DAG', 'Run', 'Why', 'Details'].map(function (c) {
          return h('th', { scope: 'col' }, c);
        }))),
        h('tbody', null, actions.map(function (a) {
          var dag = a.dag_name || a.file_name || a.dag || '';
          var rest = Object.keys(a).filter(function (k) { return main3.indexOf(k) < 0 && a[k] !== null && a[k] !== '' && k !== 'file_name'; });
          return h('tr', { 'data-action': a.action || a.kind || '' },
            h('td', null, h('strong', null, a.action || a.kind || '?')),
            h('td', null, dag ? h('a', { href: '#/dags/' + enc(dag) }, dag) : ''),
            h('td', null, a.run_id && dag ? h('a', { class: 'mono', href: '#/runs/' + enc(dag) + '/' + enc(a.run_id) }, a.run_id) : ''),
            h('td', null, a.reason || ''),
            h('td', { class: 'muted' }, rest.map(function (k) {
              var v = a[k];
              return h('div', null, k + ': ', typeof v === 'object' ? JSON.stringify(v) : String(v));
            })));
        }))));
    }
    var PLAN_PARTS = { queued: 'Queued runs', running: 'Running runs', invalid: 'Invalid DAG files', schedules: 'Next scheduled times' };
    function loadPlan() {
      return api('/plan').then(function (body) {
        body = body || {};
        var actions = Array.isArray(body.actions) ? body.actions : [];
        var facts = Object.keys(body).filter(function (k) { return typeof body[k] !== 'object'; });
        var parts = Object.keys(body).filter(function (k) { return k !== 'actions' && k !== 'lostRuns' && Array.isArray(body[k]) && body[k].length; });
        replace(planHost,
          facts.length ? h('dl', { class: 'facts' }, facts.map(function (k) {
            var v = body[k];
            return [h('dt', null, k === 'now' ? 'Computed at' : k), h('dd', null, typeof v === 'string' && parseTime(v) !== null ? fmtTime(v) : String(v))];
          })) : null,
          actions.length ? actionsTable(actions, 'plan-actions') : h('p', { id: 'plan-empty' }, 'Nothing to do: every DAG is where it should be.'),
          parts.map(function (k) {
            var rows = body[k].map(function (r) { return typeof r === 'object' && r !== null ? r : { value: r }; });
            return [h('h3', null, PLAN_PARTS[k] || k), genericTable(rows, 'plan-' + k)];
          }),
          h('details', null, h('summary', null, 'the plan as JSON'), h('pre', { class: 'json' }, JSON.stringify(body, null, 2))));
        var lost = Array.isArray(body.lostRuns) ? body.lostRuns : actions.filter(function (a) {
          return /lost/i.test(String(a.action || a.kind || ''));
        });
        replace(lostHost, lost.length ? actionsTable(lost, 'lost-runs') : h('p', { class: 'muted' }, 'No lost runs.'));
      }, function (err) {
        replace(planHost, errorBox(err, 'Could not load the plan'));
        replace(lostHost, h('p', { class: 'muted' }, 'Unknown (the plan is unavailable).'));
      });
    }
    function loadQueues() {
      return api('/queues').then(function (body) {
        var qs = body && body.queues || [], sum = body && body.summary;
        replace(queueHost,
          sum ? h('p', { class: 'muted' }, sum.totalRunning + ' running, ' + sum.totalQueued + ' queued in ' + sum.totalQueues +
            ' queues' + (sum.totalCapacity ? ' (capacity ' + sum.totalCapacity + ', ' + Math.round(sum.utilizationPercentage || 0) + '% used)' : '')) : null,
          qs.length ? h('div', { class: 'cards' }, qs.map(function (q) {
            var running = q.running || [], queued = q.queued || [];
            return h('section', { class: 'card', 'aria-label': 'queue ' + q.name },
              h('h3', null, q.name), h('div', { class: 'muted' }, (q.type || '') + (q.maxConcurrency ? ' · max ' + q.maxConcurrency : '')),
              h('div', null, h('strong', null, 'Running (' + running.length + ')')),
              running.length ? h('ul', null, running.map(function (r) { return h('li', null, runLink(r)); })) : h('div', { class: 'muted' }, 'none'),
              h('div', null, h('strong', null, 'Queued (' + queued.length + ')')),
              queued.length ? h('ol', null, queued.map(function (r) { return h('li', null, runLink(r)); })) : h('div', { class: 'muted' }, 'none'));
          })) : h('p', { class: 'muted' }, 'No queues: nothing is running or queued.'));
      }, function (err) { replace(queueHost, errorBox(err, 'Could not load the queues')); });
    }
    function loadSched() {
      return api('/services/scheduler').then(function (body) {
        var list = body && body.schedulers || [];
        replace(schedHost, list.length ? genericTable(list, 'schedulers') : h('p', { class: 'warn-box' }, 'No scheduler is registered: scheduled runs will not start.'));
      }, function (err) { replace(schedHost, errorBox(err, 'Could not load the scheduler instances')); });
    }
    // GET /sync/status (Dagu's SyncStatusResponse): a card only when git_sync is enabled.
    function loadSync() {
      return api('/sync/status').then(function (b) {
        if (!b || !b.enabled) { replace(syncHost); return; }
        var failed = b.lastSyncStatus === 'error';
        replace(syncHost, h('section', { class: 'card', id: 'git-sync', 'aria-label': 'git sync' },
          h('h2', null, 'Git sync ', badge(failed ? 'failed' : (b.lastSyncStatus === 'synced' ? 'succeeded' : 'not_started'))),
          h('p', { class: failed ? 'warn-box' : 'muted' }, b.summary),
          h('dl', { class: 'facts' },
            h('dt', null, 'Repository'), h('dd', null, h('code', null, b.repository), ' @ ', h('code', null, b.branch)),
            h('dt', null, 'Commit'), h('dd', null, b.lastSyncCommit ? h('code', { title: b.lastSyncCommit }, b.lastSyncCommit.slice(0, 12)) : '—'),
            h('dt', null, 'Last sync'), h('dd', null, b.lastSyncAt ? fmtTime(b.lastSyncAt) : '—'),
            b.lastError ? [h('dt', null, 'Error'), h('dd', { class: 'err-text' }, b.lastError)] : null),
          (b.items || []).length ? genericTable(b.items, 'sync-items') : null));
      }, function (err) { replace(syncHost, errorBox(err, 'Could not load the git sync status')); });
    }
    // GET /workers is Dagu's WorkersListResponse: one row per worker, its runs linked; health
    // borrows the run statuses' colours.
    var HEALTH_COLOUR = { healthy: 'succeeded', warning: 'queued', unhealthy: 'failed' };
    function workersTable(list) {
      return h('div', { class: 'table-wrap' }, h('table', { id: 'workers' },
        h('thead', null, h('tr', null, ['Worker', 'Host', 'Labels', 'Health', 'Last heartbeat', 'Busy', 'Running'].map(function (c) {
          return h('th', { scope: 'col' }, c);
        }))),
        h('tbody', null, list.map(function (w) {
          var labels = Object.keys(w.labels || {}).map(function (k) { return k + '=' + w.labels[k]; }).join(', ');
          var tasks = w.runningTasks || [];
          return h('tr', { 'data-worker': w.id },
            h('td', { class: 'mono' }, w.id),
            h('td', null, w.host || ''),
            h('td', { class: 'mono' }, labels || h('span', { class: 'muted' }, 'none')),
            h('td', null, h('span', { class: 'badge s-' + (HEALTH_COLOUR[w.healthStatus] || 'failed') }, w.healthStatus || 'unknown')),
            h('td', { class: 'nowrap' }, parseTime(w.lastHeartbeatAt) !== null ? fmtTime(w.lastHeartbeatAt) : ''),
            h('td', null, (w.busyPollers || 0) + ' / ' + (w.totalPollers || 0)),
            h('td', null, tasks.length ? h('ul', null, tasks.map(function (t) {
              return h('li', null, runLink({ name: t.dagName, dagRunId: t.dagRunId }));
            })) : h('span', { class: 'muted' }, 'idle')));
        }))));
    }
    function loadWorkers() {
      return api('/workers').then(function (body) {
        var list = body && body.workers || [];
        replace(workerHost, list.length ? workersTable(list) : h('p', { class: 'muted' }, 'No workers: runs start on the controller\'s host.'));
      }, function (err) { replace(workerHost, errorBox(err, 'Could not load the workers')); });
    }
    function load() {
      return Promise.all([loadSync(), loadPlan(), loadQueues(), loadSched(), loadWorkers()]).then(function () { return ctx.alive() ? 5000 : 0; });
    }
    return load().then(function (next) { focusMain(); ctx.poll(load, next); });
  }

  // ---- start -------------------------------------------------------------------------------
  window.dagloop = { cronToWords: cronToWords, fmtDur: fmtDur, lineDiff: lineDiff };
  window.addEventListener('hashchange', route);
  document.getElementById('signout').addEventListener('click', signOut);
  document.getElementById('signout').hidden = !savedToken();
  document.querySelector('.skip').addEventListener('click', function (ev) { ev.preventDefault(); focusMain(); });
  api('/health').then(function (b) {
    if (b && b.version) document.getElementById('version').textContent = 'dagloop ' + b.version;
  }, function () { /* the footer simply stays empty */ });
  route();
})();
