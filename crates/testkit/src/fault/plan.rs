//! Fault plans: which calls fail, and how, decided deterministically from a seed.
//!
//! A plan holds rules. Each names the operations it watches (a trait method's name such as
//! `upload_commit` or `put_manifest`, or a filesystem point such as `fs.fsync`; none: every
//! operation) and when it fires: the Nth call from when the rule was added, every call while
//! it stands, or each call with a given probability drawn from the plan's seeded generator.
//! The wrappers (`Faulty`) and the filesystem hook ask [`FaultPlan::decide`] before each call
//! and apply the answer. Every injected fault is logged with its operation and call number,
//! so a failing test can print what happened, and a seed replays it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use stowage_storage::IoFault;

/// What goes wrong with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The backend is unreachable: the call fails at once, with no effect (a transient error).
    Unavailable,
    /// The disk is full: the call fails with no effect.
    Full,
    /// The call succeeds after this delay.
    Latency(Duration),
    /// The connection drops mid-call: the call's effect may have happened (a write was
    /// committed, part of a stream was stored) but the caller gets a transient error; a
    /// stream being read ends with an error part-way.
    LostConnection,
    /// A filesystem fault (`fs.*` points only; elsewhere it acts as `Unavailable`).
    Io(IoFault),
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The Nth matching call (1-based) after the rule was added, once.
    Nth(u64),
    /// Every matching call.
    Every,
    /// Each matching call with this probability.
    Rate(f64),
}

#[derive(Debug, Clone)]
struct Rule {
    ops: Option<Vec<&'static str>>,
    trigger: Trigger,
    faults: Vec<Fault>,
    seen: u64,
}

/// One fault that was injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub op: &'static str,
    /// The operation's call number since the plan was made (1-based).
    pub call: u64,
    pub fault: Fault,
}

/// splitmix64: small, fast, and the same sequence on every platform for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

struct State {
    rng: Rng,
    rules: Vec<Rule>,
    calls: HashMap<&'static str, u64>,
    log: Vec<Injected>,
}

/// A set of fault rules shared by the wrapped stores and the filesystem hook of one test.
pub struct FaultPlan {
    seed: u64,
    state: Mutex<State>,
}

