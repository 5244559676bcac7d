//! The tower service layer (`service`): the concurrency limit, graceful
//! shutdown, the drain deadline, and timeouts through tower, over real
//! sockets on loopback.
#![cfg(feature = "tower")]
#![allow(non_snake_case)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use homa_transport::service::{serve, Client, ServeConfig, ServeStats};
use homa_transport::{AsyncSocket, Config, Error, Request};
use tokio::sync::{oneshot, Semaphore};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

fn server_socket() -> AsyncSocket {
    let mut c = Config::default();
    c.server = Some(true);
    AsyncSocket::bind_with("127.0.0.1:0", c).unwrap()
}

fn client_socket() -> AsyncSocket {
    AsyncSocket::bind("127.0.0.1:0").unwrap()
}

/// A service that counts requests in it and waits for `gate` before
/// echoing.
#[derive(Clone)]
struct Gated {
    in_service: Arc<AtomicUsize>,
    max_seen: Arc<AtomicUsize>,
    entered: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Gated {
    fn new() -> Gated {
        Gated {
            in_service: Arc::default(),
            max_seen: Arc::default(),
            entered: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn service(
        &self,
    ) -> impl Service<Request, Response = Bytes, Error = std::io::Error, Future: Send>
           + Clone
           + Send
           + 'static {
        let g = self.clone();
        service_fn(move |r: Request| {
            let g = g.clone();
            async move {
                let now = g.in_service.fetch_add(1, Ordering::SeqCst) + 1;
                g.entered.fetch_add(1, Ordering::SeqCst);
                g.max_seen.fetch_max(now, Ordering::SeqCst);
                let p = g.gate.acquire().await.expect("gate open");
                p.forget();
                g.in_service.fetch_sub(1, Ordering::SeqCst);
                Ok(r.body)
            }
        })
    }

    async fn wait_in_service(&self, n: usize) {
        for _ in 0..1000 {
            if self.in_service.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} requests never reached the service");
    }
}

/// A server socket serving a fresh [`Gated`] with `cfg` until `stop` is
/// sent.
struct GatedServer {
    addr: std::net::SocketAddr,
    g: Gated,
    stop: oneshot::Sender<()>,
    srv: tokio::task::JoinHandle<Result<ServeStats, Error>>,
}

fn serve_gated(cfg: ServeConfig) -> GatedServer {
    let server = server_socket();
    let addr = server.local_addr();
    let g = Gated::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let srv = tokio::spawn(serve(server, g.service(), cfg, async {
        let _ = stopped.await;
    }));
    GatedServer { addr, g, stop, srv }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve__concurrency_limit_respected() {
    let GatedServer { addr, g, stop, srv } = serve_gated(ServeConfig {
        max_concurrency: 3,
        drain_timeout: Duration::from_secs(5),
    });
    let client = client_socket();
    let calls: Vec<_> = (0..10u8)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.call_timeout(addr, vec![i; 100], Duration::from_secs(20))
                    .await
            })
        })
        .collect();
    g.wait_in_service(3).await;
    // Ten requests are waiting; with the gate shut, none beyond the limit
    // may enter.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(g.in_service.load(Ordering::SeqCst), 3);
    g.gate.add_permits(10);
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap().unwrap(), vec![i as u8; 100]);
    }
    assert_eq!(g.max_seen.load(Ordering::SeqCst), 3);
    let _ = stop.send(());
    assert_eq!(
        srv.await.unwrap().unwrap(),
        ServeStats {
            answered: 10,
            failed: 0,
            abandoned: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve__graceful_shutdown_answers_in_flight_and_refuses_new() {
    let GatedServer { addr, g, stop, srv } = serve_gated(ServeConfig::default());
    let client = client_socket();
    let in_flight: Vec<_> = (0..2u8)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.call_timeout(addr, vec![i; 10], Duration::from_secs(20))
                    .await
            })
        })
        .collect();
    g.wait_in_service(2).await;
    let _ = stop.send(());
    // Taken after the shutdown: never executed.
    let late = {
        let c = client.clone();
        tokio::spawn(async move {
            c.call_timeout(addr, &b"late"[..], Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    g.gate.add_permits(10);
    for (i, c) in in_flight.into_iter().enumerate() {
        assert_eq!(
            c.await.unwrap().unwrap(),
            vec![i as u8; 10],
            "in flight at shutdown: answered"
        );
    }
    let stats = srv.await.unwrap().unwrap();
    assert_eq!(stats.answered, 2);
    let late = late.await.unwrap();
    assert!(
        late.is_err(),
        "a request after shutdown was answered: {late:?}"
    );
    assert_eq!(
        g.entered.load(Ordering::SeqCst),
        2,
        "the late request reached the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve__drain_deadline_abandons_stragglers() {
    let GatedServer { addr, g, stop, srv } = serve_gated(ServeConfig {
        max_concurrency: 4,
        drain_timeout: Duration::from_millis(200),
    });
    let client = client_socket();
    let stuck = {
        let c = client.clone();
        tokio::spawn(async move {
            c.call_timeout(addr, &b"x"[..], Duration::from_secs(5))
                .await
        })
    };
    g.wait_in_service(1).await;
    let _ = stop.send(());
    // The gate never opens: serve gives up at the drain deadline.
    let stats = tokio::time::timeout(Duration::from_secs(10), srv)
        .await
        .expect("serve ends by its drain deadline")
        .unwrap()
        .unwrap();
    assert_eq!(stats.abandoned, 1);
    // Discarded when aborted: told it ran, not left to its 5 s deadline.
    let r = stuck.await.unwrap();
    assert!(matches!(r, Err(Error::Abandoned)), "{r:?}");
}

/// A service that fails: each request is discarded, its client's call
/// fails at once with `Abandoned`, and the RPC is freed (failed requests
/// used to stay unanswered: after `max_rpcs_per_peer` of them an outside
/// test's client could no longer reach the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve__failed_requests_are_discarded_and_their_calls_fail_at_once() {
    let mut c = Config::default();
    c.server = Some(true);
    c.proto.max_rpcs_per_peer = 8;
    let server = AsyncSocket::bind_with("127.0.0.1:0", c).unwrap();
    let addr = server.local_addr();
    let failing = service_fn(|r: Request| async move {
        if r.body.starts_with(b"fail") {
            Err(std::io::Error::other("refused"))
        } else {
            Ok(r.body)
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let srv = tokio::spawn(serve(
        server.clone(),
        failing,
        ServeConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = client_socket();
    for i in 0..40 {
        let t = std::time::Instant::now();
        let r = client
            .call_timeout(
                addr,
                Bytes::from(format!("fail {i}")),
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(r, Err(Error::Abandoned)), "call {i}: {r:?}");
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "call {i}: {:?}",
            t.elapsed()
        );
    }
    let r = client
        .call_timeout(addr, &b"fine"[..], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&r[..], b"fine");
    let _ = stop.send(());
    let stats = srv.await.unwrap().unwrap();
    assert_eq!((stats.answered, stats.failed), (1, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client__timeouts_through_tower_and_deadlines() {
    // A server socket whose application never takes a request.
    let silent = server_socket();
    let addr = silent.local_addr();
    let mut client = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(Client::new(client_socket(), addr));
    let err = client
        .ready()
        .await
        .unwrap()
        .call(Bytes::from_static(b"hi"))
        .await
        .unwrap_err();
    assert!(
        err.is::<tower::timeout::error::Elapsed>(),
        "tower's timeout: {err}"
    );
    let mut own = Client::new(client_socket(), addr).with_deadline(Duration::from_millis(100));
    let err = own
        .ready()
        .await
        .unwrap()
        .call(Bytes::from_static(b"hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded), "{err}");
    // And through a served echo, the same client type gets its answer.
    let server = server_socket();
    let echo = service_fn(|r: Request| async move { Ok::<Bytes, std::io::Error>(r.body) });
    let (stop, stopped) = oneshot::channel::<()>();
    let dest = server.local_addr();
    let srv = tokio::spawn(serve(server, echo, ServeConfig::default(), async {
        let _ = stopped.await;
    }));
    let mut c = Client::new(client_socket(), dest);
    let r = c
        .ready()
        .await
        .unwrap()
        .call(Bytes::from_static(b"ping"))
        .await
        .unwrap();
    assert_eq!(&r[..], b"ping");
    let _ = stop.send(());
    assert_eq!(srv.await.unwrap().unwrap().answered, 1);
    drop(silent);
}
