//! Progress for client transfers: on a terminal, one status line redrawn in place (blobs done,
//! bytes, speed, ETA) with a line per finished blob above it; elsewhere a plain line per blob;
//! nothing with `--quiet`. Everything goes to stderr, so stdout stays for results.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stowage_client::transfer::Progress;
use stowage_oci::Digest;

struct State {
    sizes: HashMap<String, u64>,
    done_bytes: u64,
    total: u64,
    finished: usize,
    last_draw: Option<Instant>,
}

/// Progress on stderr.
pub struct Reporter {
    quiet: bool,
    tty: bool,
    started: Instant,
    state: Mutex<State>,
}

fn short(d: &Digest) -> String {
    let s = d.to_string();
    s.chars().take(19).collect()
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        Reporter {
            quiet,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            state: Mutex::new(State {
                sizes: HashMap::new(),
                done_bytes: 0,
                total: 0,
                finished: 0,
                last_draw: None,
            }),
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{text}");
    }

    fn draw(&self, s: &mut State, force: bool) {
        if self.quiet || !self.tty {
            return;
        }
        let now = Instant::now();
        if !force
            && s.last_draw
                .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        s.last_draw = Some(now);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let speed = s.done_bytes as f64 / secs;
        let eta = if speed > 0.0 && s.total > s.done_bytes {
            format!(" ETA {:.0}s", (s.total - s.done_bytes) as f64 / speed)
        } else {
            String::new()
        };
        let width = 24usize;
        let filled = if s.total > 0 {
            (s.done_bytes.min(s.total) as f64 / s.total as f64 * width as f64) as usize
        } else {
            0
        };
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {} / {} {}/s{eta}  ({} blobs done)",
            mib(s.done_bytes),
            mib(s.total),
            mib(speed as u64),
            s.finished
        );
        let _ = err.flush();
    }

    /// Clear the status line at the end.
    pub fn finish(&self) {
        if !self.quiet && self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

impl Progress for Reporter {
    fn start(&self, digest: &Digest, size: u64, offset: u64) {
        let mut s = self.state.lock().expect("progress");
        if s.sizes.insert(digest.to_string(), size).is_none() {
            s.total += size;
        }
        s.done_bytes += offset;
        self.draw(&mut s, true);
    }

    fn advance(&self, _digest: &Digest, bytes: u64) {
        let mut s = self.state.lock().expect("progress");
        s.done_bytes += bytes;
        self.draw(&mut s, false);
    }

    fn done(&self, digest: &Digest, how: &str) {
        let size = {
            let mut s = self.state.lock().expect("progress");
            s.finished += 1;
            s.sizes.get(&digest.to_string()).copied()
        };
        let size = size.map(|n| format!(" ({})", mib(n))).unwrap_or_default();
        self.line(&format!("blob {}: {how}{size}", short(digest)));
        let mut s = self.state.lock().expect("progress");
        self.draw(&mut s, true);
    }

    fn note(&self, text: &str) {
        self.line(text);
    }
}
