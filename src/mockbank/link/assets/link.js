// The Link screens. In the SDK's iframe (?session=…) they report to the
// opening page by postMessage; as the hosted page for mobile WebViews
// (lean-sdk.html?method=…) they open their own session from the query and end
// by navigating to leanlink://{success|cancelled|error}?…. The rules of each
// step are the Mockbank's (/link/v1/sessions/{id}/steps); this file renders.
(function () {
  'use strict';

  var TEXT = {
    en: {
      brand: 'Lean · Mockbank',
      close: 'Close',
      chooseBank: 'Choose your bank',
      chooseBankLead: 'Connect your account securely. This is the offline Mockbank sandbox.',
      search: 'Search banks',
      noMatch: 'No bank matches your search.',
      notListed: 'My bank is not listed',
      maintenance: 'Under maintenance',
      consentTitle: 'Data you will share',
      consentLead: 'The app asks for access to:',
      allow: 'Allow',
      loginTitle: 'Log in to {bank}',
      reconnectTitle: 'Reconnect to {bank}',
      loginLead: 'Use your online banking username and password.',
      username: 'Username',
      password: 'Password',
      logIn: 'Log in',
      usersHint: 'Mockbank test users and passwords: /_mockbank/users, or the start banner.',
      otpTitle: 'Enter the one-time code',
      otpLead: 'Your bank sent a code to your phone.',
      otp: 'One-time code',
      verify: 'Verify',
      otpHint: 'In the Mockbank the code is {otp}.',
      accountsTitle: 'Choose the accounts to share',
      accountsLead: 'Only the accounts you choose are shared.',
      share: 'Share accounts',
      successTitle: 'Connected',
      reconnected: 'Reconnected',
      paid: 'Payment submitted',
      sourceCreated: 'Payment source created',
      consentAuthTitle: 'Authorise recurring payments',
      consentAuthLead: 'Choose the account the app may pay from, within the limits of this consent.',
      authorise: 'Authorise',
      consentAuthorised: 'Consent authorised',
      sourceUpdated: 'Payment source updated',
      beneficiaryAdded: 'Beneficiary added',
      checkedOut: 'Payment submitted',
      addressVerified: 'Address verified',
      redirectCaptured: 'Back from your bank',
      consentsTitle: 'Your payment consents',
      consentsLead: 'Consents you gave this app to take payments from your account. Revoke any you no longer want.',
      noConsents: 'You have given this app no payment consents.',
      revoke: 'Revoke',
      upTo: 'Up to {currency} {amount} a payment, per {period}',
      status: {
        AWAITING_AUTHORISATION: 'Awaiting authorisation', AUTHORISED: 'Active', REVOKED: 'Revoked',
        REJECTED: 'Rejected', EXPIRED: 'Expired', CONSUMED: 'Used up'
      },
      sourceTitle: 'Choose the accounts to pay from',
      sourceLead: 'The app will be able to start payments from these accounts, with your approval.',
      payTitle: 'Pay {currency} {amount}',
      payLead: 'To {destination}. Choose the account to pay from.',
      payButton: 'Pay {currency} {amount}',
      done: 'Done',
      returning: 'Returning to your app…',
      returnLink: 'Return to the app',
      attemptsLeft: '{n} attempts left.',
      secured: 'Secured by Lean · leanproxy Mockbank (offline sandbox)',
      INVALID_CREDENTIALS: 'The username or password is incorrect.',
      INVALID_MFA: 'The one-time code is incorrect.',
      NO_ACCOUNTS_SELECTED: 'Choose at least one account to share.',
      failed: 'Something went wrong: {message}',
      permission: {
        identity: 'Your identity (name, contact details)',
        accounts: 'Your accounts',
        balance: 'Your balances',
        transactions: 'Your transactions',
        payments: 'Payments from your account',
        identities: 'Identities of account holders',
        beneficiaries: 'Your beneficiaries',
        direct_debits: 'Your direct debits',
        standing_orders: 'Your standing orders',
        scheduled_payments: 'Your scheduled payments'
      }
    },
    ar: {
      brand: 'Lean · Mockbank',
      close: 'إغلاق',
      chooseBank: 'اختر بنكك',
      chooseBankLead: 'اربط حسابك بأمان. هذه بيئة Mockbank التجريبية دون اتصال.',
      search: 'ابحث عن البنوك',
      noMatch: 'لا يوجد بنك يطابق بحثك.',
      notListed: 'بنكي غير مدرج',
      maintenance: 'تحت الصيانة',
      consentTitle: 'البيانات التي ستشاركها',
      consentLead: 'يطلب التطبيق الوصول إلى:',
      allow: 'موافقة',
      loginTitle: 'تسجيل الدخول إلى {bank}',
      reconnectTitle: 'إعادة الربط مع {bank}',
      loginLead: 'استخدم اسم المستخدم وكلمة المرور للخدمات المصرفية عبر الإنترنت.',
      username: 'اسم المستخدم',
      password: 'كلمة المرور',
      logIn: 'تسجيل الدخول',
      usersHint: 'مستخدمو Mockbank التجريبيون وكلمات مرورهم: ‎/_mockbank/users‎ أو رسالة البدء.',
      otpTitle: 'أدخل رمز التحقق',
      otpLead: 'أرسل بنكك رمزًا إلى هاتفك.',
      otp: 'رمز التحقق',
      verify: 'تحقق',
      otpHint: 'في Mockbank الرمز هو {otp}.',
      accountsTitle: 'اختر الحسابات التي تريد مشاركتها',
      accountsLead: 'تتم مشاركة الحسابات التي تختارها فقط.',
      share: 'مشاركة الحسابات',
      successTitle: 'تم الربط بنجاح',
      reconnected: 'تمت إعادة الربط',
      paid: 'تم إرسال الدفعة',
      sourceCreated: 'تم إنشاء مصدر الدفع',
      consentAuthTitle: 'تفويض المدفوعات المتكررة',
      consentAuthLead: 'اختر الحساب الذي يمكن للتطبيق الدفع منه ضمن حدود هذه الموافقة.',
      authorise: 'تفويض',
      consentAuthorised: 'تم تفويض الموافقة',
      sourceUpdated: 'تم تحديث مصدر الدفع',
      beneficiaryAdded: 'تمت إضافة المستفيد',
      checkedOut: 'تم إرسال الدفعة',
      addressVerified: 'تم التحقق من العنوان',
      redirectCaptured: 'عدت من بنكك',
      consentsTitle: 'موافقات الدفع الخاصة بك',
      consentsLead: 'الموافقات التي منحتها لهذا التطبيق لأخذ المدفوعات من حسابك. ألغِ ما لم تعد تريده.',
      noConsents: 'لم تمنح هذا التطبيق أي موافقة دفع.',
      revoke: 'إلغاء',
      upTo: 'حتى {amount} {currency} للدفعة، لكل {period}',
      status: {
        AWAITING_AUTHORISATION: 'بانتظار التفويض', AUTHORISED: 'نشطة', REVOKED: 'ملغاة',
        REJECTED: 'مرفوضة', EXPIRED: 'منتهية', CONSUMED: 'مستنفدة'
      },
      sourceTitle: 'اختر الحسابات التي ستدفع منها',
      sourceLead: 'سيتمكن التطبيق من بدء المدفوعات من هذه الحسابات بموافقتك.',
      payTitle: 'ادفع {amount} {currency}',
      payLead: 'إلى {destination}. اختر الحساب الذي ستدفع منه.',
      payButton: 'ادفع {amount} {currency}',
      done: 'تم',
      returning: 'العودة إلى تطبيقك…',
      returnLink: 'العودة إلى التطبيق',
      attemptsLeft: 'المحاولات المتبقية: {n}.',
      secured: 'مؤمّن بواسطة Lean · leanproxy Mockbank (بيئة تجريبية دون اتصال)',
      INVALID_CREDENTIALS: 'اسم المستخدم أو كلمة المرور غير صحيحة.',
      INVALID_MFA: 'رمز التحقق غير صحيح.',
      NO_ACCOUNTS_SELECTED: 'اختر حسابًا واحدًا على الأقل.',
      failed: 'حدث خطأ: {message}',
      permission: {
        identity: 'هويتك (الاسم وبيانات الاتصال)',
        accounts: 'حساباتك',
        balance: 'أرصدتك',
        transactions: 'معاملاتك',
        payments: 'المدفوعات من حسابك',
        identities: 'هويات أصحاب الحسابات',
        beneficiaries: 'المستفيدون',
        direct_debits: 'الخصم المباشر',
        standing_orders: 'الأوامر الدائمة',
        scheduled_payments: 'المدفوعات المجدولة'
      }
    }
  };
  var CUSTOM = {
    theme_color: '--theme',
    button_text_color: '--button-text',
    button_border_radius: '--radius',
    link_color: '--link',
    overlay_color: '--overlay'
  };

  var root = document.documentElement;
  var dialog = document.getElementById('dialog');
  var query = new URLSearchParams(window.location.search);
  var hosted = !query.get('session');
  var sessionId = query.get('session');
  var view = null;
  var busy = false;
  var lang = 'en';

  function t(key, values) {
    var text = TEXT[lang][key] || TEXT.en[key] || key;
    Object.keys(values || {}).forEach(function (k) {
      text = text.replace('{' + k + '}', values[k]);
    });
    return text;
  }

  // Builds an element: el('button', {type: 'submit', 'data-x': 1}, child, 'text').
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'on') {
        Object.keys(attrs.on).forEach(function (ev) { node.addEventListener(ev, attrs.on[ev]); });
      } else if (k === 'text') {
        node.textContent = attrs.text;
      } else if (attrs[k] !== false && attrs[k] !== null && attrs[k] !== undefined) {
        node.setAttribute(k, attrs[k] === true ? '' : attrs[k]);
      }
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) { continue; }
      node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function api(path, body) {
    return fetch(path, {
      method: body ? 'POST' : 'GET',
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      return r.json().then(function (json) { return { ok: r.ok, status: r.status, body: json }; });
    });
  }

  function tell(message) {
    if (hosted) { return; }
    message.lean_link = sessionId;
    // Only the page that opened the session; before its view arrived (an
    // error), the message holds nothing but that error.
    window.parent.postMessage(message, (view && view.origin) || '*');
  }

  // The flow is over: hand the callback object to the app.
  function finish(result) {
    if (!hosted && view && view.redirect) {
      // The SDK was given a redirect URL for this outcome: the app's page
      // goes there, and calls captureRedirect to show it.
      tell({ type: 'redirect', url: view.redirect });
      return;
    }
    if (!hosted) {
      tell({ type: 'result', response: result });
      return;
    }
    var host = { SUCCESS: 'success', CANCELLED: 'cancelled', REDIRECT: 'redirect' }[result.status] || 'error';
    var params = new URLSearchParams();
    params.set('status', result.status || '');
    ['secondary_status', 'exit_point', 'message', 'lean_correlation_id', 'last_api_response',
      'user_exit_intent', 'exit_intent_point', 'exit_survey_reason'].forEach(function (k) {
      if (result[k] !== null && result[k] !== undefined) { params.set(k, result[k]); }
    });
    var bank = result.bank || {};
    if (bank.bank_identifier) { params.set('bank_identifier', bank.bank_identifier); }
    params.set('bank_is_supported', String(bank.is_supported !== false));
    var url = 'leanlink://' + host + '?' + params.toString().replace(/\+/g, '%20');
    screen(null, t('returning'), [
      el('p', { class: 'lead' }, el('a', { href: url, id: 'leanlink' }, t('returnLink')))
    ]);
    window.location.href = url;
  }

  function step(body) {
    if (busy) { return; }
    busy = true;
    Array.prototype.forEach.call(dialog.querySelectorAll('button, input'), function (b) { b.disabled = true; });
    api('/link/v1/sessions/' + encodeURIComponent(sessionId) + '/steps', body).then(function (answer) {
      busy = false;
      if (!answer.ok) {
        failure(answer.body.message);
        return;
      }
      render(answer.body, body.action);
    }).catch(function (e) {
      busy = false;
      failure(e.message);
    });
  }

  // The Mockbank could not be reached or refused a step: the flow ends in
  // ERROR rather than leaving the user on a screen that cannot go on.
  function failure(message) {
    finish({
      status: 'ERROR', message: t('failed', { message: message || '' }),
      bank: { bank_identifier: view && view.bank ? view.bank.identifier : null, is_supported: true },
      exit_point: view ? view.screen : null, secondary_status: null, last_api_response: null,
      user_exit_intent: null, exit_intent_point: null, exit_survey_reason: null,
      lean_correlation_id: null, open_banking_redirect_url: null
    });
  }

  function close() {
    step({ action: 'close' });
  }

  function applyLook(v) {
    lang = v.language === 'ar' ? 'ar' : 'en';
    root.lang = lang;
    root.dir = lang === 'ar' ? 'rtl' : 'ltr';
    root.classList.toggle('hosted', hosted);
    Object.keys(CUSTOM).forEach(function (key) {
      var value = v.customization && v.customization[key];
      if (value === undefined) { return; }
      if (key === 'button_border_radius' && /^[0-9.]+$/.test(value)) { value += 'px'; }
      root.style.setProperty(CUSTOM[key], value);
    });
  }

  function logo(bank) {
    var node = el('span', { class: 'logo', 'aria-hidden': 'true', text: bank.name.replace(/^Lean Open Finance /, '').charAt(0) });
    node.style.background = bank.main_color;
    return node;
  }

  // One screen: the bar with the close button, a focused heading, content.
  function screen(name, title, content) {
    var heading = el('h1', { id: 'title', tabindex: '-1', text: title });
    var body = el('section', { class: 'screen', 'data-screen': name || 'MESSAGE' }, heading);
    content.forEach(function (c) { if (c) { body.appendChild(c); } });
    var bar = el('header', { class: 'bar' },
      view && view.bank ? logo(view.bank) : null,
      el('span', { class: 'brand', text: view && view.bank ? view.bank.name : t('brand') }),
      name ? el('button', { type: 'button', class: 'close', 'aria-label': t('close'), 'data-action': 'close', on: { click: close } }, '×') : null);
    dialog.replaceChildren(bar, body, el('footer', { class: 'secured', text: t('secured') }));
    heading.focus();
    if (name) { tell({ type: 'screen', screen: name }); }
  }

  function errorLine(v) {
    var text = '';
    if (v.error) {
      text = TEXT[lang][v.error.secondary_status] || v.error.message;
      if (v.attempts_left !== null && v.attempts_left !== undefined) {
        text += ' ' + t('attemptsLeft', { n: v.attempts_left });
      }
    }
    return el('p', { class: 'error', role: 'alert', id: 'error', text: text });
  }

  var SUCCESS_TITLES = {
    reconnect: 'reconnected', pay: 'paid', createPaymentSource: 'sourceCreated',
    authorizeConsent: 'consentAuthorised', updatePaymentSource: 'sourceUpdated',
    createBeneficiary: 'beneficiaryAdded', checkout: 'checkedOut', verifyAddress: 'addressVerified',
    captureRedirect: 'redirectCaptured', manageConsents: 'consentsTitle'
  };

  var SCREENS = {
    BANK_LIST: function (v) {
      var list = el('ul', { class: 'banks', id: 'banks' });
      var none = el('p', { class: 'hint', hidden: true, text: t('noMatch') });
      v.banks.forEach(function (b) {
        list.appendChild(el('li', { 'data-name': b.name.toLowerCase() },
          el('button', { type: 'button', 'data-bank': b.identifier, on: { click: function () { step({ action: 'bank', bank_identifier: b.identifier }); } } },
            logo(b), el('span', { text: b.name }),
            b.maintenance ? el('span', { class: 'badge', text: t('maintenance') }) : null)));
      });
      var search = el('input', {
        type: 'search', id: 'bank-search', autocomplete: 'off',
        on: {
          input: function () {
            var q = search.value.trim().toLowerCase();
            var shown = 0;
            Array.prototype.forEach.call(list.children, function (li) {
              var match = li.getAttribute('data-name').indexOf(q) !== -1;
              li.hidden = !match;
              shown += match ? 1 : 0;
            });
            none.hidden = shown > 0;
          }
        }
      });
      screen('BANK_LIST', t('chooseBank'), [
        el('p', { class: 'lead', text: t('chooseBankLead') }),
        el('div', null, el('label', { for: 'bank-search', text: t('search') }), search),
        list, none,
        el('button', { type: 'button', class: 'link', 'data-action': 'bank_not_listed', on: { click: function () { step({ action: 'bank_not_listed' }); } } }, t('notListed'))
      ]);
    },
    CONSENT: function (v) {
      var list = el('ul', { class: 'permissions' });
      v.permissions.forEach(function (p) {
        list.appendChild(el('li', { 'data-permission': p, text: (TEXT[lang].permission[p] || p) }));
      });
      screen('CONSENT', t('consentTitle'), [
        el('p', { class: 'lead', text: t('consentLead') }), list, el('div', { class: 'spacer' }),
        el('button', { type: 'button', class: 'primary', 'data-action': 'consent', on: { click: function () { step({ action: 'consent' }); } } }, t('allow'))
      ]);
    },
    LOGIN: function (v) {
      var user = el('input', { type: 'text', id: 'username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
      var pass = el('input', { type: 'password', id: 'password', name: 'password', autocomplete: 'current-password', required: true });
      var form = el('form', {
        id: 'login', novalidate: true,
        on: { submit: function (e) { e.preventDefault(); step({ action: 'login', username: user.value, password: pass.value }); } }
      },
      errorLine(v),
      el('div', null, el('label', { for: 'username', text: t('username') }), user),
      el('div', null, el('label', { for: 'password', text: t('password') }), pass),
      el('button', { type: 'submit', class: 'primary', text: t('logIn') }),
      el('p', { class: 'hint', text: t('usersHint') }));
      var title = v.method === 'reconnect' ? 'reconnectTitle' : 'loginTitle';
      screen('LOGIN', t(title, { bank: v.bank.name }), [el('p', { class: 'lead', text: t('loginLead') }), form]);
      if (!v.error) { user.focus(); }
    },
    OTP: function (v) {
      var code = el('input', { type: 'text', id: 'otp', name: 'otp', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, maxlength: '8' });
      var form = el('form', {
        id: 'otp-form', novalidate: true,
        on: { submit: function (e) { e.preventDefault(); step({ action: 'otp', otp: code.value }); } }
      },
      errorLine(v),
      el('div', null, el('label', { for: 'otp', text: t('otp') }), code),
      el('button', { type: 'submit', class: 'primary', text: t('verify') }),
      el('p', { class: 'hint', text: t('otpHint', { otp: v.otp_hint }) }));
      screen('OTP', t('otpTitle'), [el('p', { class: 'lead', text: t('otpLead') }), form]);
      if (!v.error) { code.focus(); }
    },
    ACCOUNT_SELECTION: function (v) {
      var list = el('ul', { class: 'accounts' });
      var pay = (v.method === 'pay' || v.method === 'checkout') && v.payment;
      var single = v.single_account;
      var consent = v.method === 'authorizeConsent';
      // All offered at first; after "choose at least one", none is ticked.
      // A payment comes from one account: the first is chosen.
      v.accounts.forEach(function (a, n) {
        list.appendChild(el('li', null, el('label', null,
          el('input', { type: single ? 'radio' : 'checkbox', name: 'account', value: a.id, checked: single ? n === 0 : !v.error }),
          el('span', { text: a.name }), el('span', { class: 'number', text: a.currency + ' ' + a.number }))));
      });
      var form = el('form', {
        id: 'accounts', on: {
          submit: function (e) {
            e.preventDefault();
            var ids = Array.prototype.map.call(form.querySelectorAll('input[name=account]:checked'), function (i) { return i.value; });
            step({ action: 'accounts', account_ids: ids });
          }
        }
      }, errorLine(v), list, el('button', { type: 'submit', class: 'primary', text: pay ? t('payButton', v.payment) : consent ? t('authorise') : t('share') }));
      var source = v.method === 'createPaymentSource';
      var title = pay ? t('payTitle', v.payment) : source ? t('sourceTitle') : consent ? t('consentAuthTitle') : t('accountsTitle');
      var lead = pay ? t('payLead', v.payment) : source ? t('sourceLead') : consent ? t('consentAuthLead') : t('accountsLead');
      screen('ACCOUNT_SELECTION', title, [el('p', { class: 'lead', text: lead }), form]);
    },
    MANAGE_CONSENTS: function (v) {
      var list = el('ul', { class: 'consents', id: 'consents' });
      (v.consents || []).forEach(function (c) {
        var words = TEXT[lang].status || TEXT.en.status;
        list.appendChild(el('li', { 'data-consent': c.id, 'data-status': c.status },
          el('span', { class: 'name', text: (c.destination || '') + (c.reference ? ' · ' + c.reference : '') }),
          el('span', { class: 'number', text: t('upTo', { currency: c.currency, amount: c.max_individual_amount, period: c.period_type.toLowerCase() }) +
            (c.account ? ' · ' + (c.bank || '') + ' ' + c.account : '') }),
          el('span', { class: 'badge', text: words[c.status] || c.status }),
          c.revocable ? el('button', { type: 'button', 'data-action': 'revoke', 'data-consent': c.id, on: { click: function () { step({ action: 'revoke', consent_id: c.id }); } } }, t('revoke')) : null));
      });
      screen('MANAGE_CONSENTS', t('consentsTitle'), [
        el('p', { class: 'lead', text: (v.consents || []).length ? t('consentsLead') : t('noConsents') }),
        errorLine(v), list, el('div', { class: 'spacer' }),
        el('button', { type: 'button', class: 'primary', 'data-action': 'done', on: { click: function () { step({ action: 'done' }); } } }, t('done'))
      ]);
    },
    SUCCESS: function (v) {
      screen('SUCCESS', t(SUCCESS_TITLES[v.method] || 'successTitle'), [
        el('div', { class: 'done', 'aria-hidden': 'true', text: '✓' }),
        el('p', { class: 'lead', text: v.result ? v.result.message : '' }),
        el('div', { class: 'spacer' }),
        el('button', { type: 'button', class: 'primary', 'data-action': 'done', on: { click: function () { step({ action: 'done' }); } } }, t('done'))
      ]);
    }
  };

  // `action`: the step that led here. On the success screen the result is
  // delivered once the user is done (or closes).
  function render(v, action) {
    var first = view === null;
    view = v;
    if (first) { applyLook(v); }
    if (v.result && (v.screen !== 'SUCCESS' || action === 'done' || action === 'close')) {
      finish(v.result);
      return;
    }
    SCREENS[v.screen](v);
  }

  function hostedConfig() {
    var config = { generation: 'hosted', region: root.getAttribute('data-region') };
    ['method', 'app_token', 'customer_id', 'reconnect_id', 'payment_intent_id', 'consent_id', 'bank_identifier', 'account_type', 'access_token',
      'payment_source_id', 'payment_destination_id', 'customer_name', 'consent_attempt_id',
      'language', 'access_from', 'access_to', 'fail_redirect_url', 'success_redirect_url'].forEach(function (k) {
      if (query.get(k) !== null) { config[k] = query.get(k); }
    });
    if (query.get('sandbox') !== null) { config.sandbox = query.get('sandbox') === 'true'; }
    if (query.get('show_consent_explanation') !== null) {
      config.show_consent_explanation = query.get('show_consent_explanation') === 'true';
    }
    if (query.getAll('permissions').length) { config.permissions = query.getAll('permissions'); }
    // customization=key+value pairs: the '+' arrives as a space.
    var custom = {};
    query.getAll('customization').forEach(function (pair) {
      var at = pair.search(/[ +]/);
      if (at > 0) { custom[pair.slice(0, at)] = pair.slice(at + 1); }
    });
    if (Object.keys(custom).length) { config.customization = custom; }
    return config;
  }

  function boot() {
    if (!hosted) {
      api('/link/v1/sessions/' + encodeURIComponent(sessionId)).then(function (a) {
        if (!a.ok) { failure(a.body.message); return; }
        render(a.body);
      }).catch(function (e) { failure(e.message); });
      return;
    }
    var config = hostedConfig();
    if (config.language === 'ar') { lang = 'ar'; root.lang = 'ar'; root.dir = 'rtl'; }
    root.classList.add('hosted');
    api('/link/v1/sessions', config).then(function (a) {
      if (!a.ok) { finish(a.body); return; }
      sessionId = a.body.session_id;
      return api('/link/v1/sessions/' + encodeURIComponent(sessionId)).then(function (v) { render(v.body); });
    }).catch(function (e) { failure(e.message); });
  }

  boot();
}());
