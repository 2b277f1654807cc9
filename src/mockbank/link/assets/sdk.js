// LinkSDK for the Mockbank. The Mockbank wraps this file in
// `(function (LINK) { ... })({generation, global, region, version})`, so one
// runtime plays each of Lean's script generations:
//   legacy  link/sdk/web/{version}/Lean.min.js          global Lean, mounts into #lean-link
//   loader  link/loader/prod/{region}/{version}/...      global Lean, its own overlay
//   v2      link/sdk/web/v2/prod/{region}/{version}/...  global LeanV2, mounts into #lean-link;
//           configuration errors reach the callback only with sandbox: true
'use strict';

var script = document.currentScript;
var base = script && script.src ? new URL(script.src).origin : window.location.origin;
var prefix = '[' + LINK.global + ' · leanproxy Mockbank] ';
var METHODS = [
  'connect', 'reconnect', 'link', 'createPaymentSource', 'updatePaymentSource',
  'createBeneficiary', 'pay', 'checkout', 'authorizeConsent', 'manageConsents',
  'captureRedirect', 'verifyAddress'
];
// The Link currently open: {frame, session, options, method, screen, onMessage}.
var current = null;

function upperSnake(name) {
  return name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

function response(status, message, method) {
  var r = {
    status: status,
    message: message,
    bank: { bank_identifier: null, is_supported: true },
    exit_point: null,
    secondary_status: null,
    last_api_response: null,
    user_exit_intent: null,
    exit_intent_point: null,
    exit_survey_reason: null,
    lean_correlation_id: null,
    open_banking_redirect_url: null
  };
  if (LINK.generation === 'legacy') {
    r.method = upperSnake(method);
  }
  return r;
}

function deliver(options, r, method) {
  if (LINK.generation === 'legacy' && !('method' in r)) {
    r.method = upperSnake(method);
  }
  var callback = options && options.callback;
  if (typeof callback !== 'function') {
    console.info(prefix + 'no callback was given; Link ended with', r);
    return;
  }
  try {
    callback(r);
  } catch (e) {
    console.error(prefix + 'the callback threw:', e);
  }
}

// A configuration error. The v2 bundle reports these only in sandbox mode;
// in production it aborts the mount silently, as Lean's does.
function refuse(options, method, r) {
  console.error(prefix + r.message);
  if (LINK.generation === 'v2' && !(options && options.sandbox === true)) {
    return;
  }
  deliver(options, r, method);
}

function start(method, options) {
  if (!options || typeof options !== 'object') {
    refuse(options, method, response('ERROR', LINK.global + '.' + method +
      ' takes one object, e.g. {app_token, customer_id, permissions, sandbox: true, callback}', method));
    return;
  }
  if (current) {
    refuse(options, method, response('ERROR',
      'Link is already open; wait for its callback, or call ' + LINK.global + '.close() first', method));
    return;
  }
  var mount = document.body;
  if (LINK.generation !== 'loader') {
    mount = document.getElementById('lean-link');
    if (!mount) {
      refuse(options, method, response('ERROR', LINK.global +
        ' mounts Link into <div id="lean-link"></div>, which this page does not have', method));
      return;
    }
  }
  var config = {};
  Object.keys(options).forEach(function (key) {
    if (key !== 'callback') {
      config[key] = options[key];
    }
  });
  config.method = method;
  config.generation = LINK.generation;
  config.region = LINK.region;
  config.version = LINK.version;
  // Reserve the slot at once: a second call before the answer is refused.
  current = { options: options, method: method, screen: null };
  fetch(base + '/link/v1/sessions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(config),
    credentials: 'omit'
  }).then(function (r) {
    return r.json().then(function (body) { return { ok: r.ok, body: body }; });
  }).then(function (answer) {
    if (!answer.ok) {
      current = null;
      refuse(options, method, answer.body);
      return;
    }
    mountFrame(mount, answer.body.session_id, options, method);
  }).catch(function (e) {
    current = null;
    refuse(options, method, response('ERROR', 'could not reach the Mockbank at ' + base + ' (' + e.message +
      '). If it runs, is this page\'s origin (' + window.location.origin +
      ') allowed by mockbank.link_origins?', method));
  });
}

function mountFrame(mount, session, options, method) {
  var frame = document.createElement('iframe');
  frame.src = base + '/link/app?session=' + encodeURIComponent(session);
  frame.title = 'Lean Link';
  frame.setAttribute('data-lean-link', session);
  frame.style.cssText = 'position:fixed;inset:0;width:100%;height:100%;border:0;margin:0;padding:0;' +
    'z-index:2147483000;background:transparent;color-scheme:normal';
  var overflow = document.documentElement.style.overflow;
  document.documentElement.style.overflow = 'hidden';
  function onMessage(e) {
    if (e.origin !== base || e.source !== frame.contentWindow) {
      return;
    }
    var data = e.data || {};
    if (data.lean_link !== session) {
      return;
    }
    if (data.type === 'screen') {
      current.screen = data.screen;
    } else if (data.type === 'result') {
      teardown();
      deliver(options, data.response, method);
    } else if (data.type === 'redirect' && /^https?:\/\//.test(String(data.url))) {
      // success_redirect_url / fail_redirect_url: the page leaves, as it
      // does for Lean's redirect flows; captureRedirect shows the outcome.
      teardown();
      window.location.assign(data.url);
    }
  }
  function teardown() {
    window.removeEventListener('message', onMessage);
    document.documentElement.style.overflow = overflow;
    if (frame.parentNode) {
      frame.parentNode.removeChild(frame);
    }
    current = null;
  }
  current = {
    frame: frame, session: session, options: options, method: method,
    screen: null, teardown: teardown
  };
  window.addEventListener('message', onMessage);
  frame.addEventListener('load', function () { frame.focus(); });
  mount.appendChild(frame);
}

var sdk = {};
METHODS.forEach(function (method) {
  sdk[method] = function (options) { start(method, options); };
});
// Closes an open Link from the app: the callback gets LINK_CLOSED_PROGRAMMATICALLY.
sdk.close = function () {
  if (!current || !current.teardown) {
    return;
  }
  var open = current;
  open.teardown();
  var r = response('LINK_CLOSED_PROGRAMMATICALLY', 'Link was closed by the app.', open.method);
  r.exit_point = open.screen;
  deliver(open.options, r, open.method);
};
sdk.version = LINK.version;
sdk.mockbank = base;
window[LINK.global] = Object.freeze(sdk);
