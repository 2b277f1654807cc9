//! Process-level behaviour: graceful shutdown, streaming large bodies in bounded
//! memory, the `check` command and startup refusals.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;

use crate::support::{
    gated_first_chunk, get, h1_client, raw_get, run_binary, send, streamed, wait_bounded, Binary,
    Fnv, Origin, Proxy,
};

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_stops_accepting() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::in_front_of(&origin.url(), "").await;
    let url = proxy.url("/slow?ms=700");
    let in_flight = tokio::spawn(async move { get(&h1_client(), &url).await });
    origin.wait_in_flight(1).await;

    let server = proxy.begin_shutdown();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"slow answer");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server finished draining")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

#[tokio::test]
async fn shutdown_closes_an_idle_keep_alive_connection_at_once() {
    let origin = Origin::start().await;
    // The default grace is 30 s: a drain that waited for the idle connection
    // instead of closing it would not end within the 5 s below.
    let mut proxy = Proxy::in_front_of(&origin.url(), "").await;
    let mut app = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (status, _) = raw_get(&mut app, "/etag").await.expect("the answer came");
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(5), proxy.begin_shutdown())
        .await
        .expect("the idle connection did not hold up the drain")
        .unwrap();
    let closed = closed_after(&mut app).await;
    assert!(
        closed < Duration::from_secs(5),
        "the server closed the idle connection, after {closed:?}"
    );
}

/// How long until the server closes `app`, which sends nothing more.
async fn closed_after(app: &mut tokio::net::TcpStream) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), app.read(&mut buf))
        .await
        .expect("the quiet connection was closed within 10 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn quiet_app_connections_are_closed_after_the_idle_timeout() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "client_idle_timeout = \"1s\"\n").await;
    // One that never sends a byte, and one quiet after an exchange.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (status, _) = raw_get(&mut kept, "/etag").await.expect("the answer came");
    assert_eq!(status, 200);
    let (silent, kept) = tokio::join!(closed_after(&mut silent), closed_after(&mut kept));
    for (what, took) in [("silent", silent), ("kept", kept)] {
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "the {what} connection closed after {took:?}, not after 1 to 1.5 s"
        );
    }
    // The listener still serves.
    assert_eq!(get(&h1_client(), &proxy.url("/etag")).await.status, 200);
}

#[tokio::test]
async fn a_request_waiting_past_the_idle_timeout_keeps_its_connection() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "client_idle_timeout = \"1s\"\n").await;
    let mut app = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // Nothing moves on the app connection while the upstream thinks.
    let (status, body) = raw_get(&mut app, "/slow?ms=2500")
        .await
        .expect("the slow answer came");
    assert_eq!((status, body.as_slice()), (200, &b"slow answer"[..]));
    // And the connection is still kept alive for the next request.
    let (status, _) = raw_get(&mut app, "/etag")
        .await
        .expect("the next answer came");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_answer_whose_body_pauses_past_the_idle_timeout_is_not_cut() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "client_idle_timeout = \"1s\"\n").await;
    for (version, client) in [
        ("HTTP/1.1", h1_client()),
        ("h2", crate::support::h2_client()),
    ] {
        let (first, body) = gated_first_chunk(&client, &proxy.url("/gated")).await;
        // Nothing moves for three times the timeout; the exchange is still on.
        tokio::time::sleep(Duration::from_secs(3)).await;
        origin.stats.gate.add_permits(1);
        let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the rest came")
            .unwrap_or_else(|e| panic!("{version}: the answer was cut: {e}"))
            .to_bytes();
        let mut whole = first.to_vec();
        whole.extend_from_slice(&rest);
        serde_json::from_slice::<serde_json::Value>(&whole)
            .unwrap_or_else(|e| panic!("{version}: the whole answer: {e}"));
    }
}

#[tokio::test]
async fn a_request_head_trickled_in_is_not_waited_for() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "client_idle_timeout = \"1s\"\n").await;
    let mut app = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    app.write_all(b"GET /etag HTTP/1.1\r\nhost: app\r\nx-slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    // A byte every 200 ms, the head never finished: bytes keep coming, but no
    // exchange starts.
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the trickled head was still waited for after 6 s"
        );
        if app.write_all(b"a").await.is_err() {
            break started.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(200), app.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
        }
    };
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(4),
        "closed after {closed:?}, not after about 1.5 s"
    );
}

