//! Startup: config discovery and errors, port in use, --version/--help. Each a clear line and a
//! non-zero exit, never a panic.

mod common;

use common::*;
use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run proxy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(dir: &TempDir, text: &str) -> String {
    let p = dir.path().join("config.json");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("-config"));
    let (code, _, err) = run(&["--bogus"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--bogus"), "{err}");
}

#[test]
fn config_errors_name_the_field_and_exit_1() {
    let dir = TempDir::new("cfg");
    for (text, needle) in [
        (r#"{"ukey":{"pasword":"x"}}"#, "pasword"),
        (r#"{"ukey":{"timeout_ms":"soon"}}"#, "ukey.timeout_ms"),
        (r#"{"server":{"port":"eighty"}}"#, "server.port"),
        (r#"{"ukey":{"url":"http://127.0.0.1:61232"}}"#, "ukey.url"),
        ("{\"server\": ", "line"),
    ] {
        let path = config_file(&dir, text);
        let (code, _, err) = run(&["-config", &path]);
        assert_eq!(code, Some(1), "{text}: {err}");
        assert!(err.contains(needle), "{text}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let (code, _, err) = run(&["--config", "/nonexistent/config.json"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/config.json"), "{err}");
}

#[test]
fn config_is_found_next_to_the_executable() {
    // copy the binary into a folder with a config and start it from elsewhere
    let dir = TempDir::new("exe");
    let exe = dir.path().join("chinaport-proxy");
    std::fs::copy(env!("CARGO_BIN_EXE_chinaport-proxy"), &exe).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"ukey":{"timeout_ms":"bad"}}"#,
    )
    .unwrap();
    let cwd = TempDir::new("cwd");
    let out = run_copy(&exe, cwd.path());
    let err = String::from_utf8_lossy(&out.stderr);
    // the file next to the exe was the one read (it is the invalid one)
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("ukey.timeout_ms"), "{err}");
    assert!(
        err.contains(&dir.path().to_string_lossy().into_owned()),
        "{err}"
    );
}

/// Runs a freshly copied executable. While another test's child is between `fork` and `exec`
/// it still holds the copy's write handle, and Linux refuses to run the file ("Text file busy");
/// that clears within milliseconds, so this retries until a deadline.
fn run_copy(exe: &std::path::Path, cwd: &std::path::Path) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Command::new(exe).current_dir(cwd).output() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now()
            }
            other => return other.unwrap(),
        }
    }
}

#[test]
fn missing_config_says_where_it_looked() {
    let dir = TempDir::new("exe2");
    let exe = dir.path().join("chinaport-proxy");
    std::fs::copy(env!("CARGO_BIN_EXE_chinaport-proxy"), &exe).unwrap();
    let cwd = TempDir::new("cwd2");
    let out = run_copy(&exe, cwd.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("no config.json found"), "{err}");
    assert!(
        err.contains(&cwd.path().to_string_lossy().into_owned()),
        "{err}"
    );
}

#[test]
fn a_second_copy_on_the_same_port_says_so() {
    let sim = simulator();
    let first = Proxy::start(&sim.url(), serde_json::json!({}));
    let dir = TempDir::new("second");
    let mut config = Proxy::base_config(&sim.url());
    config["server"]["port"] = serde_json::json!(first.addr.port());
    let path = config_file(&dir, &config.to_string());
    let (code, _, err) = run(&["-config", &path]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("already running on port {}", first.addr.port())),
        "{err}"
    );
}

#[test]
fn check_config_prints_effective_settings_with_secrets_masked() {
    let dir = TempDir::new("check");
    let path = config_file(
        &dir,
        r#"{"ukey":{"password":"card-pw-4711"},"auth":{"app_secret":"erp-secret-0815"},"log":{"file":"x.log"}}"#,
    );
    let (code, out, err) = run(&["check-config", "-config", &path]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(
        !out.contains("card-pw-4711") && !out.contains("erp-secret-0815"),
        "{out}"
    );
    assert!(out.contains("***MASKED***"));
    assert!(
        out.contains("\"timeout_ms\": 10000"),
        "defaults are shown: {out}"
    );
    assert!(out.contains("x.log"));
    let bad = config_file(&dir, r#"{"ukey":{"url":"ws://:1"}}"#);
    let (code, _, err) = run(&["check-config", "-config", &bad]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ukey.url"), "{err}");
}

#[test]
fn log_file_is_written_and_startup_errors_reach_it() {
    let sim = simulator();
    let first = Proxy::start(&sim.url(), serde_json::json!({}));
    let dir = TempDir::new("logfile");
    let log = dir.path().join("logs").join("proxy.log");
    let mut config = Proxy::base_config(&sim.url());
    config["server"]["port"] = serde_json::json!(first.addr.port());
    config["log"] = serde_json::json!({"file": log.to_string_lossy(), "verbose": false});
    let path = config_file(&dir, &config.to_string());
    let (code, _, _) = run(&["-config", &path]);
    assert_eq!(code, Some(1));
    let text = std::fs::read_to_string(&log).expect("log file written");
    assert!(
        text.contains(&format!("already running on port {}", first.addr.port())),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "{text}"
    );
    assert!(!text.contains("panicked"));
}

/// The variables the proxy runs with, as Linux shows them for the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn environment_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_server_runs_without_glibcs_thread_cache_unless_the_operator_said_otherwise() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), serde_json::json!({}));
    // the same process, executed again with the cache off, and serving
    let env = environment_of(proxy.pid());
    // glibc rewrites the variable as it reads it, and /proc then shows only the first of the
    // settings, though both apply (malloc_stats() counts two arenas with this value, 13 without)
    assert!(
        env.iter()
            .any(|v| v.starts_with("GLIBC_TUNABLES=glibc.malloc.tcache_count=0")),
        "{env:?}"
    );
    proxy.wait_healthy();
    assert_eq!(
        proxy
            .post("/rpc", r#"{"_method":"cus-sec_SpcGetCertNo"}"#)
            .status,
        200
    );

    let own = "glibc.malloc.arena_max=2";
    let mine = Proxy::start_with_env(
        TempDir::new("tunables"),
        &Proxy::base_config(&sim.url()),
        &[("GLIBC_TUNABLES", own)],
    );
    let env = environment_of(mine.pid());
    assert!(
        env.iter().any(|v| *v == format!("GLIBC_TUNABLES={own}")),
        "{env:?}"
    );
    assert!(!env.iter().any(|v| v.contains("tcache_count")), "{env:?}");
}
