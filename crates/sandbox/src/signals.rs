//! Termination requests to the host program (SIGINT, SIGTERM, SIGHUP;
//! `signal(7)`), turned into a call on a thread of their own, and a way to
//! stop every sandbox this process is running, so a runner interrupted by
//! Ctrl-C can take its sandboxes down and remove what it unpacked.

use std::sync::Mutex;

/// The helpers of the sandboxes running now, by pid.
static RUNNING: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

pub(crate) fn started(pid: libc::pid_t) {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

pub(crate) fn ended(pid: libc::pid_t) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Asks every sandbox this process runs to stop: each helper kills its
/// sandbox, removes its cgroup and reports the run as cancelled.
pub fn stop_all() {
    for pid in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: integer arguments; the pid is a child of this process that
        // has not been reaped (it is removed from the list before `wait`).
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset adds valid signals.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Calls `first` with the signal number on the first SIGINT, SIGTERM or
/// SIGHUP this process gets; a second one ends the process at once with
/// `128 + signal`. Call it in `main` before any other thread starts: the
/// signals are blocked in the calling thread, and so in every thread it
/// starts later, and waited for on a thread of their own. Child processes
/// inherit the mask: the sandbox helper clears its own first thing.
pub fn on_termination(first: impl FnOnce(i32) + Send + 'static) -> std::io::Result<()> {
    let set = signal_set();
    // SAFETY: a valid set; the old mask is not wanted.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(std::io::Error::from_raw_os_error(ret));
    }
    std::thread::Builder::new()
        .name("termination".into())
        .spawn(move || {
            let mut first = Some(first);
            loop {
                let mut signal = 0;
                // SAFETY: a valid set of signals blocked in this thread.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    continue;
                }
                match first.take() {
                    Some(f) => f(signal),
                    None => std::process::exit(128 + signal),
                }
            }
        })?;
    Ok(())
}
