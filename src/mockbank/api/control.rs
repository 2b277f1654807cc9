//! The Mockbank's `/oauth2/token` and its control API under `/_mockbank/`.

use super::*;

impl MockbankCore {
    // -------------------------------------------------------------- OAuth

    pub(super) fn token(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let form: HashMap<String, String> =
            form_urlencoded::parse(call.body).into_owned().collect();
        let oauth_error = |status: StatusCode, code: &str| Reply {
            status,
            body: json!({"error": code}).into(),
        };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
            ));
        }
        let id_ok = form
            .get("client_id")
            .is_some_and(|id| *id == self.settings.client_id);
        let secret_ok = form.get("client_secret").is_some_and(|s| {
            bool::from(
                s.as_bytes()
                    .ct_eq(self.settings.client_secret.expose().as_bytes()),
            )
        });
        if !(id_ok && secret_ok) {
            return Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        let scope_text = form.get("scope").cloned().unwrap_or_else(|| "api".into());
        let scope = match scope_text.as_str() {
            "api" => Scope::Api,
            other => match other.strip_prefix("customer.").map(Uuid::parse_str) {
                Some(Ok(customer)) if self.lock().customer(customer).is_some() => {
                    Scope::Customer(customer)
                }
                _ => return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_scope")),
            },
        };
        Ok(ok(self.mint(scope, &scope_text)))
    }

    /// Issues an OAuth token of `scope`, answered as `/oauth2/token` does.
    pub(super) fn mint(&self, scope: Scope, scope_text: &str) -> Value {
        let now = self.clock.elapsed();
        let token = self.jwt(&scope);
        {
            let mut state = self.lock();
            state.tokens_issued += 1;
            state.tokens.insert(
                token.clone(),
                Token {
                    scope,
                    expires: now + TOKEN_LIFETIME,
                },
            );
        }
        json!({
            "access_token": token,
            "scope": scope_text,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME.as_secs() - 1,
        })
    }

    /// A JWT-shaped token like Lean's (RS256 header, claims); Mockbank recognises
    /// its tokens by value, so the signature part is random.
    pub(super) fn jwt(&self, scope: &Scope) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let iat = self.clock.now().timestamp();
        let mut claims = json!({
            "sub": self.settings.client_id,
            "aud": "http://mockbank.leanproxy.local",
            "nbf": iat,
            "iss": "http://auth.mockbank.leanproxy.local",
            "exp": iat + TOKEN_LIFETIME.as_secs() as i64,
            "iat": iat,
            "jti": Uuid::new_v4(),
            "applications": [{"id": self.settings.client_id}],
        });
        match scope {
            Scope::Api => {
                claims["scope"] =
                    json!(["customer.read", "customer.write", "bank.read", "data.read"])
            }
            Scope::Customer(c) => {
                claims["scope"] = json!([
                    "customer.read",
                    "connect.write",
                    "connect.read",
                    "bank.read"
                ]);
                claims["customers"] = json!([{"id": c}]);
            }
        }
        let signature: [u8; 32] = rand::rng().random();
        format!(
            "{}.{}.{}",
            b64(&json!({"kid": "mockbank", "alg": "RS256"})),
            b64(&claims),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    }

    // -------------------------------------------------------------- control

    pub(super) fn control(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            ["users"] => {
                allow(m, &[M::GET])?;
                let users: Vec<Value> = self.users.iter().map(user_json).collect();
                Ok(ok(
                    json!({"otp": OTP, "region": self.region(), "users": users}),
                ))
            }
            ["link", "connect"] => allow(m, &[M::POST]).and_then(|()| self.connect(call)),
            ["payment-sources" | "payments"] | ["link", "intent" | "defaults" | "customer"] => {
                self.setup_control(call, rest)
            }
            ["link", "reconnect"] => allow(m, &[M::POST]).and_then(|()| self.reconnect(call)),
            ["consents", id, action] => self.consent_control(call, id, action),
            ["payouts", id, action] => self.payout_control(call, id, action),
            ["entities"] => {
                allow(m, &[M::GET])?;
                Ok(ok(json!({"entities": self.entities_overview()})))
            }
            ["entities", entity, "consent", "expire"] => {
                allow(m, &[M::POST])?;
                let id = parse_uuid("entity_id", entity)?;
                let mut state = self.lock();
                let e = state.entities.get_mut(&id).ok_or_else(unknown_entity)?;
                e.consent_expired = true;
                Ok(ok(json!({
                    "entity_id": id,
                    "consent_status": "EXPIRED",
                    "message": "Consent expired: data calls and refreshes answer CONSENT_EXPIRED until the user links again.",
                })))
            }
            ["banks", bank, change @ ("down" | "up")] => {
                allow(m, &[M::POST])?;
                self.set_bank(bank, *change == "up")
            }
            ["entities", entity, "expire"] => {
                allow(m, &[M::POST])?;
                let id = parse_uuid("entity_id", entity)?;
                let mut state = self.lock();
                let e = state.entities.get_mut(&id).ok_or_else(unknown_entity)?;
                e.expired = true;
                Ok(ok(
                    json!({"entity_id": id, "status": "EXPIRED", "message": "Session expired: the next data call answers RECONNECT_REQUIRED."}),
                ))
            }
            ["clock"] => {
                allow(m, &[M::GET])?;
                Ok(ok(self.clock_json()))
            }
            ["clock", action] => {
                allow(m, &[M::POST])?;
                match *action {
                    "advance" => self.clock.advance(advance_by(&call.json()?)?),
                    "pause" => self.clock.pause(),
                    "resume" => self.clock.resume(),
                    _ => return Err(not_found_url(call.path)),
                }
                Ok(ok(self.clock_json()))
            }
            ["oauth", "revoke"] => {
                allow(m, &[M::POST])?;
                let mut state = self.lock();
                let revoked = state.tokens.len();
                state.tokens.clear();
                Ok(ok(json!({"revoked": revoked})))
            }
            ["webhooks"] => {
                allow(m, &[M::GET])?;
                Ok(ok(json!({"deliveries": self.webhooks.deliveries()})))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    /// The controls the boilerplate page and tests set things up with:
    /// payment sources, payments, intents, customers, defaults.
    fn setup_control(&self, call: &Call<'_>, rest: &[&str]) -> Result<Reply, Reply> {
        use Method as M;
        let m = call.method;
        match rest {
            ["payment-sources"] => {
                allow(m, &[M::POST])?;
                let body = call.json()?;
                let customer = match body.get("customer_id").and_then(Value::as_str) {
                    None | Some("") => return Err(missing("customer_id")),
                    Some(v) => parse_uuid("customer_id", v)?,
                };
                let user = self.login(&body)?;
                let accounts = match body.get("account_ids") {
                    None | Some(Value::Null) => None,
                    Some(list) => Some(
                        self.chosen_accounts(user, list)
                            .map_err(|why| invalid("account_ids", &why))?,
                    ),
                };
                self.create_source(customer, user, accounts).map(ok)
            }
            ["payments"] => {
                allow(m, &[M::POST])?;
                let body = call.json()?;
                let intent = match body.get("payment_intent_id").and_then(Value::as_str) {
                    None | Some("") => return Err(missing("payment_intent_id")),
                    Some(v) => parse_uuid("payment_intent_id", v)?,
                };
                let user = self.login(&body)?;
                let account = match body.get("account_id").and_then(Value::as_str) {
                    None | Some("") => self.users[user].accounts[0].id,
                    Some(v) => parse_uuid("account_id", v)?,
                };
                self.pay(intent, user, account).map(ok)
            }
            ["link", "intent"] => {
                allow(m, &[M::POST])?;
                let mut body = call.json()?;
                body["currency"] = json!(self.region().currency());
                self.new_intent(&body)
            }
            ["link", "defaults"] => {
                allow(m, &[M::GET])?;
                Ok(ok(self.link_defaults()))
            }
            ["link", "customer"] => {
                allow(m, &[M::POST])?;
                let app_user_id = call
                    .json()
                    .ok()
                    .and_then(|b| {
                        b.get("app_user_id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| {
                        format!("boilerplate-{}", &Uuid::new_v4().simple().to_string()[..8])
                    });
                let customer = self.new_customer(app_user_id)?;
                let scope_text = format!("customer.{}", customer.id);
                let token = self.mint(Scope::Customer(customer.id), &scope_text);
                Ok(ok(json!({
                    "customer_id": customer.id,
                    "app_user_id": customer.app_user_id,
                    "access_token": token["access_token"],
                    "expires_in": token["expires_in"],
                })))
            }
            _ => Err(not_found_url(call.path)),
        }
    }

    /// Takes a bank down (maintenance) or brings it back, sending
    /// `bank.availability.updated` when that changes anything.
    fn set_bank(&self, identifier: &str, up: bool) -> Result<Reply, Reply> {
        let banks = self.region().banks();
        let bank = banks
            .iter()
            .find(|b| b.identifier == identifier)
            .ok_or_else(|| {
                let known: Vec<_> = banks.iter().map(|b| b.identifier).collect();
                invalid(
                    "bank_identifier",
                    &format!("{identifier} (give one of {})", known.join(", ")),
                )
            })?;
        let changed = {
            let mut state = self.lock();
            if up {
                state.banks_down.remove(bank.identifier)
            } else {
                state.banks_down.insert(bank.identifier)
            }
        };
        let payload = shapes::bank_availability(bank.identifier, up);
        if changed {
            self.webhooks.send(
                "bank.availability.updated",
                payload.clone(),
                "The bank status has been updated.",
            );
        }
        Ok(ok(payload))
    }

    /// Every linked entity with its test user and session state, for the
    /// dashboard: `active`, `expired` (the next data call answers
    /// `RECONNECT_REQUIRED`) or `reconnect_required` (with its reconnect id).
    fn entities_overview(&self) -> Vec<Value> {
        let now = self.clock.elapsed();
        let state = self.lock();
        state
            .entity_order
            .iter()
            .filter_map(|id| state.entities.get(id))
            .map(|e| {
                let user = &self.users[e.user];
                let session = match (
                    &e.pending,
                    State::session_expired(e, user.behaviour, now, self.timing),
                ) {
                    (Some(_), _) => "reconnect_required",
                    (None, true) => "expired",
                    (None, false) => "active",
                };
                json!({
                    "entity_id": e.id,
                    "customer_id": e.customer,
                    "username": user.username,
                    "bank_identifier": user.bank.identifier,
                    "session": session,
                    "reconnect_id": e.pending.as_ref().map(|p| p.reconnect_id),
                    "idle_seconds": now.saturating_sub(e.last_activity).as_secs(),
                })
            })
            .collect()
    }

    /// What the boilerplate page starts from: the built-in app token (not a
    /// configured one, which may be real), the OTP and the test users.
    fn link_defaults(&self) -> Value {
        let token = self.settings.app_token.expose();
        let users: Vec<Value> = self.users.iter().map(user_json).collect();
        json!({
            "app_token": (token == crate::mockbank::DEFAULT_APP_TOKEN).then_some(token),
            "otp": OTP,
            "users": users,
        })
    }

    pub(super) fn clock_json(&self) -> Value {
        json!({
            "now": ts(self.clock.now()),
            "paused": self.clock.is_paused(),
            "elapsed_seconds": self.clock.elapsed().as_secs_f64(),
        })
    }

    pub(super) fn login(&self, body: &Value) -> Result<usize, Reply> {
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let refused =
            |code: &str, message: &str| error(StatusCode::UNAUTHORIZED, code, message, false);
        let user = self
            .users
            .iter()
            .position(|u| u.username == text("username") && u.password == text("password"))
            .ok_or_else(|| {
                refused(
                    "INVALID_CREDENTIALS",
                    "The username or password is incorrect.",
                )
            })?;
        if self.users[user].behaviour.needs_otp() {
            otp_check(body)?;
        }
        Ok(user)
    }

    pub(super) fn connect(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let customer_id = body
            .get("customer_id")
            .and_then(Value::as_str)
            .map(|v| parse_uuid("customer_id", v))
            .transpose()?;
        let app_user_id = body.get("app_user_id").and_then(Value::as_str);
        let permissions = match body.get("permissions") {
            // Both regions' entities hold the nine data permissions (the KSA
            // sample's `entity.created` lists exactly these).
            None | Some(Value::Null) => shapes::ALL_PERMISSIONS.map(String::from).to_vec(),
            Some(list) => crate::mockbank::link::permissions(list, self.region().link())
                .map_err(|why| invalid("permissions", &why))?,
        };
        let user = self.login(&body)?;
        let accounts = match body.get("account_ids") {
            None | Some(Value::Null) => None,
            Some(list) => Some(
                self.chosen_accounts(user, list)
                    .map_err(|why| invalid("account_ids", &why))?,
            ),
        };
        let customer = {
            let state = self.lock();
            match (customer_id, app_user_id) {
                (Some(id), _) => state.customer(id).cloned(),
                (None, Some(app)) => state
                    .customers
                    .iter()
                    .find(|c| c.app_user_id == app)
                    .cloned(),
                (None, None) => return Err(missing("customer_id")),
            }
            .ok_or_else(unknown_customer)?
        };
        let entity = self.link_entity(Grant {
            customer,
            user,
            permissions,
            accounts,
        });
        Ok(ok(self.entity_json(&entity)))
    }

    /// The accounts of test user `user` named in `list` (an array of
    /// `account_id`s), or why they cannot be shared.
    pub(in crate::mockbank) fn chosen_accounts(
        &self,
        user: usize,
        list: &Value,
    ) -> Result<Vec<Uuid>, String> {
        let own = &self.users[user].accounts;
        let ids = list
            .as_array()
            .ok_or("give an array of the user's account ids")?;
        let mut chosen = Vec::new();
        for id in ids {
            let id = id
                .as_str()
                .and_then(|v| Uuid::parse_str(v).ok())
                .filter(|id| own.iter().any(|a| a.id == *id))
                .ok_or_else(|| format!("{id} is not one of this user's accounts"))?;
            if !chosen.contains(&id) {
                chosen.push(id);
            }
        }
        if chosen.is_empty() {
            return Err("choose at least one account".into());
        }
        Ok(chosen)
    }

    /// Links test user `grant.user` for `grant.customer`: a new entity, or the
    /// existing one renewed (same customer and user), with `entity.created` or
    /// `entity.updated` sent. The one code path of `/_mockbank/link/connect`
    /// and of Link in the browser.
    pub(in crate::mockbank) fn link_entity(&self, grant: Grant) -> Entity {
        let Grant {
            customer,
            user,
            permissions,
            accounts,
        } = grant;
        let now = self.clock.elapsed();
        let mut state = self.lock();
        let existing = state
            .entities
            .values_mut()
            .find(|e| e.customer == customer.id && e.user == user);
        let (entity, created) = match existing {
            Some(e) => {
                // Linking the same bank again renews the session.
                e.expired = false;
                e.pending = None;
                e.last_activity = now;
                e.session_start = now;
                e.permissions = permissions;
                e.accounts = accounts;
                e.consent_expired = false;
                (e.clone(), false)
            }
            None => {
                let e = Entity {
                    id: Uuid::new_v4(),
                    customer: customer.id,
                    user,
                    created: self.clock.now(),
                    last_activity: now,
                    session_start: now,
                    expired: false,
                    pending: None,
                    permissions,
                    accounts,
                    consent_expired: false,
                };
                state.entity_order.push(e.id);
                state.entities.insert(e.id, e.clone());
                (e, true)
            }
        };
        drop(state);
        let payload = json!({
            "id": entity.id,
            "app_user_id": customer.app_user_id,
            "customer_id": customer.id,
            "permissions": entity.permissions,
            "bank_details": shapes::bank_details(self.users[user].bank),
        });
        if created {
            self.webhooks.send(
                "entity.created",
                payload,
                "An entity object has been created.",
            );
        } else {
            self.webhooks.send(
                "entity.updated",
                payload,
                "An entity object has been updated.",
            );
        }
        entity
    }

    pub(super) fn reconnect(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let body = call.json()?;
        let reconnect_id = match body.get("reconnect_id").and_then(Value::as_str) {
            None | Some("") => return Err(missing("reconnect_id")),
            Some(v) => parse_uuid("reconnect_id", v)?,
        };
        let user = self.waiting_user(reconnect_id)?;
        if self.users[user].behaviour.needs_otp() {
            otp_check(&body)?;
        }
        let done = self.finish_reconnect(reconnect_id)?;
        Ok(ok(json!({
            "status": "SUCCESS",
            "message": "The reconnect was successful.",
            "entity_id": done.entity_id,
            "reconnect_id": done.reconnect_id,
            "results_id": done.results_id,
        })))
    }

    /// The test user whose entity waits for `reconnect_id`.
    pub(in crate::mockbank) fn waiting_user(&self, reconnect_id: Uuid) -> Result<usize, Reply> {
        self.lock()
            .waiting_for(reconnect_id)
            .map(|e| e.user)
            .ok_or_else(unknown_reconnect)
    }

    /// Restores the session of the entity waiting for `reconnect_id` and sends
    /// `entity.reconnected` and `results.ready`: the one code path of
    /// `/_mockbank/link/reconnect` and of Link's reconnect in the browser.
    pub(in crate::mockbank) fn finish_reconnect(
        &self,
        reconnect_id: Uuid,
    ) -> Result<Reconnected, Reply> {
        let now = self.clock.elapsed();
        let (entity_id, pending) =
            self.lock()
                .complete_reconnect(reconnect_id, now)
                .map_err(|e| {
                    match e {
                crate::mockbank::state::ReconnectError::Unknown => unknown_reconnect(),
                crate::mockbank::state::ReconnectError::Expired => error(
                    StatusCode::GONE,
                    "RECONNECT_ID_EXPIRED",
                    "The reconnect_id is older than 30 days; make a new data call for a new one.",
                    false,
                ),
            }
                })?;
        self.webhooks.send(
            "entity.reconnected",
            json!({"id": entity_id, "reconnect_id": pending.reconnect_id}),
            "The reconnect was successful and the results are ready for collection from the results endpoint.",
        );
        self.webhooks.send(
            "results.ready",
            json!({"id": pending.results_id}),
            "Your results are ready.",
        );
        Ok(Reconnected {
            entity_id,
            reconnect_id: pending.reconnect_id,
            results_id: pending.results_id,
        })
    }
}

/// What linking grants: a test user's bank connection for a customer.
pub(in crate::mockbank) struct Grant {
    pub(in crate::mockbank) customer: Customer,
    pub(in crate::mockbank) user: usize,
    pub(in crate::mockbank) permissions: Vec<String>,
    /// `None`: all of the user's accounts.
    pub(in crate::mockbank) accounts: Option<Vec<Uuid>>,
}

/// A completed reconnect.
pub(in crate::mockbank) struct Reconnected {
    pub(in crate::mockbank) entity_id: Uuid,
    pub(in crate::mockbank) reconnect_id: Uuid,
    pub(in crate::mockbank) results_id: Uuid,
}

fn unknown_reconnect() -> Reply {
    error(
        StatusCode::NOT_FOUND,
        "UNKNOWN_RECONNECT_ID",
        "No entity is waiting for a reconnect with this reconnect_id.",
        false,
    )
}

/// The `otp` of a login or reconnect, for a user who needs one: missing and
/// wrong are told apart.
fn otp_check(body: &Value) -> Result<(), Reply> {
    match body.get("otp").and_then(Value::as_str) {
        Some(OTP) => Ok(()),
        None | Some("") => Err(error(
            StatusCode::UNAUTHORIZED,
            "MISSING_OTP",
            "This user needs a one-time password: add \"otp\" (1111 in the Mockbank).",
            false,
        )),
        Some(_) => Err(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_OTP",
            "The one-time password is incorrect.",
            false,
        )),
    }
}

/// How far `POST /_mockbank/clock/advance` moves the clock:
/// `{"seconds": 600}` or `{"duration": "10m"}`.
fn advance_by(body: &Value) -> Result<Duration, Reply> {
    const FORMS: &str = r#"{"seconds": 600} or {"duration": "10m"}"#;
    match (body.get("seconds"), body.get("duration")) {
        (Some(seconds), None) => seconds
            .as_f64()
            .filter(|s| *s >= 0.0 && s.is_finite() && *s <= 1e12)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| invalid("seconds", &format!("a non-negative number, as in {FORMS}"))),
        (None, Some(duration)) => duration
            .as_str()
            .and_then(|d| humantime::parse_duration(d).ok())
            .ok_or_else(|| {
                invalid(
                    "duration",
                    &format!("a duration such as \"10m\" or \"90s\", as in {FORMS}"),
                )
            }),
        _ => Err(invalid(
            "seconds",
            &format!("give one of seconds and duration: {FORMS}"),
        )),
    }
}
