//! Ctrl-C twice: the first asks for a graceful stop (a checkpoint, then
//! exit 0), the second exits at once with 130 while the first is still
//! waiting, here on a search server that is not there.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn wait_for(lines: &mpsc::Receiver<String>, what: &str, log: &mut String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                log.push_str(&l);
                log.push('\n');
                if l.contains(what) {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no `{what}` in the log:\n{log}");
}

fn interrupt(pid: u32) {
    let st = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_second_ctrl_c_exits_at_once_with_130() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.ndjson"),
        "{\"host\":\"a\",\"metric\":\"cpu\",\"value\":1,\"timestamp\":\"2026-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    let job = dir.path().join("job.toml");
    // Port 1: nothing listens; the sink retries its start without end.
    std::fs::write(
        &job,
        format!(
            "[source]\ntype = \"file\"\npath = \"{}/events.ndjson\"\n\n[sink]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:1\"\nindex = \"w\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "info")
        .args(["run", "--config"])
        .arg(&job)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut log = String::new();
    wait_for(&lines, "job started", &mut log);
    interrupt(child.id());
    wait_for(&lines, "stop requested", &mut log);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the graceful stop cannot finish without the search server:\n{log}"
    );
    interrupt(child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 10 s after the second Ctrl-C:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    wait_for(&lines, "second stop request", &mut log);
    assert_eq!(st.code(), Some(130), "{log}");
}
