// leanproxy's dashboard. Everything comes from the admin API on this origin:
// the request log (redacted as the API redacts it), the live event stream,
// reconnects, faults, webhooks and the embedded Mockbank's controls. The
// view and its filters are in the URL (#/exchanges?method=POST&q=…).
(function () {
  'use strict';

  var ROW = 28;            // px per exchange row (the list is virtualised)
  var KEEP = 10000;        // exchanges kept in the page, newest first
  var PRESETS = [
    ['Reconnect required', 'reconnect path=/data'],
    ['Consent expired', 'lean_error=CONSENT_EXPIRED path=/data'],
    ['Rate limit', 'rate_limit=5/1m'],
    ['Bank maintenance', 'failed=BANK_MAINTENANCE path=/data'],
    ['500', 'status=500'],
    ['Slow bank', 'delay=2s..5s path=/data']
  ];

  var state = {
    token: sessionStorage.getItem('leanproxy-admin-token') || '',
    info: null,
    exchanges: [],
    byId: {},
    textHits: null,        // ids matching the full-text search, or null
    selected: null,
    compare: [],
    faults: []
  };
  var main = document.getElementById('main');
  var live = document.getElementById('live');

  // ------------------------------------------------------------ helpers

  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (k === 'on') {
        Object.keys(v).forEach(function (ev) { node.addEventListener(ev, v[ev]); });
      } else if (k === 'text') {
        node.textContent = v;
      } else if (v !== false && v !== null && v !== undefined) {
        node.setAttribute(k, v === true ? '' : v);
      }
    });
    function add(c) {
      if (c === null || c === undefined || c === false) { return; }
      if (Array.isArray(c)) { c.forEach(add); return; }
      node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    for (var i = 2; i < arguments.length; i++) { add(arguments[i]); }
    return node;
  }

  function toast(text) {
    var t = document.getElementById('toast');
    t.textContent = text;
    t.classList.add('shown');
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { t.classList.remove('shown'); }, 2500);
  }

  function headers(extra) {
    var h = Object.assign({}, extra || {});
    if (state.token) { h.authorization = 'Bearer ' + state.token; }
    return h;
  }

  // The admin API. Rejects with the API's own message.
  function api(method, path, body) {
    var init = { method: method, headers: headers(body !== undefined ? { 'content-type': 'application/json' } : {}) };
    if (body !== undefined) { init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (r) {
      if (r.status === 401) { login(); throw new Error('the admin API needs its token'); }
      return r.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        if (!r.ok) {
          var err = new Error((json && json.message) || ('HTTP ' + r.status));
          err.body = json;
          throw err;
        }
        return json;
      });
    });
  }

  function route() {
    var hash = location.hash.replace(/^#\/?/, '');
    var at = hash.indexOf('?');
    return {
      view: (at < 0 ? hash : hash.slice(0, at)) || 'overview',
      params: new URLSearchParams(at < 0 ? '' : hash.slice(at + 1))
    };
  }

  function go(view, params) {
    var q = params && params.toString();
    location.hash = '#/' + view + (q ? '?' + q : '');
  }

  function age(iso) {
    var s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) { return Math.round(s) + 's'; }
    if (s < 3600) { return Math.round(s / 60) + 'm'; }
    if (s < 86400) { return Math.round(s / 3600) + 'h'; }
    return Math.round(s / 86400) + 'd';
  }

  function size(n) {
    if (n < 1024) { return n + ' B'; }
    if (n < 1048576) { return (n / 1024).toFixed(1) + ' KiB'; }
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  function short(id) { return id ? String(id).slice(0, 8) : ''; }

  function heading(text) {
    var h = el('h1', { tabindex: '-1', text: text });
    return h;
  }

  function show(title) {
    var nodes = Array.prototype.slice.call(arguments, 1);
    main.replaceChildren.apply(main, [heading(title)].concat(nodes));
  }

  // ------------------------------------------------------------ login

  function login() {
    if (document.getElementById('login')) { return; }
    var input = el('input', { type: 'password', id: 'token', autocomplete: 'current-password', required: true });
    var error = el('p', { class: 'error', role: 'alert' });
    var form = el('form', {
      class: 'login panel', id: 'login', on: {
        submit: function (e) {
          e.preventDefault();
          state.token = input.value;
          api('GET', '/api/info').then(function (info) {
            sessionStorage.setItem('leanproxy-admin-token', state.token);
            state.info = info;
            start();
          }).catch(function (err) { error.textContent = err.message; });
        }
      }
    },
    el('h1', { text: 'Admin token' }),
    el('p', { class: 'muted', text: 'This admin listener needs its token (admin.token). It is kept for this browser tab only.' }),
    el('label', { for: 'token', text: 'Token' }), input, error,
    el('button', { type: 'submit', class: 'primary', text: 'Open the dashboard' }));
    main.replaceChildren(form);
    input.focus();
  }

  // ------------------------------------------------------------ live events

  // Server-sent events read with fetch (EventSource cannot send the token);
  // reconnects by itself when the proxy restarts.
  function listen() {
    var backoff = 500;
    function connect() {
      fetch('/api/events', { headers: headers() }).then(function (r) {
        if (!r.ok || !r.body) { throw new Error('HTTP ' + r.status); }
        live.textContent = 'live';
        live.className = 'live on';
        backoff = 500;
        loadExchanges();
        var reader = r.body.getReader();
        var decoder = new TextDecoder();
        var buffer = '';
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { throw new Error('the stream ended'); }
            buffer += decoder.decode(chunk.value, { stream: true });
            var at;
            while ((at = buffer.indexOf('\n\n')) >= 0) {
              var block = buffer.slice(0, at);
              buffer = buffer.slice(at + 2);
              var data = block.split('\n').filter(function (l) { return l.indexOf('data: ') === 0; })
                .map(function (l) { return l.slice(6); }).join('\n');
              if (data) {
                try { onEvent(JSON.parse(data)); } catch (e) { /* a partial or foreign line */ }
              }
            }
            return pump();
          });
        }
        return pump();
      }).catch(function () {
        live.textContent = 'reconnecting…';
        live.className = 'live off';
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 5000);
      });
    }
    connect();
  }

  var redraw = null;
  function soon(fn) {
    if (redraw) { return; }
    redraw = requestAnimationFrame(function () { redraw = null; fn(); });
  }

  function onEvent(ev) {
    var view = route().view;
    if (ev.kind === 'exchange') {
      if (!state.byId[ev.id]) {
        state.exchanges.unshift(ev);
        state.byId[ev.id] = ev;
        if (state.exchanges.length > KEEP) { delete state.byId[state.exchanges.pop().id]; }
      }
      if (view === 'exchanges') { soon(refreshList); }
      if (view === 'overview') { soon(render); }
    } else if (ev.kind === 'reconnect_new' || ev.kind === 'reconnect_resolved') {
      if (view === 'reconnects' || view === 'overview') { soon(render); }
    } else if (ev.kind === 'fault_hit') {
      if (view === 'faults') { soon(render); }
    } else if (ev.kind === 'webhook') {
      if (view === 'webhooks' || view === 'overview') { soon(render); }
    }
  }

  function loadExchanges() {
    return api('GET', '/api/requests?view=summary&limit=' + KEEP).then(function (answer) {
      state.exchanges = answer.requests;
      state.byId = {};
      state.exchanges.forEach(function (x) { state.byId[x.id] = x; });
      if (route().view === 'exchanges') { refreshList(); } else if (route().view === 'overview') { render(); }
    });
  }

  // ------------------------------------------------------------ exchanges

  var FILTERS = ['method', 'path', 'status_class', 'lean_status', 'entity_id', 'fault', 'route', 'q'];

  function passes(x, p) {
    var m = p.get('method'), path = p.get('path'), sc = p.get('status_class'), ls = p.get('lean_status'),
      ent = p.get('entity_id'), fault = p.get('fault'), route = p.get('route');
    if (route && (route === 'default' ? x.route : x.route !== route)) { return false; }
    if (m && x.method !== m) { return false; }
    if (path && x.path.indexOf(path) !== 0) { return false; }
    if (sc && String(Math.floor(x.status / 100)) !== sc.charAt(0)) { return false; }
    if (ls && (x.lean_status || '') !== ls) { return false; }
    if (ent && (x.entity_id || '') !== ent) { return false; }
    if (fault === 'any' && !x.fault) { return false; }
    if (fault === 'none' && x.fault) { return false; }
    if (fault && fault !== 'any' && fault !== 'none' && x.fault !== fault) { return false; }
    if (state.textHits && !state.textHits[x.id]) { return false; }
    return true;
  }

  var list = { rows: [], scroller: null, spacer: null, count: null };

  function refreshList() {
    if (!list.scroller) { return; }
    var p = route().params;
    list.rows = state.exchanges.filter(function (x) { return passes(x, p); });
    list.count.textContent = list.rows.length + ' of ' + state.exchanges.length + ' exchanges';
    list.spacer.style.height = (list.rows.length * ROW) + 'px';
    paint();
  }

  function paint() {
    var top = list.scroller.scrollTop;
    var first = Math.max(0, Math.floor(top / ROW) - 10);
    var last = Math.min(list.rows.length, Math.ceil((top + list.scroller.clientHeight) / ROW) + 10);
    var nodes = [];
    for (var i = first; i < last; i++) { nodes.push(rowOf(list.rows[i], i)); }
    list.spacer.replaceChildren.apply(list.spacer, nodes);
  }

  function rowOf(x, i) {
    var checked = state.compare.indexOf(x.id) >= 0;
    var row = el('div', {
      class: 'row', role: 'row', tabindex: '0', 'data-id': x.id, 'aria-selected': String(state.selected === x.id),
      on: {
        click: function (e) { if (e.target.type !== 'checkbox') { select(x.id); } },
        keydown: function (e) {
          if (e.key === 'Enter') { select(x.id); }
          if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
            e.preventDefault();
            var next = list.rows[i + (e.key === 'ArrowDown' ? 1 : -1)];
            if (next) { select(next.id, true); }
          }
        }
      }
    },
    el('span', null, el('input', {
      type: 'checkbox', 'aria-label': 'Compare', checked: checked, on: {
        change: function () {
          var at = state.compare.indexOf(x.id);
          if (at >= 0) { state.compare.splice(at, 1); } else { state.compare.push(x.id); }
          if (state.compare.length > 2) { state.compare.shift(); }
          paint();
          compareButton();
        }
      }
    })),
    el('span', { class: 'mono', text: x.started_at.slice(11, 23) }),
    el('span', { text: x.method }),
    el('span', { class: 'mono', title: x.path, text: x.path }),
    el('span', { class: 's' + Math.floor(x.status / 100), text: String(x.status) }),
    el('span', null, x.lean_status ? el('span', { class: 'tag' + (/RECONNECT|FAILED/.test(x.lean_status) ? ' bad' : x.lean_status === 'OK' ? ' ok' : ' warn'), text: x.lean_status }) : ''),
    el('span', { class: 'mono', title: x.entity_id || '', text: short(x.entity_id) }),
    el('span', null, x.fault ? el('span', { class: 'tag warn', text: x.fault }) : ''),
    el('span', { class: 'mono', text: x.upstream_ms == null ? '' : x.upstream_ms.toFixed(1) }),
    el('span', { class: 'mono', text: x.duration_ms.toFixed(1) }),
    el('span', { class: 'mono', text: size(x.bytes_out) }));
    row.style.top = (i * ROW) + 'px';
    return row;
  }

  function compareButton() {
    var b = document.getElementById('compare');
    if (b) { b.disabled = state.compare.length !== 2; }
  }

  function select(id, focus) {
    state.selected = id;
    var p = route().params;
    p.set('id', id);
    history.replaceState(null, '', '#/exchanges?' + p.toString());
    paint();
    if (focus) {
      var at = list.rows.findIndex(function (x) { return x.id === id; });
      if (at * ROW < list.scroller.scrollTop || (at + 1) * ROW > list.scroller.scrollTop + list.scroller.clientHeight) {
        list.scroller.scrollTop = Math.max(0, at * ROW - list.scroller.clientHeight / 2);
        paint();
      }
      var node = list.spacer.querySelector('[data-id="' + id + '"]');
      if (node) { node.focus(); }
    }
    detail(id);
  }

  function filterQuery(p) {
    var q = new URLSearchParams();
    FILTERS.forEach(function (k) { if (p.get(k)) { q.set(k, p.get(k)); } });
    return q;
  }

  function exchangesView() {
    var p = route().params;
    var bar = el('form', { class: 'bar', role: 'search', on: { submit: function (e) { e.preventDefault(); } } });
    function field(name, label, node) {
      node.id = 'f-' + name;
      node.value = p.get(name) || '';
      node.addEventListener(node.tagName === 'SELECT' ? 'change' : 'input', function () {
        clearTimeout(field.timer);
        field.timer = setTimeout(function () {
          var next = route().params;
          if (node.value) { next.set(name, node.value); } else { next.delete(name); }
          next.delete('id');
          history.replaceState(null, '', '#/exchanges?' + next.toString());
          if (name === 'q') { search(next.get('q')); } else { refreshList(); }
          harLink.href = '/api/requests.har?' + filterQuery(route().params).toString();
        }, name === 'q' ? 250 : 0);
      });
      bar.appendChild(el('label', { for: node.id }, label, node));
    }
    function select2(options) {
      var s = el('select');
      options.forEach(function (o) { s.appendChild(el('option', { value: o[0], text: o[1] })); });
      return s;
    }
    field('method', 'Method', select2([['', 'any'], ['GET', 'GET'], ['POST', 'POST'], ['PUT', 'PUT'], ['PATCH', 'PATCH'], ['DELETE', 'DELETE']]));
    field('path', 'Path starts with', el('input', { type: 'text', placeholder: '/data/v2' }));
    field('status_class', 'Status', select2([['', 'any'], ['2', '2xx'], ['3', '3xx'], ['4', '4xx'], ['5', '5xx']]));
    field('lean_status', 'Lean status', select2([['', 'any'], ['OK', 'OK'], ['RECONNECT_REQUIRED', 'RECONNECT_REQUIRED'], ['PENDING', 'PENDING'], ['FAILED', 'FAILED']]));
    field('entity_id', 'Entity', el('input', { type: 'text', placeholder: 'entity id' }));
    var faults = select2([['', 'any or none'], ['any', 'with a fault'], ['none', 'without']]);
    state.faults.forEach(function (f) { faults.appendChild(el('option', { value: f.id, text: 'rule ' + f.id })); });
    field('fault', 'Fault', faults);
    field('route', 'Route', el('input', { type: 'text', placeholder: 'name or default', size: 10 }));
    field('q', 'Search (bodies too)', el('input', { type: 'search', placeholder: 'text' }));
    var harLink = el('a', { href: '/api/requests.har?' + filterQuery(p).toString(), download: 'leanproxy.har', text: 'HAR of these' });
    var compare = el('button', { type: 'button', id: 'compare', disabled: true, text: 'Diff the two ticked', on: { click: function () { diffView(state.compare[0], state.compare[1]); } } });
    list.count = el('span', { class: 'muted', role: 'status' });
    var tools = el('div', { class: 'bar' }, list.count, harLink, el('a', { href: '/api/requests.har', download: 'leanproxy-all.har', text: 'HAR of all' }), compare);
    var head = el('div', { class: 'table-head', role: 'row' },
      el('span', { 'aria-label': 'compare' }), el('span', { text: 'time' }), el('span', { text: 'method' }),
      el('span', { text: 'path' }), el('span', { text: 'status' }), el('span', { text: 'Lean status' }),
      el('span', { text: 'entity' }), el('span', { text: 'fault' }), el('span', { text: 'upstream' }),
      el('span', { text: 'total ms' }), el('span', { text: 'size' }));
    list.spacer = el('div', { style: 'position: relative' });
    list.scroller = el('div', { class: 'scroller', role: 'rowgroup', 'aria-label': 'Exchanges, newest first', on: { scroll: function () { soon(paint); } } }, list.spacer);
    var side = el('section', { class: 'panel detail', id: 'detail', 'aria-label': 'Exchange detail' }, el('p', { class: 'muted', text: 'Select an exchange.' }));
    show('Exchanges', bar, tools, el('div', { class: 'split' }, el('div', { class: 'panel list-box', role: 'table', 'aria-label': 'Exchanges' }, head, list.scroller), side));
    compareButton();
    if (p.get('q')) { search(p.get('q')); } else { state.textHits = null; refreshList(); }
    if (p.get('id')) { state.selected = p.get('id'); detail(p.get('id')); }
  }

  // Full text over the redacted bodies is the API's (the list has no bodies).
  function search(q) {
    if (!q) { state.textHits = null; refreshList(); return; }
    api('GET', '/api/requests?view=summary&limit=' + KEEP + '&q=' + encodeURIComponent(q)).then(function (a) {
      state.textHits = {};
      a.requests.forEach(function (x) { state.textHits[x.id] = true; });
      refreshList();
    });
  }

  // A JSON value, pretty and foldable.
  function jsonTree(value, key) {
    var label = key === undefined ? '' : key + ': ';
    if (value && typeof value === 'object') {
      var entries = Array.isArray(value) ? value.map(function (v, i) { return [i, v]; }) : Object.keys(value).map(function (k) { return [k, value[k]]; });
      var d = el('details', { class: 'json', open: true }, el('summary', null, el('span', { class: 'jk', text: label }), Array.isArray(value) ? '[' + entries.length + ']' : '{' + entries.length + '}'));
      entries.forEach(function (e) { d.appendChild(jsonTree(e[1], e[0])); });
      return d;
    }
    return el('div', { class: 'jv' }, el('span', { class: 'jk', text: label }), JSON.stringify(value));
  }

  function bodyOf(capture) {
    if (!capture) { return el('p', { class: 'muted', text: 'no body' }); }
    if (capture.text == null) { return el('p', { class: 'muted', text: capture.note || 'not shown' }); }
    try { return jsonTree(JSON.parse(capture.text)); } catch (e) { return el('pre', { text: capture.text }); }
  }

  function kv(pairs) {
    var t = el('table', { class: 'kv' });
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === '') { return; }
      t.appendChild(el('tr', null, el('td', { text: p[0] }), el('td', { class: 'mono' }, p[1] instanceof Node ? p[1] : String(p[1]))));
    });
    return t;
  }

  var SKIP_CURL = ['host', 'content-length', 'connection', 'transfer-encoding', 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'];

  function quote(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }

  // The request, aimed at the proxy, without what was redacted (the proxy
  // adds the credentials itself).
  function curlOf(r) {
    var base = (state.info && state.info.proxy) || '';
    var parts = ['curl', '-sS', '-X', r.method, quote(base + r.path + (r.query ? '?' + r.query : ''))];
    (r.request_headers || []).forEach(function (h) {
      if (SKIP_CURL.indexOf(h[0].toLowerCase()) >= 0 || h[1] === '[redacted]') { return; }
      parts.push('-H', quote(h[0] + ': ' + h[1]));
    });
    if (r.request_body && r.request_body.text) { parts.push('--data-raw', quote(r.request_body.text)); }
    return parts.join(' ');
  }

  function detail(id) {
    var side = document.getElementById('detail');
    if (!side) { return; }
    api('GET', '/api/requests/' + encodeURIComponent(id)).then(function (r) {
      var curl = curlOf(r);
      var actions = el('div', { class: 'bar' },
        el('button', {
          type: 'button', id: 'copy-curl', text: 'Copy as cURL', on: {
            click: function () {
              var done = function () { toast('cURL copied'); };
              (navigator.clipboard ? navigator.clipboard.writeText(curl) : Promise.reject()).then(done, function () { toast('select the command below to copy it'); });
              document.getElementById('curl').hidden = false;
            }
          }
        }),
        el('a', { href: '/api/requests.har?id=' + encodeURIComponent(r.id), download: 'exchange-' + short(r.id) + '.har', text: 'HAR' }),
        el('button', { type: 'button', id: 'replay', text: 'Replay…', on: { click: function () { replayEditor(r); } } }));
      var links = [];
      if (r.entity_id) { links.push(el('a', { href: '#/reconnects?entity_id=' + encodeURIComponent(r.entity_id), text: 'reconnect record' })); }
      if (r.fault) { links.push(el('a', { href: '#/faults', text: 'fault rule ' + r.fault })); }
      var replayOf = (r.request_headers || []).filter(function (h) { return h[0] === 'x-leanproxy-replay-of'; })[0];
      side.replaceChildren(
        el('h2', { text: r.method + ' ' + r.path }),
        actions,
        el('pre', { id: 'curl', hidden: true, text: curl }),
        kv([['request id', r.id], ['started', r.started_at], ['status', r.status], ['Lean status', r.lean_status],
          ['entity', r.entity_id], ['reconnect id', r.reconnect_id], ['fault', r.fault], ['route', r.route], ['replay of', replayOf && replayOf[1]],
          ['lean-correlation-id', r.lean_correlation_id], ['upstream ms', r.upstream_ms], ['total ms', r.duration_ms],
          ['bytes in / out', r.bytes_in + ' / ' + r.bytes_out], ['failure', r.upstream_error], ['query', r.query]]),
        links.length ? el('p', null, links[0], links[1] ? ' · ' : '', links[1] || '') : null,
        el('h2', { text: 'Request headers' }), kv(r.request_headers || []),
        el('h2', { text: 'Request body' }), bodyOf(r.request_body),
        el('h2', { text: 'Answer headers' }), kv(r.response_headers || []),
        el('h2', { text: 'Answer body' }), bodyOf(r.response_body));
    }).catch(function (e) {
      side.replaceChildren(el('p', { class: 'error', text: e.message }));
    });
  }

  function replayEditor(r) {
    var side = document.getElementById('detail');
    var method = el('input', { type: 'text', id: 'replay-method', value: r.method, size: 7 });
    var path = el('input', { type: 'text', id: 'replay-path', value: r.path + (r.query ? '?' + r.query : ''), size: 50 });
    var hs = (r.request_headers || []).filter(function (h) {
      return SKIP_CURL.indexOf(h[0].toLowerCase()) < 0 && h[1] !== '[redacted]';
    }).map(function (h) { return h[0] + ': ' + h[1]; }).join('\n');
    var hText = el('textarea', { id: 'replay-headers', rows: 5 });
    hText.value = hs;
    var bText = el('textarea', { id: 'replay-body', rows: 10 });
    bText.value = r.request_body && r.request_body.text ? r.request_body.text : '';
    var error = el('p', { class: 'error', role: 'alert' });
    var form = el('form', {
      on: {
        submit: function (e) {
          e.preventDefault();
          var headersObj = {};
          hText.value.split('\n').forEach(function (line) {
            var at = line.indexOf(':');
            if (at > 0) { headersObj[line.slice(0, at).trim()] = line.slice(at + 1).trim(); }
          });
          api('POST', '/api/requests/' + encodeURIComponent(r.id) + '/replay', {
            method: method.value, path: path.value, headers: headersObj, body: bText.value
          }).then(function (a) {
            toast('replayed: ' + a.status);
            diffView(r.id, a.id);
          }).catch(function (err) { error.textContent = err.message; });
        }
      }
    },
    el('h2', { text: 'Replay through the proxy' }),
    el('p', { class: 'muted', text: 'The proxy adds the credentials. Values the log redacted are not sent: put them back here if the request needs them.' }),
    el('div', { class: 'bar' }, el('label', { for: 'replay-method' }, 'Method', method), el('label', { for: 'replay-path' }, 'Path', path)),
    el('label', { for: 'replay-headers', text: 'Headers (name: value per line)' }), hText,
    el('label', { for: 'replay-body', text: 'Body' }), bText, error,
    el('div', { class: 'bar' }, el('button', { type: 'submit', class: 'primary', id: 'replay-send', text: 'Send' }),
      el('button', { type: 'button', text: 'Cancel', on: { click: function () { detail(r.id); } } })));
    side.replaceChildren(form);
    method.focus();
  }

  // ------------------------------------------------------------ diff

  function textOf(r) {
    var lines = [r.method + ' ' + r.path + (r.query ? '?' + r.query : ''), 'status ' + r.status + (r.lean_status ? ' ' + r.lean_status : '')];
    (r.request_headers || []).forEach(function (h) { lines.push('> ' + h[0] + ': ' + h[1]); });
    if (r.request_body && r.request_body.text) { lines = lines.concat(pretty(r.request_body.text, '> ')); }
    (r.response_headers || []).forEach(function (h) { lines.push('< ' + h[0] + ': ' + h[1]); });
    if (r.response_body && r.response_body.text) { lines = lines.concat(pretty(r.response_body.text, '< ')); }
    return lines;
  }

  function pretty(text, prefix) {
    var out = text;
    try { out = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* as is */ }
    return out.split('\n').map(function (l) { return prefix + l; });
  }

  // Lines of a and b as kept / removed / added (longest common subsequence).
  function diffLines(a, b) {
    a = a.slice(0, 1500); b = b.slice(0, 1500);
    var n = a.length, m = b.length, i, j;
    var lcs = [];
    for (i = 0; i <= n; i++) { lcs.push(new Uint16Array(m + 1)); }
    for (i = n - 1; i >= 0; i--) {
      for (j = m - 1; j >= 0; j--) {
        lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    var out = [];
    i = 0; j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; }
      else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(['+', b[j]]); j++; }
      else { out.push(['-', a[i]]); i++; }
    }
    return out;
  }

  function diffView(a, b) {
    Promise.all([api('GET', '/api/requests/' + encodeURIComponent(a)), api('GET', '/api/requests/' + encodeURIComponent(b))]).then(function (rs) {
      var d = diffLines(textOf(rs[0]), textOf(rs[1]));
      var pre = el('div', { class: 'diff panel', id: 'diff' });
      d.forEach(function (line) {
        pre.appendChild(el('div', { class: line[0] === '+' ? 'add' : line[0] === '-' ? 'del' : '' }, line[0] + ' ' + line[1]));
      });
      show('Diff', el('p', { class: 'muted' }, '− ', el('a', { href: '#/exchanges?id=' + encodeURIComponent(a), text: short(a) }), ' (' + rs[0].status + ')   + ',
        el('a', { href: '#/exchanges?id=' + encodeURIComponent(b), text: short(b) }), ' (' + rs[1].status + ')'), pre);
    }).catch(function (e) { toast(e.message); });
  }

  // ------------------------------------------------------------ reconnects

  function reconnectsView() {
    var p = route().params;
    api('GET', '/api/reconnects').then(function (a) {
      var rows = a.reconnects.filter(function (r) { return !p.get('entity_id') || r.entity_id === p.get('entity_id'); });
      var t = el('table', { class: 'list', id: 'reconnects' }, el('tr', null, ['entity', 'reconnect id', 'state', 'source', 'hits', 'age', 'resolved by', ''].map(function (h) { return el('th', { scope: 'col', text: h }); })));
      rows.forEach(function (r) {
        var actions = el('td');
        var key = r.entity_id || ('reconnect:' + r.reconnect_id);
        if (r.state === 'pending') {
          actions.appendChild(el('button', {
            type: 'button', 'data-resolve': key, text: 'Resolve', on: {
              click: function () { api('DELETE', '/api/reconnects/' + encodeURIComponent(key)).then(function () { toast('resolved'); render(); }).catch(function (e) { toast(e.message); }); }
            }
          }));
          if (state.info && state.info.mockbank) {
            actions.appendChild(document.createTextNode(' '));
            actions.appendChild(el('a', { href: state.info.mockbank + '/?reconnect_id=' + encodeURIComponent(r.reconnect_id), target: '_blank', rel: 'noopener', text: 'Reconnect in Link' }));
          }
        }
        t.appendChild(el('tr', { 'data-entity': r.entity_id || '', 'data-state': r.state },
          el('td', { class: 'mono', text: r.entity_id || '' }), el('td', { class: 'mono', text: r.reconnect_id }),
          el('td', null, el('span', { class: 'tag ' + (r.state === 'pending' ? 'bad' : 'ok'), text: r.state })),
          el('td', { text: r.source || '' }), el('td', { text: String(r.hits) }), el('td', { text: age(r.first_seen) }),
          el('td', { text: r.resolved_by || '' }), actions));
      });
      show('Reconnects', el('p', { class: 'muted', text: a.pending + ' pending · ' + a.stats.total + ' seen' + (p.get('entity_id') ? ' · entity ' + p.get('entity_id') : '') }), el('div', { class: 'panel' }, t));
    }).catch(function (e) { show('Reconnects', el('p', { class: 'error', text: e.message })); });
  }

  // ------------------------------------------------------------ faults

  var RULE_KEYS = ['id', 'action', 'match', 'probability', 'count', 'ttl', 'after', 'matched', 'applied',
    'remaining', 'installed_at', 'expires_at', 'retired', 'paused'];

  // The action with its values: `status 503`, `delay 2s..5s`.
  function actionOf(f) {
    var params = Object.keys(f).filter(function (k) { return RULE_KEYS.indexOf(k) < 0; })
      .map(function (k) { return k + '=' + (typeof f[k] === 'string' ? f[k] : JSON.stringify(f[k])); });
    return [f.action].concat(params).join(' ');
  }

  function faultsView() {
    api('GET', '/api/faults').then(function (a) {
      state.faults = a.faults;
      var spec = el('input', { type: 'text', id: 'fault-spec', size: 50, placeholder: 'status=503 path=/data p=0.5 count=3', 'aria-describedby': 'fault-check' });
      var check = el('p', { id: 'fault-check', class: 'muted', role: 'status', text: 'A spec: an action, then options (leanproxy faults add --help).' });
      var timer = null;
      spec.addEventListener('input', function () {
        clearTimeout(timer);
        timer = setTimeout(function () {
          if (!spec.value.trim()) { check.className = 'muted'; check.textContent = ''; return; }
          api('POST', '/api/faults?dry_run=true', { spec: spec.value }).then(function (r) {
            check.className = 'ok';
            check.textContent = 'valid: ' + JSON.stringify(r.rule);
          }).catch(function (e) {
            check.className = 'error';
            check.textContent = e.message;
          });
        }, 200);
      });
      function add(text) {
        return api('POST', '/api/faults', { spec: text }).then(function (r) { toast('added ' + r.id); render(); })
          .catch(function (e) { check.className = 'error'; check.textContent = e.message; });
      }
      var form = el('form', { class: 'bar', id: 'fault-form', on: { submit: function (e) { e.preventDefault(); add(spec.value); } } },
        el('label', { for: 'fault-spec' }, 'New rule', spec), el('button', { type: 'submit', class: 'primary', text: 'Add' }));
      var presets = el('div', { class: 'bar' }, el('span', { class: 'muted', text: 'Presets:' }));
      PRESETS.forEach(function (p) {
        presets.appendChild(el('button', { type: 'button', 'data-preset': p[1], title: p[1], text: p[0], on: { click: function () { add(p[1]); } } }));
      });
      var t = el('table', { class: 'list', id: 'faults' }, el('tr', null, ['id', 'match', 'action', 'p', 'left', 'matched', 'applied', 'state', ''].map(function (h) { return el('th', { scope: 'col', text: h }); })));
      a.faults.forEach(function (f) {
        var m = f.match || {};
        var match = Object.keys(m).map(function (k) { return k + '=' + (typeof m[k] === 'string' ? m[k] : JSON.stringify(m[k])); }).join(' ') || 'every request';
        var left = [f.remaining != null ? f.remaining + ' left' : '', f.expires_at ? 'until ' + f.expires_at.slice(11, 19) : ''].filter(Boolean).join(', ');
        t.appendChild(el('tr', { 'data-fault': f.id },
          el('td', null, el('a', { href: '#/exchanges?fault=' + encodeURIComponent(f.id), title: 'exchanges it produced', text: f.id })),
          el('td', { class: 'mono', text: match }), el('td', { class: 'mono', text: actionOf(f) }),
          el('td', { text: f.probability != null ? String(f.probability) : '' }), el('td', { text: left }),
          el('td', { text: String(f.matched) }), el('td', { 'data-applied': '', text: String(f.applied) }),
          el('td', { text: f.retired ? 'spent' : f.paused ? 'paused' : 'active' }),
          el('td', null,
            el('button', { type: 'button', text: f.paused ? 'Resume' : 'Pause', on: { click: function () { api('POST', '/api/faults/' + encodeURIComponent(f.id) + (f.paused ? '/resume' : '/pause'), {}).then(render); } } }), ' ',
            el('button', { type: 'button', class: 'danger', 'data-remove': f.id, text: 'Remove', on: { click: function () { api('DELETE', '/api/faults/' + encodeURIComponent(f.id)).then(function () { toast('removed ' + f.id); render(); }); } } }))));
      });
      var clear = el('button', { type: 'button', class: 'danger', text: 'Remove every rule', on: { click: function () { if (confirm('Remove every fault rule?')) { api('DELETE', '/api/faults').then(render); } } } });
      show('Faults', a.allowed ? form : el('p', { class: 'error', text: 'Faults are refused here (a production upstream without fault.allow_faults_in_production).' }), check, presets,
        el('div', { class: 'panel' }, t), el('p', null, clear));
    }).catch(function (e) { show('Faults', el('p', { class: 'error', text: e.message })); });
  }

  // ------------------------------------------------------------ webhooks

  function webhooksView() {
    var p = route().params;
    api('GET', '/api/webhooks?limit=200').then(function (a) {
      var t = el('table', { class: 'list', id: 'webhooks' }, el('tr', null, ['received', 'type', 'signature', 'outcome', 'resolved', 'relay', ''].map(function (h) { return el('th', { scope: 'col', text: h }); })));
      a.webhooks.slice().reverse().forEach(function (w) {
        var verdict = w.signature && w.signature.verdict;
        var why = w.signature && (w.signature.reason || w.signature.why) || '';
        var relay = (w.relay || []).map(function (r) { return r.target + ': ' + r.state + ' (' + r.attempts + ')'; }).join('; ') || 'not relayed';
        t.appendChild(el('tr', { 'data-webhook': w.id, 'data-verdict': verdict || '' },
          el('td', { class: 'mono', text: w.received_at.slice(11, 19) }),
          el('td', null, el('a', { href: '#/webhooks?id=' + encodeURIComponent(w.id), text: w.type || '(no type)' })),
          el('td', null, el('span', { class: 'tag ' + (verdict === 'valid' ? 'ok' : verdict === 'invalid' ? 'bad' : 'warn'), title: why, text: verdict || '' }), why ? ' ' + why : ''),
          el('td', { text: w.outcome + (w.outcome === 'duplicate' ? ' (duplicate)' : '') }),
          el('td', { class: 'mono', text: w.resolved_reconnect || '' }),
          el('td', { text: relay }),
          el('td', null, el('button', {
            type: 'button', text: 'Replay', on: {
              click: function () { api('POST', '/api/webhooks/' + encodeURIComponent(w.id) + '/replay', {}).then(function () { toast('queued again'); render(); }).catch(function (e) { toast(e.message); }); }
            }
          }))));
      });
      var one = el('section', { class: 'panel detail', id: 'webhook-detail' }, el('p', { class: 'muted', text: 'Select a webhook.' }));
      show('Webhooks', el('p', { class: 'muted', text: a.kept + ' kept' }), el('div', { class: 'split' }, el('div', { class: 'panel' }, t), one));
      if (p.get('id')) {
        api('GET', '/api/webhooks/' + encodeURIComponent(p.get('id'))).then(function (w) {
          var payload = w.body ? (function () { try { return jsonTree(JSON.parse(w.body)); } catch (e) { return el('pre', { text: w.body }); } }()) : el('p', { class: 'muted', text: w.body_note || 'no body kept' });
          one.replaceChildren(el('h2', { text: w.type || w.id }),
            kv([['id', w.id], ['event id', w.event_id], ['entity', w.entity_id], ['reconnect id', w.reconnect_id], ['signature', JSON.stringify(w.signature)], ['outcome', w.outcome], ['resolved reconnect', w.resolved_reconnect]]),
            el('h2', { text: 'Relay' }), kv((w.relay || []).map(function (r) { return [r.target, r.state + ', ' + r.attempts + ' attempts' + (r.last_error ? ', ' + r.last_error : '')]; })),
            el('h2', { text: 'Headers' }), kv(w.headers || []), el('h2', { text: 'Payload' }), payload);
        });
      }
    }).catch(function (e) { show('Webhooks', el('p', { class: 'error', text: e.message })); });
  }

  // ------------------------------------------------------------ overview

  function spark(values, color, label) {
    var max = Math.max.apply(null, values.concat([1]));
    var w = 300, h = 60, step = w / Math.max(values.length, 1);
    var svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    values.forEach(function (v, i) {
      var r = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      var bh = (v / max) * (h - 2);
      r.setAttribute('x', i * step); r.setAttribute('y', h - bh); r.setAttribute('width', Math.max(step - 1, 1)); r.setAttribute('height', bh);
      r.setAttribute('fill', color);
      svg.appendChild(r);
    });
    return svg;
  }

  function quantile(sorted, q) {
    if (!sorted.length) { return 0; }
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  function overviewView() {
    // The last five minutes, in 10-second buckets, from the exchanges kept.
    var now = Date.now(), span = 300000, bucket = 10000, n = span / bucket;
    var counts = new Array(n).fill(0), errors = new Array(n).fill(0), p99s = new Array(n).fill(0), per = [];
    for (var i = 0; i < n; i++) { per.push([]); }
    var mix = {}, lean = {}, durations = [];
    state.exchanges.forEach(function (x) {
      var t = Date.parse(x.started_at);
      if (now - t > span) { return; }
      var b = Math.min(n - 1, Math.floor((t - (now - span)) / bucket));
      counts[b]++;
      if (x.status >= 500) { errors[b]++; }
      per[b].push(x.duration_ms);
      durations.push(x.duration_ms);
      mix[Math.floor(x.status / 100) + 'xx'] = (mix[Math.floor(x.status / 100) + 'xx'] || 0) + 1;
      if (x.lean_status) { lean[x.lean_status] = (lean[x.lean_status] || 0) + 1; }
    });
    per.forEach(function (d, b) { d.sort(function (a, c) { return a - c; }); p99s[b] = quantile(d, 0.99); });
    durations.sort(function (a, c) { return a - c; });
    var last = counts.slice(-6).reduce(function (a, c) { return a + c; }, 0) / 60;
    function card(title, big, chart, extra) {
      return el('section', { class: 'panel card', 'aria-label': title }, el('div', { class: 'muted', text: title }), el('div', { class: 'big', text: big }), chart || null, extra || null);
    }
    function legend(obj) {
      return el('div', { class: 'legend' }, Object.keys(obj).sort().map(function (k) { return el('span', { text: k + ' ' + obj[k] }); }));
    }
    var cards = el('div', { class: 'cards', id: 'overview' },
      card('requests / s (last minute)', last.toFixed(2), spark(counts, 'var(--accent)', 'requests per 10 s over five minutes')),
      card('p50 / p99 ms (five minutes)', quantile(durations, 0.5).toFixed(1) + ' / ' + quantile(durations, 0.99).toFixed(1), spark(p99s, 'var(--warn)', 'p99 latency per 10 s')),
      card('status mix', String(durations.length), spark(errors, 'var(--bad)', '5xx per 10 s'), legend(mix)),
      card('Lean status mix', String(Object.keys(lean).length ? Object.values(lean).reduce(function (a, c) { return a + c; }, 0) : 0), null, legend(lean)));
    show('Overview', cards);
    Promise.all([api('GET', '/api/reconnects?state=pending'), api('GET', '/api/webhooks?limit=1000')]).then(function (rs) {
      var waiting = 0;
      rs[1].webhooks.forEach(function (w) { (w.relay || []).forEach(function (r) { if (r.state !== 'delivered' && r.state !== 'dead') { waiting++; } }); });
      cards.appendChild(card('pending reconnects', String(rs[0].pending), null, el('a', { href: '#/reconnects', text: 'see them' })));
      cards.appendChild(card('webhook deliveries waiting', String(waiting), null, el('a', { href: '#/webhooks', text: 'see them' })));
    }).catch(function () { /* shown on their own views */ });
  }

  // ------------------------------------------------------------ Mockbank

  function mockbankView() {
    Promise.all([api('GET', '/api/mockbank/clock'), api('GET', '/api/mockbank/users'), api('GET', '/api/mockbank/entities')]).then(function (rs) {
      var clock = rs[0], users = rs[1].users, entities = rs[2].entities;
      var by = el('input', { type: 'text', id: 'advance-by', value: '11m', size: 6 });
      var clockPanel = el('section', { class: 'panel', 'aria-label': 'Clock' },
        el('h2', { text: 'Clock' }), kv([['now', clock.now], ['paused', String(clock.paused)]]),
        el('form', {
          class: 'bar', id: 'advance', on: {
            submit: function (e) {
              e.preventDefault();
              api('POST', '/api/mockbank/clock/advance', { duration: by.value }).then(function () { toast('advanced ' + by.value); render(); }).catch(function (err) { toast(err.message); });
            }
          }
        }, el('label', { for: 'advance-by' }, 'Advance by', by), el('button', { type: 'submit', class: 'primary', text: 'Advance' }),
        el('button', { type: 'button', text: clock.paused ? 'Resume' : 'Pause', on: { click: function () { api('POST', '/api/mockbank/clock/' + (clock.paused ? 'resume' : 'pause'), {}).then(render); } } })));
      var et = el('table', { class: 'list', id: 'entities' }, el('tr', null, ['entity', 'user', 'bank', 'session', 'idle', ''].map(function (h) { return el('th', { scope: 'col', text: h }); })));
      entities.forEach(function (e) {
        et.appendChild(el('tr', { 'data-entity': e.entity_id },
          el('td', null, el('a', { class: 'mono', href: '#/exchanges?entity_id=' + encodeURIComponent(e.entity_id), text: e.entity_id })),
          el('td', { text: e.username }), el('td', { text: e.bank_identifier }),
          el('td', null, el('span', { class: 'tag ' + (e.session === 'active' ? 'ok' : 'bad'), text: e.session })),
          el('td', { text: e.idle_seconds + 's' }),
          el('td', null, el('button', { type: 'button', 'data-expire': e.entity_id, text: 'Expire session', on: { click: function () { api('POST', '/api/mockbank/entities/' + encodeURIComponent(e.entity_id) + '/expire', {}).then(function () { toast('expired'); render(); }); } } }))));
      });
      var ut = el('table', { class: 'list' }, el('tr', null, ['username', 'behaviour'].map(function (h) { return el('th', { scope: 'col', text: h }); })));
      users.forEach(function (u) { ut.appendChild(el('tr', null, el('td', { class: 'mono', text: u.username }), el('td', { text: u.description || u.behaviour }))); });
      show('Mockbank', el('p', null, el('a', { href: state.info.mockbank + '/', target: '_blank', rel: 'noopener', text: 'Link in the browser (boilerplate)' })),
        clockPanel, el('section', { class: 'panel' }, el('h2', { text: 'Entities' }), et), el('section', { class: 'panel' }, el('h2', { text: 'Test users' }), ut));
    }).catch(function (e) { show('Mockbank', el('p', { class: 'error', text: e.message })); });
  }

  // ------------------------------------------------------------ frame

  var VIEWS = { overview: overviewView, exchanges: exchangesView, reconnects: reconnectsView, faults: faultsView, webhooks: webhooksView, mockbank: mockbankView };

  function render() {
    var r = route();
    Array.prototype.forEach.call(document.querySelectorAll('nav a'), function (a) {
      if (a.dataset.view === r.view) { a.setAttribute('aria-current', 'page'); } else { a.removeAttribute('aria-current'); }
    });
    if (r.view !== 'exchanges') { list.scroller = null; }
    (VIEWS[r.view] || overviewView)();
  }

  var lastView = null;
  window.addEventListener('hashchange', function () {
    var v = route().view;
    render();
    if (v !== lastView) {
      var h = main.querySelector('h1');
      if (h) { h.focus(); }
    }
    lastView = v;
  });

  function start() {
    document.getElementById('nav-mockbank').hidden = !(state.info && state.info.mockbank);
    api('GET', '/api/faults').then(function (a) { state.faults = a.faults; }).catch(function () {});
    lastView = route().view;
    render();
    listen();
  }

  api('GET', '/api/info').then(function (info) {
    state.info = info;
    start();
  }).catch(function () { /* login() is showing */ });
}());
