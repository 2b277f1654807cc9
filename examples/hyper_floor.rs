//! The least a hyper 1 reverse proxy does per exchange, as a reference for
//! `benches/load/compare.py --floor`: HTTP/1.1 in, HTTP/1.1 out, one upstream
//! connection per app connection, no header hygiene, no logging, no
//! inspection, no timeouts, no error answers. Not a product: it shows how much
//! of leanproxy's cost per exchange is hyper's and how much is its own.
//!
//! ```text
//! cargo run --release --example hyper_floor -- 127.0.0.1:PORT 127.0.0.1:UPSTREAM_PORT
//! ```

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Error = Box<dyn std::error::Error + Send + Sync>;

// One worker thread, as leanproxy's default `proxy.workers`: the two are
// compared on the same footing.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR".into());
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("hyper_floor listening on {}", listener.local_addr()?);
    let upstream: Arc<str> = upstream.into();
    loop {
        let (app, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(app, &upstream).await {
                eprintln!("hyper_floor: {e}");
            }
        });
    }
}

/// Serves one app connection over one upstream connection.
async fn relay(app: TcpStream, upstream: &str) -> Result<(), Error> {
    app.set_nodelay(true)?;
    let origin = TcpStream::connect(upstream).await?;
    origin.set_nodelay(true)?;
    let (sender, connection) = client::handshake::<_, Incoming>(TokioIo::new(origin)).await?;
    tokio::spawn(connection);
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req| forward(sender.clone(), req));
    server::Builder::new()
        .serve_connection(TokioIo::new(app), service)
        .await?;
    Ok(())
}

/// Sends `req` on the connection, in origin-form.
async fn forward(
    sender: Arc<Mutex<client::SendRequest<Incoming>>>,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, Error> {
    let origin_form = Uri::try_from(req.uri().path_and_query().map_or("/", |pq| pq.as_str()))?;
    *req.uri_mut() = origin_form;
    let mut sender = sender.lock().await;
    sender.ready().await?;
    Ok(sender.send_request(req).await?)
}
