//! A real browser for the tests: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) with fantoccini. One browser runs at a time (the
//! machine may have two cores); each gets its own profile directory and is
//! stopped with everything it started.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use leanproxy::body;
use serde_json::{json, Value};

/// Browser tests run one after another.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts Chromium, or says it cannot (see `support::missing`): `None`.
    pub async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            crate::support::missing(
                "Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
            );
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let port = read_port(&mut driver);
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1200,900", "--lang=en-US", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver opens a Chromium session");
        Some(Browser {
            client,
            driver,
            profile,
            _turn: turn,
        })
    }

    /// Closes the browser session and stops chromedriver.
    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium's processes outlive a killed chromedriver: find them by
        // this browser's own profile directory.
        kill_by_argument(&format!(
            "--user-data-dir={}",
            self.profile.path().display()
        ));
    }

    /// The element for `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let text = self
                    .client
                    .execute(
                        "return document.body ? document.body.innerText : '';",
                        vec![],
                    )
                    .await;
                panic!("no {css} within 10 s ({e}); the page at {url:?} shows {text:?}")
            }
        }
    }

    /// Replaces the current tab with a new one.
    pub async fn fresh_tab(&self) {
        let new = self.client.new_window(true).await.expect("a new tab");
        self.client
            .close_window()
            .await
            .expect("the old tab closes");
        self.client
            .switch_to_window(new.handle)
            .await
            .expect("the new tab");
    }

    /// Clicks `css`. The pages re-render a screen when a step's answer
    /// arrives, and disable their fields while it is on its way: an element
    /// found just before is gone or disabled, so it is found again, a few
    /// times.
    pub async fn click(&self, css: &str) {
        let mut last = None;
        for _ in 0..20 {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot click {css}: {last:?}");
    }

    /// Types `text` into the field `css`, replacing what it held (found
    /// again as `click` does).
    pub async fn type_into(&self, css: &str, text: &str) {
        let mut last = None;
        for _ in 0..20 {
            let field = self.find(css).await;
            match field.clear().await {
                Ok(()) => match field.send_keys(text).await {
                    Ok(()) => return,
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot type into {css}: {last:?}");
    }

    /// Runs `script` in the page; its `return` value.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .expect("script runs")
    }

    /// Polls `script` (which returns null until ready) for up to 10 s.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        for _ in 0..200 {
            let v = self.eval(script, vec![]).await;
            if !v.is_null() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: not within 10 s");
    }

    /// Saves a screenshot as `target/screenshots/{name}.png`, and under
    /// `docs/screenshots/` when `LEANPROXY_SCREENSHOTS=docs` (how the README's
    /// pictures are made).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")];
        if std::env::var("LEANPROXY_SCREENSHOTS").is_ok_and(|v| v == "docs") {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain app page, served from its own origin: `/?script=URL` loads URL.
pub async fn serve_site() -> SocketAddr {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let script = req
                        .uri()
                        .query()
                        .and_then(|q| {
                            form_urlencoded::parse(q.as_bytes())
                                .find(|(k, _)| k == "script")
                                .map(|(_, v)| v.into_owned())
                        })
                        .unwrap_or_default();
                    let html = format!(
                        "<!doctype html><html><head><meta charset=utf-8><title>An app</title></head>\
                         <body><h1>An app on its own origin</h1><div id=\"lean-link\"></div>\
                         <script>window.results = [];</script><script src=\"{script}\"></script></body></html>"
                    );
                    let mut r = hyper::Response::new(body::full(html));
                    r.headers_mut()
                        .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// chromedriver prints "… was started successfully on port N." when ready.
fn read_port(driver: &mut Child) -> u16 {
    let out = driver.stdout.take().expect("piped");
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.expect("chromedriver output");
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            let port = rest.trim_end_matches('.').trim().parse().expect("a port");
            // Keep draining its output so it never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return port;
        }
    }
    panic!("chromedriver exited before it listened");
}

/// Kills every process whose command line has `argument`.
fn kill_by_argument(argument: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == argument.as_bytes())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
