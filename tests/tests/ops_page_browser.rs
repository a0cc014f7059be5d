//! The job page in a real browser: `flowline demo --http` serves it, and
//! headless Chromium (Debian's, driven by playwright-core from
//! `tests/browser`) loads it: no console errors, the graph shows the job's
//! operators, its figures change between two reads, the first listed key's
//! chart has points. Screenshots are kept in this test's output folder
//! (`target/tmp/ops_page_browser`).
//!
//! Needs `node` and `/usr/bin/chromium` (or `CHROMIUM`), and
//! `tests/browser/node_modules`: `scripts/install-deps --for-tests`
//! installs all three.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flowline_integration_tests::job::{bin, JobProcess};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

#[test]
fn the_page_shows_the_graph_moving_figures_and_a_chart() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}. Fix: scripts/install-deps --for-tests (Debian package chromium), or set CHROMIUM"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "no playwright-core in tests/browser. Fix: scripts/install-deps --for-tests (npm ci in tests/browser)"
    );
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops_page_browser");
    let _ = std::fs::remove_dir_all(&out_dir);
    let demo_out = tempfile::tempdir().unwrap();
    let mut demo = Command::new(bin("flowline"))
        .args([
            "demo",
            "--http",
            "127.0.0.1:0",
            "--window",
            "1s",
            "--rate",
            "2000",
            "--hosts",
            "5",
            "--out",
        ])
        .arg(demo_out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(JobProcess)
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("job page: ")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .expect("the demo prints its page address");
    // Keep reading its output so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let run = Command::new("node")
        .arg(browser_dir().join("page.mjs"))
        .arg(&url)
        .arg(&out_dir)
        .args([
            "generator",
            "try_map(decode)",
            "key_by>window(tumbling 1000 ms)",
            "windows",
        ])
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs (scripts/install-deps --for-tests installs it)");
    demo.kill().ok();
    let _ = demo.wait();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "page checks failed:\n{stderr}\n{stdout}"
    );
    eprintln!("browser: {stdout}screenshots in {}", out_dir.display());
    for shot in ["page-1.png", "page-2.png"] {
        let len = std::fs::metadata(out_dir.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(seen["points"].as_u64().unwrap() >= 3, "{seen}");
    assert_ne!(seen["first"], seen["second"], "{seen}");
}
