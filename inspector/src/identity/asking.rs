//! Asks a provider on a thread of its own, so a runtime that hangs or dies never stalls the
//! loop that asks. Each ask waits at most a budget; past it, or when the runtime fails, its
//! last answer stands (a runtime that went away mid-run does not take the names of what was
//! seen with it), and the loop is told once that it stopped answering and once that it
//! answers again. An answer that comes after its budget wakes the loop (the nudge), so it is
//! used at once, not at the next period.
use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{Error, Provider, Workload};
use crate::sys::nudge::Nudger;

/// How long the first ask waits (the names at start matter, and nothing else is waiting):
/// more than the runtimes' own request timeouts (10 s).
pub const FIRST_WAIT: Duration = Duration::from_secs(30);
/// How long a later ask waits before the last answer stands: a loop that reads the kernel's
/// ring buffers must not stop for longer.
pub const WAIT: Duration = Duration::from_secs(1);

/// An answer and how long it took.
type Answer = (Result<Vec<Workload>, Error>, Duration);

/// One provider behind its thread.
pub struct Asker {
    name: &'static str,
    ask: mpsc::Sender<Instant>,
    answers: mpsc::Receiver<Answer>,
    /// An ask was sent and its answer has not come yet.
    in_flight: bool,
    /// The last answer (`None`: none yet).
    last: Option<Vec<Workload>>,
    /// Its last answer was a list, within [`WAIT`]. While not, it is not waited for: its
    /// answers are used when they come.
    answering: bool,
    asked: u64,
}

impl Asker {
    /// Moves `provider` to a thread of its own. `nudger` is woken by a list that came after
    /// its ask stopped waiting.
    #[must_use]
    pub fn spawn(mut provider: Box<dyn Provider + Send>, nudger: Option<Nudger>) -> Self {
        let name = provider.name();
        let (ask, asks) = mpsc::channel::<Instant>();
        let (tx, answers) = mpsc::channel();
        let r = std::thread::Builder::new()
            .name(format!("ask-{name}"))
            .spawn(move || {
                // Ends when the asker is dropped (its sender goes).
                while let Ok(deadline) = asks.recv() {
                    let t = Instant::now();
                    let answer = provider.list();
                    let late = answer.is_ok() && Instant::now() > deadline;
                    if tx.send((answer, t.elapsed())).is_err() {
                        break;
                    }
                    if late && let Some(n) = &nudger {
                        n.nudge();
                    }
                }
            });
        if let Err(e) = r {
            // No thread: every ask says so, and the names come from cgroups.
            let (dead_ask, _) = mpsc::channel();
            let (tx, answers) = mpsc::channel();
            let _ = tx.send((
                Err(Error::io("starting a thread to ask it", e)),
                Duration::ZERO,
            ));
            return Self::new(name, dead_ask, answers);
        }
        Self::new(name, ask, answers)
    }

    fn new(
        name: &'static str,
        ask: mpsc::Sender<Instant>,
        answers: mpsc::Receiver<Answer>,
    ) -> Self {
        Self {
            name,
            ask,
            answers,
            in_flight: false,
            last: None,
            answering: true,
            asked: 0,
        }
    }

    /// The provider's name ("docker", "cri", ...).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether it answered its last ask in time (a container it has not named yet is
    /// waited for only then).
    #[must_use]
    pub const fn answering(&self) -> bool {
        self.answering
    }

