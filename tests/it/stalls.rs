//! Peers that stop: an app that no longer reads its answer
//! (`proxy.client_write_timeout`) and an upstream that stops sending one
//! mid-body (`proxy.upstream_body_timeout`) are cut, with what they held.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{
    gated_first_chunk, h1_client, metric, read_head, Origin, OriginBuilder, Proxy,
};
use crate::tls::{pki, server_config, write};

#[tokio::test]
async fn an_upstream_that_stops_mid_body_has_the_answer_cut_and_its_connection_closed() {
    // An origin that sends a head, 1,000 of the 100,000 bytes it announces,
    // then nothing; it reports when its connection is closed.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let origin = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        read_head(&mut conn, &mut buf).await.expect("a request");
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
            .await
            .unwrap();
        conn.write_all(&[b'x'; 1000]).await.unwrap();
        let stalled = Instant::now();
        let mut rest = [0u8; 64];
        let end = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut rest)).await;
        assert!(
            matches!(end, Ok(Ok(0) | Err(_))),
            "the proxy closed the upstream connection: {end:?}"
        );
        stalled.elapsed()
    });
    let proxy = Proxy::in_front_of(
        &format!("http://{addr}"),
        "upstream_body_timeout = \"1s\"\n",
    )
    .await;
    let response = h1_client()
        .get(proxy.url("/download").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the app's read ended within 5 s instead of waiting for the upstream");
    let took = started.elapsed();
    assert!(read.is_err(), "the app sees an incomplete message");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cut after {took:?}, not after about 1 s"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), origin)
        .await
        .expect("the upstream connection was closed")
        .unwrap();
    assert!(closed < Duration::from_secs(3), "closed after {closed:?}");
    let series = r#"leanproxy_stalled_total{side="upstream"}"#;
    assert_eq!(metric(proxy.admin, series).await, 1.0);
    let series = r#"leanproxy_stalled_total{side="client"}"#;
    assert_eq!(metric(proxy.admin, series).await, 0.0);
}

#[tokio::test]
async fn an_https_upstream_that_stops_mid_body_has_the_answer_cut() {
    // hyper-util's pooled client (https, here over h2), not the kept
    // connections of a plain-http upstream.
    let server = pki("127.0.0.1");
    let origin = OriginBuilder::default()
        .tls(server_config(&server, None))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &server.ca_pem);
    let proxy = Proxy::in_front_of(
        &origin.url(),
        &format!("upstream_body_timeout = \"1s\"\n[tls]\nca_file = \"{ca}\"\n"),
    )
    .await;
    // `/gated` sends its first chunk, then nothing until the test opens
    // its gate, which it never does.
    let (_, body) = gated_first_chunk(&h1_client(), &proxy.url("/gated")).await;
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("the app's read ended within 5 s instead of waiting for the upstream");
    let took = started.elapsed();
    assert!(read.is_err(), "the app sees an incomplete message");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "cut after {took:?}, not after about 1 s"
    );
    let series = r#"leanproxy_stalled_total{side="upstream"}"#;
    assert_eq!(metric(proxy.admin, series).await, 1.0);
}

#[tokio::test]
async fn apps_that_stop_reading_a_large_answer_are_cut_with_their_upstream_connections() {
    const APPS: usize = 10;
    const ANSWER: usize = 8 << 20;
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "client_write_timeout = \"1s\"\n").await;
    let started = Instant::now();
    let mut apps = Vec::new();
    for _ in 0..APPS {
        let mut app = TcpStream::connect(proxy.addr).await.unwrap();
        let head = format!("GET /stream?bytes={ANSWER} HTTP/1.1\r\nhost: app\r\n\r\n");
        app.write_all(head.as_bytes()).await.unwrap();
        // And never reads.
        apps.push(app);
    }
    // The upstream connections open over time, every 250 ms for at most 10 s
    // (the answers start one after another: the test, the origin and the
    // proxy share one thread).
    let mut timeline = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        let open = origin.open();
        timeline.push(format!("{:.2}s: {open}", started.elapsed().as_secs_f64()));
        if origin.connections() == APPS && open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("upstream connections open: {}", timeline.join(", "));
    assert_eq!(
        origin.connections(),
        APPS,
        "every app's answer was under way"
    );
    assert_eq!(
        origin.open(),
        0,
        "upstream connections closed: {timeline:?}"
    );
    // Each app's connection ends: what the kernel still held, then the end
    // (or a reset), short of the whole answer.
    for mut app in apps {
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), app.read(&mut buf))
                .await
                .expect("the app's connection was closed, not left open")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(got < ANSWER, "cut short: {got} bytes");
    }
    let series = r#"leanproxy_stalled_total{side="client"}"#;
    assert_eq!(metric(proxy.admin, series).await, APPS as f64);
}