#[tokio::test]
async fn shutdown_grace_bounds_a_request_that_never_ends() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::in_front_of(&origin.url(), "shutdown_grace = \"300ms\"\n").await;
    let url = proxy.url("/slow?ms=30000");
    let stuck = tokio::spawn(async move { h1_client().get(url.parse().unwrap()).await });
    origin.wait_in_flight(1).await;
    let started = std::time::Instant::now();
    proxy.begin_shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The connection was closed, not left running: the client sees an error now.
    let outcome = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the client is not left hanging")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the stuck exchange was cut off: {outcome:?}"
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let origin = Origin::start().await;
    let mut bin = Binary::spawn(&["--upstream", &origin.url()], &[]);
    let url = bin.url("/slow?ms=700");
    let in_flight = tokio::spawn(async move { get(&h1_client(), &url).await });
    origin.wait_in_flight(1).await;
    bin.terminate();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(&answer.body[..], b"slow answer");
    assert_eq!(bin.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(bin.output().contains("SIGTERM received"));
}

#[test]
fn a_signal_sent_as_soon_as_the_first_address_is_printed_stops_it_gracefully() {
    // The handlers must be in place before the "listening" lines: a script
    // that stops the proxy the moment it reads them gets a clean exit, not a
    // death by the default SIGTERM/SIGINT action. The signal goes straight from
    // the line reader, so the window is as small as a script can make it.
    let dir = tempfile::tempdir().unwrap();
    let signals = [rustix::process::Signal::TERM, rustix::process::Signal::INT];
    for (round, signal) in signals.repeat(3).into_iter().enumerate() {
        let mut child = Binary::command(&[], &[], dir.path()).spawn().unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        // Read every line to the end: a closed pipe would fail its later prints.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut sent = false;
        for line in stdout.lines() {
            if !sent && line.unwrap().starts_with("leanproxy proxy listening") {
                rustix::process::kill_process(pid, signal).unwrap();
                sent = true;
            }
        }
        assert!(sent, "round {round}: no proxy address printed");
        let status = wait_bounded(&mut child, Duration::from_secs(10));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(0), "round {round} ({status}): {stderr}");
    }
}

#[tokio::test]
async fn sixty_four_mib_streams_both_ways_in_bounded_memory() {
    const SIZE: u64 = 64 << 20;
    let origin = Origin::start().await;
    let bin = Binary::spawn(&["--upstream", &origin.url()], &[]);
    let client = h1_client();
    let baseline = bin.peak_rss();

    // Upload: the origin counts and hashes what arrives.
    let up = send(
        &client,
        Request::post(bin.url("/sink"))
            .body(streamed(SIZE, 256 * 1024))
            .unwrap(),
    )
    .await;
    let mut expected = Fnv::default();
    let mut offset = 0;
    while offset < SIZE {
        let n = (SIZE - offset).min(1 << 20);
        expected.update(&crate::support::pattern(offset, n as usize));
        offset += n;
    }
    assert_eq!(up.json()["body_len"], SIZE);
    assert_eq!(up.json()["body_fnv"], expected.0);

    // Download: hash as it arrives, never hold it.
    let response = client
        .get(bin.url(&format!("/stream?bytes={SIZE}")).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut len, mut sum) = (0u64, Fnv::default());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            len += data.len() as u64;
            sum.update(&data);
        }
    }
    assert_eq!(len, SIZE);
    assert_eq!(sum.0, expected.0);

    let peak = bin.peak_rss();
    eprintln!(
        "RSS baseline {} KiB, peak {} KiB",
        baseline >> 10,
        peak >> 10
    );
    assert!(
        peak.saturating_sub(baseline) < 12 << 20,
        "proxy peak RSS grew by {} MiB (baseline {} MiB) while streaming 64 MiB each way",
        (peak - baseline) >> 20,
        baseline >> 20
    );
}

