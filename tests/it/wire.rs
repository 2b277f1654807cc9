//! Message framing through the proxy, against origins written byte by byte:
//! conflicting lengths, broken chunks each way, oversized answer heads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use leanproxy::body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{get, h1_client, head_end, Origin, OriginBuilder, Proxy};
use crate::tls;

/// An origin that answers each request head with `answer`, byte for byte, and
/// then keeps the connection open until the app side closes it; over TLS
/// (HTTP/1.1, no ALPN) when given a config.
struct RawOrigin {
    url: String,
    task: JoinHandle<()>,
}

impl RawOrigin {
    async fn start(answer: Vec<u8>, tls: Option<rustls::ServerConfig>) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let url = match acceptor {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => answer_each_head(stream, &answer).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                answer_each_head(stream, &answer).await;
                            }
                        }
                    }
                });
            }
        });
        RawOrigin { url, task }
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_each_head<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = head_end(&buf) {
            buf.drain(..end);
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A proxy in front of `answer` served by a raw origin, for each way to the
/// upstream: plain http (the kept connections of `proxy/pool`) and https
/// (hyper-util's pooled client). The directory holds the CA file.
async fn proxies(answer: &[u8]) -> Vec<(&'static str, RawOrigin, Proxy, tempfile::TempDir)> {
    let plain = RawOrigin::start(answer.to_vec(), None).await;
    let server = tls::pki("127.0.0.1");
    let mut config = tls::server_config(&server, None);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let secure = RawOrigin::start(answer.to_vec(), Some(config)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::write(dir.path(), "ca.pem", &server.ca_pem);
    let via_plain = Proxy::in_front_of(&plain.url, "").await;
    let via_tls = Proxy::in_front_of(&secure.url, &format!("[tls]\nca_file = \"{ca}\"\n")).await;
    vec![
        ("http", plain, via_plain, tempfile::tempdir().unwrap()),
        ("https", secure, via_tls, dir),
    ]
}

/// Everything the proxy sends back on a fresh connection for `request`, until
/// it closes the connection or has been quiet for a while (the answers here
/// end or break; the limit only keeps a failing test from hanging).
async fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut app = TcpStream::connect(proxy).await.unwrap();
    app.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), app.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn transfer_encoding_wins_over_content_length_in_an_answer() {
    let body = "0123456789abcdefghijklmnopqrstuv"; // 32 bytes
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\
         transfer-encoding: chunked\r\n\r\n20\r\n{body}\r\n0\r\n\r\n"
    );
    let client = h1_client();
    for (way, _origin, proxy, _dir) in proxies(answer.as_bytes()).await {
        for _ in 0..2 {
            let answer = get(&client, &proxy.url("/both")).await;
            assert_eq!(answer.status, 200, "{way}");
            assert_eq!(std::str::from_utf8(&answer.body).unwrap(), body, "{way}");
            assert_ne!(answer.header("content-length"), Some("3"), "{way}");
        }
    }
}

#[tokio::test]
async fn a_bad_chunk_after_the_head_is_not_a_clean_empty_answer() {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
          transfer-encoding: chunked\r\n\r\nzz\r\n";
    for (way, _origin, proxy, _dir) in proxies(answer).await {
        let got = raw_exchange(proxy.addr, b"GET /broken HTTP/1.1\r\nhost: app\r\n\r\n").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 "),
            "{way}: an answer's head: {text:?}"
        );

        // What an HTTP client makes of it: a 502 in Lean's envelope, or a
        // head whose body ends in an error, never a complete answer.
        let response = h1_client()
            .request(
                Request::get(proxy.url("/broken"))
                    .body(body::empty())
                    .unwrap(),
            )
            .await
            .expect("an answer's head");
        let status = response.status();
        let collected = response.into_body().collect().await;
        if status == 502 {
            let envelope: serde_json::Value =
                serde_json::from_slice(&collected.unwrap().to_bytes()).unwrap();
            assert_eq!(envelope["metadata"]["source"], "leanproxy", "{way}");
        } else {
            assert!(
                collected.is_err(),
                "{way}: {status}: the body must end in an error"
            );
        }
    }
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_the_apps_400() {
    let plain = Origin::start().await;
    let server = tls::pki("127.0.0.1");
    let secure = OriginBuilder::default()
        .tls(tls::server_config(&server, None))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = tls::write(dir.path(), "ca.pem", &server.ca_pem);
    for (way, proxy) in [
        ("http", Proxy::in_front_of(&plain.url(), "").await),
        (
            "https",
            Proxy::in_front_of(&secure.url(), &format!("[tls]\nca_file = \"{ca}\"\n")).await,
        ),
    ] {
        let got = raw_exchange(
            proxy.addr,
            b"POST /sink HTTP/1.1\r\nhost: app\r\ncontent-type: application/json\r\n\
              transfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\nzz\r\n",
        )
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 "), "{way}: {text}");
        let envelope: serde_json::Value =
            serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(envelope["status"], "INVALID_PARAMETERS", "{way}");
        assert_eq!(envelope["metadata"]["cause"], "request_body", "{way}");
        assert_eq!(envelope["metadata"]["source"], "leanproxy", "{way}");

        let metrics = get(&h1_client(), &proxy.admin_url("/metrics")).await;
        let metrics = String::from_utf8_lossy(&metrics.body);
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("leanproxy_upstream_errors_total{")),
            "{way}: not an upstream failure: {metrics}"
        );
        assert!(
            metrics.contains("status=\"400\""),
            "{way}: counted: {metrics}"
        );
        assert!(
            !metrics.contains("status=\"502\""),
            "{way}: not counted as a 502: {metrics}"
        );
    }
}

#[tokio::test]
async fn answer_heads_over_64_kib_are_a_502() {
    for (kib, passes) in [(63, true), (70, false), (100, false)] {
        // About `kib` KiB of head: the status line, one large header, the end.
        let filler = kib * 1024 - 100;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-big: {}\r\n\r\nok",
            "b".repeat(filler)
        );
        for (way, _origin, proxy, _dir) in proxies(answer.as_bytes()).await {
            let answer = get(&h1_client(), &proxy.url("/big")).await;
            if passes {
                assert_eq!(answer.status, 200, "{way}: {kib} KiB");
                assert_eq!(answer.header("x-big").map(str::len), Some(filler));
            } else {
                assert_eq!(answer.status, 502, "{way}: {kib} KiB");
                assert_eq!(answer.json()["metadata"]["source"], "leanproxy");
            }
        }
    }
}
