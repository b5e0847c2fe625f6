//! Progress for client transfers: on a terminal, a bar per blob in flight (bytes) and a total
//! bar (bytes, speed, ETA), redrawn in place, with a line per finished blob above them;
//! elsewhere a plain line per blob; nothing with `--quiet`. Everything goes to stderr, so
//! stdout stays for results.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stowage_client::transfer::Progress;
use stowage_oci::Digest;

struct State {
    sizes: HashMap<String, u64>,
    /// Blobs in flight, in start order: (digest, size, bytes so far, bytes at start, start).
    active: Vec<(Digest, u64, u64, u64, Instant)>,
    /// Status lines currently on screen (to move back over).
    drawn: usize,
    done_bytes: u64,
    total: u64,
    finished: usize,
    last_draw: Option<Instant>,
    /// When the first byte started moving (speed and ETA count from there).
    first: Option<Instant>,
}

/// Progress on stderr.
pub struct Reporter {
    quiet: bool,
    tty: bool,
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
            state: Mutex::new(State {
                sizes: HashMap::new(),
                active: Vec::new(),
                drawn: 0,
                done_bytes: 0,
                total: 0,
                finished: 0,
                last_draw: None,
                first: None,
            }),
        }
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut s = self.state.lock().expect("progress");
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "{}", Self::erase(s.drawn));
            s.drawn = 0;
        }
        let _ = writeln!(err, "{text}");
        drop(err);
        self.draw(&mut s, true);
    }

    /// Move back over `n` status lines and clear them.
    fn erase(n: usize) -> String {
        if n == 0 {
            "\r\x1b[J".into()
        } else {
            format!("\x1b[{n}A\r\x1b[J")
        }
    }

    fn bar(done: u64, total: u64, width: usize) -> String {
        let filled = if total > 0 {
            ((done.min(total) as f64 / total as f64) * width as f64) as usize
        } else {
            0
        };
        format!("{}{}", "#".repeat(filled), "-".repeat(width - filled))
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
        let secs = s
            .first
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
            .max(0.001);
        let speed = s.done_bytes as f64 / secs;
        let eta = if speed > 0.0 && s.total > s.done_bytes {
            format!(" ETA {:.0}s", (s.total - s.done_bytes) as f64 / speed)
        } else {
            String::new()
        };
        let mut out = Self::erase(s.drawn);
        let mut lines = 0;
        for (d, size, done, from, started) in s.active.iter().take(8) {
            let rate = (done - from) as f64 / started.elapsed().as_secs_f64().max(0.001);
            let eta = if rate > 0.0 && size > done {
                format!(" ETA {:.0}s", (size - done) as f64 / rate)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{} [{}] {} / {} {}/s{eta}\n",
                short(d),
                Self::bar(*done, *size, 20),
                mib(*done),
                mib(*size),
                mib(rate as u64)
            ));
            lines += 1;
        }
        out.push_str(&format!(
            "total [{}] {} / {} {}/s{eta}  ({} blobs done)\n",
            Self::bar(s.done_bytes, s.total, 24),
            mib(s.done_bytes),
            mib(s.total),
            mib(speed as u64),
            s.finished
        ));
        lines += 1;
        s.drawn = lines;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{out}");
        let _ = err.flush();
    }

    /// Clear the status line at the end.
    pub fn finish(&self) {
        if !self.quiet && self.tty {
            let mut s = self.state.lock().expect("progress");
            let _ = write!(std::io::stderr().lock(), "{}", Self::erase(s.drawn));
            s.drawn = 0;
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
        s.first.get_or_insert_with(Instant::now);
        s.active.retain(|(d, ..)| d != digest);
        s.active
            .push((digest.clone(), size, offset, offset, Instant::now()));
        self.draw(&mut s, true);
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        let mut s = self.state.lock().expect("progress");
        s.done_bytes += bytes;
        if let Some(a) = s.active.iter_mut().find(|(d, ..)| d == digest) {
            a.2 += bytes;
        }
        self.draw(&mut s, false);
    }

    fn done(&self, digest: &Digest, how: &str) {
        let size = {
            let mut s = self.state.lock().expect("progress");
            s.finished += 1;
            let moved = s.active.iter().find(|(d, ..)| d == digest).map(|a| a.2);
            s.active.retain(|(d, ..)| d != digest);
            let size = s.sizes.get(&digest.to_string()).copied();
            // A blob that did not move (already there, mounted) counts as done in the total.
            if moved.is_none() && how != "copied" {
                s.done_bytes += size.unwrap_or(0);
            }
            size
        };
        let size = size.map(|n| format!(" ({})", mib(n))).unwrap_or_default();
        self.line(&format!("blob {}: {how}{size}", short(digest)));
    }

    fn note(&self, text: &str) {
        self.line(text);
    }

    fn plan(&self, blobs: &[(Digest, u64)]) {
        let mut s = self.state.lock().expect("progress");
        for (d, size) in blobs {
            if s.sizes.insert(d.to_string(), *size).is_none() {
                s.total += size;
            }
        }
    }
}