#[tokio::test]
async fn admin_healthz_answers_on_its_own_listener() {
    let origin = Origin::start().await;
    let bin = Binary::spawn(&["--upstream", &origin.url()], &[]);
    let r = get(&h1_client(), &format!("http://{}/healthz", bin.admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let guarded = get(&h1_client(), &format!("http://{}/api/anything", bin.admin)).await;
    assert_eq!(
        guarded.status, 404,
        "no token configured on loopback: not guarded"
    );
}

#[test]
fn check_accepts_the_shipped_example() {
    let (code, stdout, stderr) = run_binary(&["check", "--config", "config/leanproxy.toml"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("config OK"), "{stdout}");
}

#[test]
fn check_names_a_misspelled_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "[proxy]\nresponse_timout = \"10s\"\n").unwrap();
    let (code, _, stderr) = run_binary(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("response_timout"), "{stderr}");
    assert!(stderr.contains("typo.toml"), "names the file: {stderr}");
}

#[test]
fn check_lists_every_invalid_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[proxy]\nconnect_timeout = \"fast\"\n[tls]\nca_file = \"/no/such/ca.pem\"\n[auth]\napp_token_policy = \"both\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_binary(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("proxy.connect_timeout"), "{stderr}");
    assert!(stderr.contains("auth.app_token_policy"), "{stderr}");
}

#[test]
fn check_reports_an_unreadable_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.toml");
    std::fs::write(&path, "[tls]\nca_file = \"/no/such/ca.pem\"\n").unwrap();
    let (code, _, stderr) = run_binary(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("tls.ca_file (/no/such/ca.pem)"), "{stderr}");
}

#[test]
fn non_loopback_admin_without_token_refuses_to_start() {
    let (code, _, stderr) = run_binary(&[
        "serve",
        "--upstream",
        "http://127.0.0.1:9",
        "--admin-listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("admin.token"), "{stderr}");
}

#[test]
fn bad_upstream_flag_is_refused_with_its_reason() {
    let (code, _, stderr) = run_binary(&["--upstream", "sandbox.leantech.me"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("proxy.upstream") && stderr.contains("no scheme"),
        "{stderr}"
    );
}

#[test]
fn command_line_flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.toml");
    std::fs::write(
        &path,
        "[proxy]\nupstream = \"http://127.0.0.1:1\"\nlisten = \"127.0.0.1:7070\"\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let (code, stdout, stderr) = run_binary(&["check", "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("upstream: http://127.0.0.1:1/"), "{stdout}");
    // `serve` with an invalid flag value names the flag's key, proving it was applied.
    let (code, _, stderr) = run_binary(&["serve", "--config", config, "--listen", "nowhere"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("proxy.listen") && stderr.contains("nowhere"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_log_lines_are_json_objects() {
    let origin = Origin::start().await;
    let mut bin = Binary::spawn(&["--upstream", &origin.url(), "--log-format", "json"], &[]);
    let r = get(&h1_client(), &bin.url("/fixed?len=3")).await;
    assert_eq!(r.status, 200);
    bin.terminate();
    assert_eq!(bin.wait_exit(Duration::from_secs(10)).await, Some(0));
    let output = bin.output();
    let log_lines: Vec<&str> = output.lines().filter(|l| l.starts_with('{')).collect();
    let exchange = log_lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each log line is JSON"))
        .find(|v| v["message"] == "exchange")
        .expect("an exchange event");
    assert_eq!(exchange["status"], 200);
    assert_eq!(exchange["path"], "/fixed");
}

/// Threads of `pid` of leanproxy's runtime (its workers; the blocking pool
/// shares the name but starts no thread for a proxy in front of an IP address).
fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "leanproxy-rt")
        .count()
}

#[tokio::test]
async fn proxy_workers_sets_the_runtime_threads() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // One by default; otherwise as configured.
    for (config, workers) in [("", 1), ("[proxy]\nworkers = 3\n", 3)] {
        let path = dir.path().join(format!("workers-{workers}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut bin = Binary::spawn(
            &[
                "--upstream",
                &origin.url(),
                "--config",
                path.to_str().unwrap(),
            ],
            &[],
        );
        let r = get(&h1_client(), &bin.url("/fixed?len=3")).await;
        assert_eq!(r.status, 200);
        assert_eq!(runtime_threads(bin.child.id()), workers);
        bin.terminate();
        assert_eq!(bin.wait_exit(Duration::from_secs(10)).await, Some(0));
    }
}
