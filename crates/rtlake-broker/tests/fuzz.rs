//! Property-based fuzzing of the embedded broker's request frames: any bytes a client can send
//! on the socket. Each case opens a connection, sends one whole frame (a size and that many
//! bytes: random, or a request header of a real API key and version with a random body), and
//! closes its side. The broker must answer or close the connection within a few seconds, never
//! hang it, and must go on serving: after every case a well-formed ApiVersions request on a new
//! connection is answered. A panic in the broker's task shows as a broker that stops answering.

use proptest::prelude::*;
use rtlake_broker::EmbeddedBroker;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: rtlake_core::testing::cases(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A frame's body: random bytes, or a request header (api key, version, correlation id, client
/// id) followed by random bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let header = (0i16..75, -1i16..20, any::<i32>(), -1i16..12).prop_map(|(k, v, c, id)| {
        let mut b = Vec::new();
        b.extend(k.to_be_bytes());
        b.extend(v.to_be_bytes());
        b.extend(c.to_be_bytes());
        b.extend(id.to_be_bytes());
        b.extend(std::iter::repeat_n(b'x', id.max(0) as usize));
        b
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (header, proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(mut h, r)| {
            h.extend(r);
            h
        }),
    ]
}

/// Sends one frame and reads until the broker closes or `wait` passes; `false` if it neither
/// answered nor closed (a hung connection).
async fn send(addr: SocketAddr, frame: &[u8], wait: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(frame).await.is_err() {
        return true; // closed on us: fine
    }
    let _ = s.shutdown().await;
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(_) => true, // bytes, a close or a reset
        Err(_) => false,
    }
}

/// ApiVersions v0 with correlation id 7: the broker is alive if it answers with that id.
async fn alive(addr: SocketAddr) -> bool {
    let mut req = Vec::new();
    req.extend(10i32.to_be_bytes());
    req.extend(18i16.to_be_bytes());
    req.extend(0i16.to_be_bytes());
    req.extend(7i32.to_be_bytes());
    req.extend((-1i16).to_be_bytes());
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(&req).await.is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await,
        Ok(Ok(_))
    ) && i32::from_be_bytes(head[4..8].try_into().unwrap()) == 7
}

#[test]
fn any_frame_gets_an_answer_or_a_close_and_the_broker_serves_on() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = rt
        .block_on(EmbeddedBroker::start(
            "127.0.0.1:0".parse().unwrap(),
            dir.path(),
        ))
        .unwrap();
    let addr = broker.addr();
    assert!(
        rt.block_on(alive(addr)),
        "the broker answers before fuzzing"
    );
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&body(), |b| {
            let mut frame = (b.len() as i32).to_be_bytes().to_vec();
            frame.extend(&b);
            let answered = rt.block_on(send(addr, &frame, Duration::from_secs(5)));
            prop_assert!(answered, "a frame of {} bytes hung its connection", b.len());
            prop_assert!(
                rt.block_on(alive(addr)),
                "the broker stopped answering after a frame of {} bytes: {:02x?}",
                b.len(),
                &b[..b.len().min(32)]
            );
            Ok(())
        })
        .unwrap();
    // Sizes that lie: negative, and far more than is sent.
    for size in [-1i32, i32::MIN, 1 << 30] {
        let mut frame = size.to_be_bytes().to_vec();
        frame.extend(b"short");
        assert!(
            rt.block_on(send(addr, &frame, Duration::from_secs(5))),
            "size {size} hung its connection"
        );
        assert!(rt.block_on(alive(addr)), "size {size}");
    }
    rt.block_on(broker.stop());
}
