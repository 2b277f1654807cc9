// The boilerplate page: loads the chosen LinkSDK script from this Mockbank,
// calls its methods with the fields' values, shows the callback object and
// the webhooks the Mockbank sent, live.
(function () {
  'use strict';

  var PERMISSIONS = {
    ae: ['identity', 'accounts', 'balance', 'transactions', 'payments'],
    sa: ['identity', 'accounts', 'balance', 'transactions', 'identities',
      'beneficiaries', 'direct_debits', 'standing_orders', 'scheduled_payments']
  };
  var METHODS = ['connect', 'reconnect', 'link', 'createPaymentSource', 'updatePaymentSource',
    'createBeneficiary', 'pay', 'checkout', 'authorizeConsent', 'manageConsents',
    'captureRedirect', 'verifyAddress'];
  var $ = function (id) { return document.getElementById(id); };
  var loaded = null;

  function region() {
    return /\/sa\//.test($('script').value) ? 'sa' : 'ae';
  }

  function drawPermissions() {
    var box = $('permissions');
    var checked = {};
    Array.prototype.forEach.call(box.querySelectorAll('input'), function (i) { checked[i.value] = i.checked; });
    box.replaceChildren();
    PERMISSIONS[region()].forEach(function (p, n) {
      var input = document.createElement('input');
      input.type = 'checkbox';
      input.value = p;
      input.checked = p in checked ? checked[p] : n < 4;
      var label = document.createElement('label');
      label.append(input, ' ' + p);
      box.appendChild(label);
    });
  }

  function loadScript() {
    var src = $('script').value;
    if (loaded === src) { return; }
    var old = document.querySelector('script[data-linksdk]');
    if (old) { old.remove(); }
    var s = document.createElement('script');
    s.src = src;
    s.setAttribute('data-linksdk', '');
    document.head.appendChild(s);
    loaded = src;
    drawPermissions();
  }

  function sdk() {
    return /\/v2\//.test($('script').value) ? window.LeanV2 : window.Lean;
  }

  function show(result) {
    var pre = $('callback');
    pre.textContent = JSON.stringify(result, null, 2);
    pre.setAttribute('data-status', result && result.status);
  }

  function call(method) {
    var lean = sdk();
    if (!lean) {
      show({ note: 'the script has not loaded yet' });
      return;
    }
    var options = {
      app_token: $('app-token').value.trim(),
      customer_id: $('customer-id').value.trim(),
      sandbox: true,
      language: $('language').value,
      permissions: Array.prototype.map.call($('permissions').querySelectorAll('input:checked'), function (i) { return i.value; }),
      callback: show
    };
    if ($('access-token').value.trim()) { options.access_token = $('access-token').value.trim(); }
    if ($('bank-identifier').value.trim()) { options.bank_identifier = $('bank-identifier').value.trim(); }
    if ($('consent-screen').checked) { options.show_consent_explanation = true; }
    var text = function (id) { return $(id).value.trim(); };
    if (method === 'updatePaymentSource' || method === 'createBeneficiary') {
      options.payment_source_id = text('payment-source-id');
      options.payment_destination_id = text('payment-destination-id');
    }
    if (method === 'manageConsents' && text('consent-id')) { options.consent_id = text('consent-id'); }
    if (method === 'verifyAddress') { options.customer_name = text('customer-name'); }
    if (method === 'captureRedirect') { options.consent_attempt_id = text('consent-attempt-id'); }
    if (method === 'pay' || method === 'checkout') {
      options = {
        app_token: options.app_token, payment_intent_id: $('intent-id').value.trim(), sandbox: true,
        language: options.language, access_token: options.access_token, callback: show
      };
    }
    if (method === 'authorizeConsent') {
      options = {
        app_token: options.app_token, consent_id: $('consent-id').value.trim(), sandbox: true,
        language: options.language, access_token: options.access_token, callback: show
      };
    }
    if (method === 'reconnect') {
      options = {
        app_token: options.app_token, reconnect_id: $('reconnect-id').value.trim(), sandbox: true,
        language: options.language, access_token: options.access_token, callback: show
      };
    }
    $('callback').textContent = 'Link is open…';
    lean[method](options);
  }

  // A payment intent of `amount` for the customer, to try `pay` with.
  function newIntent() {
    fetch('/_mockbank/link/intent', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer_id: $('customer-id').value.trim(), amount: Number($('intent-amount').value) })
    }).then(function (r) { return r.json(); }).then(function (i) {
      if (i.payment_intent_id) { $('intent-id').value = i.payment_intent_id; } else { show(i); }
    });
  }

  function newCustomer() {
    fetch('/_mockbank/link/customer', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        $('customer-id').value = c.customer_id;
        $('access-token').value = c.access_token;
        sessionStorage.setItem('customer_id', c.customer_id);
      });
  }

  function cell(text, code) {
    var td = document.createElement('td');
    if (code) {
      var c = document.createElement('code');
      c.textContent = text || '';
      td.appendChild(c);
    } else {
      td.textContent = text || '';
    }
    return td;
  }

  function pollWebhooks() {
    fetch('/_mockbank/webhooks').then(function (r) { return r.json(); }).then(function (body) {
      var rows = (body.deliveries || []).slice().reverse().map(function (d) {
        var tr = document.createElement('tr');
        tr.setAttribute('data-type', d.type);
        tr.append(cell(d.type), cell(d.payload_id, true), cell(d.customer_id, true),
          cell(d.delivered ? 'yes' : (d.last_error ? 'no: ' + d.last_error : 'pending')));
        return tr;
      });
      if (rows.length) { $('webhooks').replaceChildren.apply($('webhooks'), rows); }
    }).catch(function () { /* the Mockbank restarts: try again next tick */ })
      .then(function () { setTimeout(pollWebhooks, 1000); });
  }

  fetch('/_mockbank/link/defaults').then(function (r) { return r.json(); }).then(function (d) {
    if (d.app_token && !$('app-token').value) { $('app-token').value = d.app_token; }
    if (!d.app_token) { $('app-token').placeholder = 'your configured app token (not shown)'; }
    $('otp-value').textContent = d.otp;
  });
  $('customer-id').value = sessionStorage.getItem('customer_id') || '';
  // The dashboard links a pending reconnect here: /?reconnect_id=…
  var asked = new URLSearchParams(window.location.search).get('reconnect_id');
  if (asked) { $('reconnect-id').value = asked; }
  METHODS.forEach(function (m) {
    var b = document.createElement('button');
    b.type = 'button';
    b.id = 'call-' + m;
    b.textContent = m;
    if (['connect', 'reconnect', 'pay', 'createPaymentSource', 'authorizeConsent'].indexOf(m) >= 0) { b.className = 'main'; }
    b.addEventListener('click', function () { call(m); });
    $('methods').appendChild(b);
  });
  $('new-customer').addEventListener('click', newCustomer);
  $('new-intent').addEventListener('click', newIntent);
  $('script').addEventListener('change', loadScript);
  loadScript();
  pollWebhooks();
}());
