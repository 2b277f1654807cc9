//! `proxy.max_connections`: a full listener stops accepting until a
//! connection closes.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{metric, raw_get, read_answer, Origin, Proxy};

#[tokio::test]
async fn a_full_listener_serves_the_next_connection_once_one_closes() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "max_connections = 10\n").await;
    let mut open = Vec::new();
    for _ in 0..10 {
        let mut app = TcpStream::connect(proxy.addr).await.unwrap();
        let (status, _) = raw_get(&mut app, "/etag").await.expect("served");
        assert_eq!(status, 200);
        open.push(app);
    }
    // The 11th connects (the kernel's backlog takes it) and asks; no answer
    // while the 10 stay open.
    let mut eleventh = TcpStream::connect(proxy.addr).await.unwrap();
    eleventh
        .write_all(b"GET /etag HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { (read_answer(&mut eleventh).await, eleventh) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the 11th was served with 10 open");
    let open_series = r#"leanproxy_connections_open{listener="proxy"}"#;
    assert_eq!(metric(proxy.admin, open_series).await, 10.0);
    let full = r#"leanproxy_connection_limit_reached_total{listener="proxy"}"#;
    assert_eq!(metric(proxy.admin, full).await, 1.0);
    // One closes: the 11th is served.
    drop(open.pop());
    let (answer, _eleventh) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the 11th was served once one closed")
        .unwrap();
    assert_eq!(answer.expect("an answer").0, 200);
    assert_eq!(metric(proxy.admin, open_series).await, 10.0);
    // The listener is full again: counted once more.
    assert_eq!(metric(proxy.admin, full).await, 2.0);
}
