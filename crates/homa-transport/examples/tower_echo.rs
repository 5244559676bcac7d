//! A tower echo service and a client with a timeout layer, on loopback:
//! `cargo run -p homa-transport --example tower_echo`.
use std::time::Duration;

use bytes::Bytes;
use homa_transport::service::{serve, Client, ServeConfig};
use homa_transport::{AsyncSocket, Config, Request};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Server: echo every request, at most 16 at once, for 1 s.
    let mut cfg = Config::default();
    cfg.server = Some(true); // a server on port 0 (any free port)
    let server = AsyncSocket::bind_with("127.0.0.1:0", cfg)?;
    let addr = server.local_addr();
    let echo = service_fn(|r: Request| async move { Ok::<Bytes, std::io::Error>(r.body) });
    let config = ServeConfig {
        max_concurrency: 16,
        ..ServeConfig::default()
    };
    let stop = tokio::time::sleep(Duration::from_secs(1));
    let served = tokio::spawn(serve(server, echo, config, stop));

    // Client: a tower service with a 100 ms timeout per call.
    let socket = AsyncSocket::bind("127.0.0.1:0")?;
    let mut client = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(Client::new(socket, addr));
    let reply = client
        .ready()
        .await?
        .call(Bytes::from_static(b"hello"))
        .await?;
    println!("{:?} back from {addr}", reply);
    println!("server: {:?}", served.await??);
    Ok(())
}
