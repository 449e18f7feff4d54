//! Stopping the builds under way when the process is asked to end (SIGINT,
//! SIGTERM): once a caller has taken those signals over ([`arm`]), each
//! cargo runs in a process group of its own, which [`interrupt`] signals
//! (cargo, its rustc processes and build scripts alike), killing what is
//! left of it a moment later; no build starts after an interrupt.

use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

struct State {
    /// Whether a caller turns termination signals into [`interrupt`].
    armed: bool,
    interrupted: bool,
    /// The process group of each cargo running now.
    groups: Vec<Pid>,
}

static STATE: Mutex<State> = Mutex::new(State {
    armed: false,
    interrupted: false,
    groups: Vec::new(),
});

/// How long a build has to end on the caller's signal before what is left
/// of it is killed.
const GRACE: Duration = Duration::from_millis(500);

fn state() -> MutexGuard<'static, State> {
    // Nothing is left half done under this lock: it guards a list.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts every build started from now on in a process group of its own, for
/// [`interrupt`] to stop. Call it once the process handles SIGINT and
/// SIGTERM by calling [`interrupt`]: a terminal's Ctrl-C then reaches only
/// this process, not cargo, which is otherwise left in the caller's group
/// so that the terminal stops it along with everything else.
pub fn arm() {
    state().armed = true;
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    state().interrupted
}

/// Stops every build under way, and any that would start: each one's
/// process group gets `signal`, and whatever of it has not ended after a
/// short grace gets SIGKILL. Returns whether a build was running. Blocks
/// for at most the grace, so it can be called on a signal-handling thread.
pub fn interrupt(signal: i32) -> bool {
    let groups = {
        let mut state = state();
        state.interrupted = true;
        state.groups.clone()
    };
    let signal = Signal::from_named_raw(signal).unwrap_or(Signal::TERM);
    for group in &groups {
        let _ = kill_process_group(*group, signal);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && groups.iter().any(|g| state().groups.contains(g)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // cargo is reaped once it has ended, but what it started may live on in
    // its group; a group with nobody left is not there to signal.
    for group in &groups {
        let _ = kill_process_group(*group, Signal::KILL);
    }
    !groups.is_empty()
}

/// A build started by [`spawn`]: its process group is listed until this is
/// dropped, after the build was waited for.
pub(super) struct Build {
    pub(super) child: Child,
    group: Option<Pid>,
}

impl Drop for Build {
    /// Unlists the group; after an interrupt, first waits for everything
    /// in it (a build script, a rustc cargo started) to have ended, killing
    /// what is left after the grace, so that nothing of the build outlives
    /// the command.
    fn drop(&mut self) {
        let Some(group) = self.group else {
            return;
        };
        if interrupted() {
            let started = Instant::now();
            while test_kill_process_group(group).is_ok() && started.elapsed() < 2 * GRACE {
                if started.elapsed() >= GRACE {
                    let _ = kill_process_group(group, Signal::KILL);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        state().groups.retain(|g| *g != group);
    }
}

/// Starts `cmd`, in a process group of its own when [`arm`] was called;
/// refused once [`interrupt`] was.
pub(super) fn spawn(cmd: &mut Command) -> io::Result<Build> {
    // Held while spawning, so an interrupt either comes first and nothing
    // starts, or comes after and finds the new group listed.
    let mut state = state();
    if state.interrupted {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    if state.armed {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    }
    let child = cmd.spawn()?;
    let group = state.armed.then(|| Pid::from_child(&child));
    state.groups.extend(group);
    Ok(Build { child, group })
}
