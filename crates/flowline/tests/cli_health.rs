//! `flowline health`, the container healthcheck: exit 0 when the endpoint
//! answers 200 `ok`, exit 1 with the reason when it answers something else
//! or nothing. The endpoint here is a socket served by the test thread.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

/// Serves one connection with `response`; returns the URL.
fn serve_once(response: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", l.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(response.as_bytes());
        }
    });
    url
}

fn health(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowline"))
        .args(["health", "--timeout", "2s", "--url", url])
        .output()
        .unwrap()
}

#[test]
fn healthy_unhealthy_and_absent_endpoints() {
    let ok = health(&serve_once(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    ));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = health(&serve_once(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n",
    ));
    let e = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{e}");
    assert!(e.contains("503") && e.contains("busy"), "{e}");

    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = health(&format!("http://127.0.0.1:{port}/health"));
    let e = String::from_utf8_lossy(&gone.stderr);
    assert_eq!(gone.status.code(), Some(1), "{e}");
    assert!(e.contains("did not answer") && e.contains("Fix"), "{e}");
}