    /// The workloads it knows: its fresh answer if it comes within the budget (the first
    /// ask [`FIRST_WAIT`], later ones [`WAIT`], none while it does not answer), its last one
    /// otherwise. A message when it stops answering in time and when it answers again.
    pub fn ask(&mut self) -> (Vec<Workload>, Vec<String>) {
        let mut note = None;
        // An answer that came after its ask stopped waiting: take it, then ask afresh.
        if self.in_flight {
            match self.answers.try_recv() {
                Ok(a) => {
                    self.in_flight = false;
                    note = self.take(a, WAIT);
                }
                Err(mpsc::TryRecvError::Empty) => {
                    // Still busy with the last ask (hung): do not wait on it again.
                    return (self.last.clone().unwrap_or_default(), Vec::new());
                }
                Err(mpsc::TryRecvError::Disconnected) => self.in_flight = false,
            }
        }
        let wait = match (self.asked, self.answering) {
            (0, _) => FIRST_WAIT,
            (_, true) => WAIT,
            (_, false) => Duration::ZERO,
        };
        self.asked += 1;
        if self.ask.send(Instant::now() + wait).is_ok() {
            self.in_flight = true;
        }
        let now = match self.answers.recv_timeout(wait) {
            Ok(a) => {
                self.in_flight = false;
                self.take(a, wait)
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !wait.is_zero() => {
                self.fail(&format!("no answer in {} s", wait.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.in_flight = false;
                self.fail("its thread ended")
            }
        };
        (
            self.last.clone().unwrap_or_default(),
            note.into_iter().chain(now).collect(),
        )
    }

    /// Takes an answer in; a message if it changed whether it answers in time.
    fn take(&mut self, (answer, took): Answer, wait: Duration) -> Option<String> {
        match answer {
            Ok(v) => {
                self.last = Some(v);
                if took > wait.max(WAIT) {
                    return self.fail(&format!("its answer took {:.1} s", took.as_secs_f64()));
                }
                if self.answering {
                    return None;
                }
                self.answering = true;
                Some(format!("{} answers again", self.name))
            }
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Marks it not answering; a message the first time (not again until it has answered).
    fn fail(&mut self, why: &str) -> Option<String> {
        if !std::mem::replace(&mut self.answering, false) {
            return None;
        }
        let kept = match &self.last {
            Some(v) if !v.is_empty() => format!(
                "the names of its {} workload(s) from its last answer stand until it answers again",
                v.len()
            ),
            _ => "its workloads are named from cgroups only until it answers".into(),
        };
        Some(format!("{}: {why}: {kept}", self.name))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A provider whose answers a test sets: lists, errors, or hangs (the last step
    /// repeats).
    #[derive(Clone, Default)]
    struct Scripted(Arc<Mutex<Vec<Step>>>);

    #[derive(Clone)]
    enum Step {
        Answer(&'static str),
        Fail,
        Hang(Duration, &'static str),
    }

    impl Provider for Scripted {
        fn name(&self) -> &'static str {
            "docker"
        }
        fn list(&mut self) -> Result<Vec<Workload>, Error> {
            let step = {
                let mut steps = self.0.lock().unwrap();
                if steps.len() > 1 {
                    steps.remove(0)
                } else {
                    steps[0].clone()
                }
            };
            let one = |n: &str| {
                vec![Workload {
                    name: n.into(),
                    ..Workload::default()
                }]
            };
            match step {
                Step::Answer(n) => Ok(one(n)),
                Step::Fail => Err(Error::Protocol("connection refused".into())),
                Step::Hang(d, n) => {
                    std::thread::sleep(d);
                    Ok(one(n))
                }
            }
        }
    }

    fn names(v: &[Workload]) -> Vec<&'static str> {
        v.iter()
            .map(|w| match w.name.as_str() {
                "web" => "web",
                "late" => "late",
                "db" => "db",
                _ => "?",
            })
            .collect()
    }

    /// Asks every 20 ms until it says `want` (at most 10 s); every name list and message
    /// on the way.
    fn ask_until(a: &mut Asker, want: &str) -> (Vec<Vec<&'static str>>, Vec<String>) {
        let (mut seen, mut notes) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (v, n) = a.ask();
            notes.extend(n);
            seen.push(names(&v));
            if names(&v) == [want] {
                return (seen, notes);
            }
            assert!(
                Instant::now() < deadline,
                "never said {want}: {seen:?} {notes:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_runtime_that_fails_keeps_its_last_names_and_is_told_once() {
        let script = Scripted::default();
        script.0.lock().unwrap().extend([
            Step::Answer("web"),
            Step::Fail,
            Step::Fail,
            Step::Fail,
            Step::Answer("db"),
        ]);
        let mut a = Asker::spawn(Box::new(script), None);
        let (v, n) = a.ask();
        assert_eq!((names(&v), n), (vec!["web"], Vec::<String>::new()));
        let (seen, notes) = ask_until(&mut a, "db");
        assert!(
            seen[..seen.len() - 1].iter().all(|v| v == &["web"]),
            "the last names stand: {seen:?}"
        );
        assert_eq!(
            notes,
            [
                "docker: connection refused: the names of its 1 workload(s) from its last \
                 answer stand until it answers again",
                "docker answers again"
            ]
        );
        assert!(a.answering());
    }

    #[test]
    fn a_runtime_that_hangs_stalls_an_ask_at_most_its_budget() {
        let script = Scripted::default();
        script.0.lock().unwrap().extend([
            Step::Answer("web"),
            Step::Hang(WAIT * 3, "late"),
            Step::Answer("db"),
        ]);
        let (nudge, nudger) = crate::sys::nudge::Nudge::new().unwrap();
        let mut a = Asker::spawn(Box::new(script), Some(nudger));
        assert_eq!(names(&a.ask().0), ["web"]);
        let t = Instant::now();
        let (v, n) = a.ask();
        let took = t.elapsed();
        assert_eq!(names(&v), ["web"], "the last answer stands");
        assert_eq!(
            n,
            [
                "docker: no answer in 1 s: the names of its 1 workload(s) from its last \
                 answer stand until it answers again"
            ]
        );
        assert!(took < WAIT * 2, "waited {took:?}");
        // Asked again while it still hangs: no wait at all.
        let t = Instant::now();
        let (v, n) = a.ask();
        assert_eq!((names(&v), n), (vec!["web"], Vec::<String>::new()));
        assert!(t.elapsed() < WAIT / 2);
        // The late answer wakes the loop; it is used, and the next, in time, ends it.
        let deadline = Instant::now() + WAIT * 10;
        while !nudge.take() {
            assert!(
                Instant::now() < deadline,
                "the late answer never woke the loop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (seen, notes) = ask_until(&mut a, "db");
        // (Its next ask, not waited for, is answered at once only on a lucky schedule.)
        assert!(seen[0] == ["late"] || seen[0] == ["db"], "{seen:?}");
        assert_eq!(notes, ["docker answers again"]);
    }
}
