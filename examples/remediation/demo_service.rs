//! `warden-demo-service`: a tiny HTTP service to practise remediation on (and
//! what warden's end-to-end tests and the recovery benchmark supervise).
//!
//! ```text
//! warden-demo-service --port 18081 [--pidfile F] [--detach] [--load-file F]
//!                     [--crash-after MS] [--start-delay MS]
//! warden-demo-service pool --replicas N --dir D --base-port P [member options]
//! ```
//!
//! It answers `GET /health` with `200 ok` and `GET /metrics` with
//! `demo_up 1` and `demo_load_percent` (read from `--load-file`, 0 without one).
//! `--detach` starts it in the background (own process group, output to
//! /dev/null) and returns once it answers, as a daemon's start script does.
//! `--crash-after` makes it exit with status 1 that long after it started (a
//! crash loop); `--start-delay` makes it wait before it listens (a slow start).
//! `pool` keeps exactly N detached members on ports P, P+1, … with pidfiles
//! `D/member-<i>.pid`: a deploy tool's "scale to N".

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

struct Opts {
    port: u16,
    pidfile: Option<PathBuf>,
    detach: bool,
    load_file: Option<PathBuf>,
    crash_after: Option<u64>,
    start_delay: u64,
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        port: 0,
        pidfile: None,
        detach: false,
        load_file: None,
        crash_after: None,
        start_delay: 0,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--port" => o.port = val()?.parse().map_err(|_| "bad --port")?,
            "--pidfile" => o.pidfile = Some(val()?.into()),
            "--detach" => o.detach = true,
            "--load-file" => o.load_file = Some(val()?.into()),
            "--crash-after" => {
                o.crash_after = Some(val()?.parse().map_err(|_| "bad --crash-after")?)
            }
            "--start-delay" => o.start_delay = val()?.parse().map_err(|_| "bad --start-delay")?,
            "--pool-member" => {}
            other => o.rest.push(other.to_string()),
        }
    }
    Ok(o)
}

fn answers(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.contains(" 200 ")
}

/// Starts this program again in the background with `args` and waits until it
/// answers on `port`.
fn detach(args: &[String], port: u16) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(args.iter().filter(|a| *a != "--detach"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if answers(port) {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("the service exited at start: {st}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!(
        "the service did not answer on port {port} within 10s"
    ))
}

fn serve(o: &Opts) -> Result<(), String> {
    if o.start_delay > 0 {
        std::thread::sleep(Duration::from_millis(o.start_delay));
    }
    let listener =
        TcpListener::bind(("127.0.0.1", o.port)).map_err(|e| format!("port {}: {e}", o.port))?;
    if let Some(p) = &o.pidfile {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id())).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, p).map_err(|e| e.to_string())?;
    }
    if let Some(ms) = o.crash_after {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            std::process::exit(1);
        });
    }
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        let mut r = BufReader::new(match s.try_clone() {
            Ok(c) => c,
            Err(_) => continue,
        });
        if r.read_line(&mut line).is_err() {
            continue;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                break;
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let (status, body) = match path {
            "/health" => ("200 OK", "ok\n".to_string()),
            "/metrics" => {
                let load = o
                    .load_file
                    .as_ref()
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                ("200 OK", format!("demo_up 1\ndemo_load_percent {load}\n"))
            }
            _ => ("404 Not Found", "not found\n".to_string()),
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

fn alive(pidfile: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    (!stat.contains(") Z ")).then_some(pid)
}

fn pool(args: &[String]) -> Result<(), String> {
    let mut replicas = None;
    let mut dir = None;
    let mut base = None;
    let mut member = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--replicas" => replicas = Some(val()?.parse::<u16>().map_err(|_| "bad --replicas")?),
            "--dir" => dir = Some(PathBuf::from(val()?)),
            "--base-port" => base = Some(val()?.parse::<u16>().map_err(|_| "bad --base-port")?),
            other => member.push(other.to_string()),
        }
    }
    let (Some(n), Some(dir), Some(base)) = (replicas, dir, base) else {
        return Err("pool needs --replicas, --dir and --base-port".into());
    };
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for i in 0..64u16 {
        let pidfile = dir.join(format!("member-{i}.pid"));
        let running = alive(&pidfile);
        if i < n {
            if running.is_none() {
                let port = (base + i).to_string();
                let mut a = vec![
                    "--port".to_string(),
                    port,
                    "--pidfile".into(),
                    pidfile.display().to_string(),
                    "--pool-member".into(),
                ];
                a.extend(member.iter().cloned());
                detach(&a, base + i)?;
                println!("started member {i} on port {}", base + i);
            }
        } else if let Some(pid) = running {
            // SAFETY: kill only sends a signal.
            unsafe { libc_kill(pid, 15) };
            let _ = std::fs::remove_file(&pidfile);
            println!("stopped member {i}");
        }
    }
    println!("pool at {n} replicas");
    Ok(())
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = if args.first().map(String::as_str) == Some("pool") {
        pool(&args[1..])
    } else {
        match parse(&args) {
            Err(e) => Err(e),
            Ok(o) if !o.rest.is_empty() => Err(format!("unknown arguments {:?}", o.rest)),
            Ok(o) if o.port == 0 => Err("--port is required".into()),
            Ok(o) if o.detach => detach(&args, o.port),
            Ok(o) => serve(&o),
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-demo-service: {e}");
            ExitCode::from(1)
        }
    }
}