impl FaultPlan {
    /// An empty plan (nothing fails) whose random choices follow `seed`.
    pub fn new(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            state: Mutex::new(State {
                rng: Rng::new(seed),
                rules: Vec::new(),
                calls: HashMap::new(),
                log: Vec::new(),
            }),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, ops: Option<&[&'static str]>, trigger: Trigger, faults: &[Fault]) {
        assert!(!faults.is_empty(), "a rule needs at least one fault");
        self.lock().rules.push(Rule {
            ops: ops.map(<[_]>::to_vec),
            trigger,
            faults: faults.to_vec(),
            seen: 0,
        });
    }

    /// Fail the `nth` call (1-based, counted from now) of `op` with `fault`, once.
    pub fn at(&self, op: &'static str, nth: u64, fault: Fault) {
        self.add(Some(&[op]), Trigger::Nth(nth), &[fault]);
    }

    /// Fail every call of `op` with `fault` until [`FaultPlan::clear`].
    pub fn every(&self, op: &'static str, fault: Fault) {
        self.add(Some(&[op]), Trigger::Every, &[fault]);
    }

    /// Fail each call of `ops` (None: of any operation) with probability `rate`, with one of
    /// `faults` chosen at random.
    pub fn random(&self, ops: Option<&[&'static str]>, rate: f64, faults: &[Fault]) {
        self.add(ops, Trigger::Rate(rate), faults);
    }

    /// Remove every rule (the fault is gone); the log and call counts stay.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// The fault for this call of `op`, if any (the first rule that fires wins; every rule
    /// counts the call).
    pub fn decide(&self, op: &'static str) -> Option<Fault> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let call = {
            let n = st.calls.entry(op).or_insert(0);
            *n += 1;
            *n
        };
        let mut chosen = None;
        let mut spent = Vec::new();
        for (i, rule) in st.rules.iter_mut().enumerate() {
            if rule.ops.as_ref().is_some_and(|ops| !ops.contains(&op)) {
                continue;
            }
            rule.seen += 1;
            let fires = match rule.trigger {
                Trigger::Nth(n) => {
                    if rule.seen == n {
                        spent.push(i);
                    }
                    rule.seen == n
                }
                Trigger::Every => true,
                Trigger::Rate(p) => st.rng.unit() < p,
            };
            if fires && chosen.is_none() {
                let k = st.rng.below(rule.faults.len() as u64) as usize;
                chosen = Some(rule.faults[k]);
            }
        }
        for i in spent.into_iter().rev() {
            st.rules.remove(i);
        }
        if let Some(fault) = chosen {
            st.log.push(Injected { op, call, fault });
        }
        chosen
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.lock().log.clone()
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: &str) -> u64 {
        self.lock().calls.get(op).copied().unwrap_or(0)
    }

    /// Whether any rule is still waiting to fire (an `at` that was never reached).
    pub fn pending(&self) -> bool {
        self.lock()
            .rules
            .iter()
            .any(|r| matches!(r.trigger, Trigger::Nth(_)))
    }
}

/// The plan as the filesystem backend's I/O hook: `fs.write`, `fs.fsync`, `fs.dirsync`,
/// `fs.link` and `fs.rename`. `Unavailable` is `ETIMEDOUT`, `Full` is `ENOSPC`,
/// `LostConnection` makes the call take effect and then fail with `ETIMEDOUT`, `Latency`
/// blocks the I/O thread.
impl stowage_storage::IoHook for FaultPlan {
    fn before(&self, point: stowage_storage::IoPoint, _path: &std::path::Path) -> Option<IoFault> {
        const ETIMEDOUT: i32 = 110;
        const ENOSPC: i32 = 28;
        match self.decide(point.name())? {
            Fault::Io(f) => Some(f),
            Fault::Unavailable => Some(IoFault::Fail(ETIMEDOUT)),
            Fault::Full => Some(IoFault::Fail(ENOSPC)),
            Fault::LostConnection => Some(IoFault::AfterEffect(ETIMEDOUT)),
            Fault::Latency(d) => {
                std::thread::sleep(d);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_call_fires_once() {
        let p = FaultPlan::new(1);
        p.decide("a");
        p.at("a", 2, Fault::Full);
        assert_eq!(p.decide("b"), None);
        assert_eq!(p.decide("a"), None);
        assert_eq!(p.decide("a"), Some(Fault::Full));
        assert_eq!(p.decide("a"), None);
        assert_eq!(
            p.injected(),
            [Injected {
                op: "a",
                call: 3,
                fault: Fault::Full
            }]
        );
        assert!(!p.pending());
    }

    #[test]
    fn every_call_until_cleared() {
        let p = FaultPlan::new(1);
        p.every("a", Fault::Unavailable);
        assert_eq!(p.decide("a"), Some(Fault::Unavailable));
        assert_eq!(p.decide("a"), Some(Fault::Unavailable));
        p.clear();
        assert_eq!(p.decide("a"), None);
    }

    #[test]
    fn random_faults_replay_from_the_seed_at_about_their_rate() {
        let run = |seed| {
            let p = FaultPlan::new(seed);
            p.random(None, 0.05, &[Fault::Unavailable, Fault::Full]);
            (0..10_000).map(|_| p.decide("x")).collect::<Vec<_>>()
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let hits = a.iter().filter(|f| f.is_some()).count();
        assert!(
            (350..650).contains(&hits),
            "{hits} faults in 10000 calls at 5%"
        );
        assert!(a.contains(&Some(Fault::Full)) && a.contains(&Some(Fault::Unavailable)));
    }
}
