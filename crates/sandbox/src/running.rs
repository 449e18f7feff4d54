//! [`Running`]: a started sandbox, for programs that serve rather than run
//! to completion. The caller connects to the program's ports inside the
//! sandbox's own network namespace (through the init, see `channel`),
//! signals it, and waits for, or forces, its end.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::channel::{self, Reply, Request};
use crate::{Error, Outcome};

/// The run's result, set once by the thread collecting its output.
#[derive(Default)]
pub(crate) struct Finished {
    pub(crate) result: Mutex<Option<Result<Outcome, Error>>>,
    pub(crate) done: Condvar,
}

/// A sandbox whose program has been started ([`crate::Sandbox::spawn`]).
///
/// Every method takes `&self`, so one handle can be shared between threads:
/// several may connect at once while another waits. Dropping the handle
/// kills the sandbox and waits for it to be torn down.
///
/// The limits of the [`crate::Sandbox`] apply as in [`crate::Sandbox::run`]:
/// at `Limits::wall_time` the program gets SIGTERM, then SIGKILL.
pub struct Running {
    pub(crate) helper: libc::pid_t,
    /// The library's end of the channel to the init; `None` once the init
    /// has gone.
    pub(crate) channel: Mutex<Option<OwnedFd>>,
    /// The helper's control pipe: closing it stops the sandbox.
    pub(crate) control: Arc<Mutex<Option<File>>>,
    pub(crate) finished: Arc<Finished>,
    /// The read end of a pipe whose write end is closed when the run is
    /// over, for `poll`.
    pub(crate) ended: OwnedFd,
    pub(crate) collector: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("helper", &self.helper)
            .field("ended", &self.lock_result().is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these locks leaves nothing
    // half-done that matters here: the data is a descriptor or a result.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error every request gives once the sandbox has ended.
fn ended() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the sandbox has ended")
}

impl Running {
    /// A TCP connection from this process to `127.0.0.1:port` inside the
    /// sandbox's network namespace, where the program listens. The socket
    /// is made by the sandbox's init, in the namespace, and connected here;
    /// no privilege is needed for either.
    ///
    /// Nothing listening on the port is an error of kind
    /// [`io::ErrorKind::ConnectionRefused`], so a caller may poll for the
    /// program to become ready; once the sandbox has ended, the error is of
    /// kind [`io::ErrorKind::NotConnected`]. The connection may outlive the
    /// sandbox, which then resets it.
    pub fn connect(&self, port: u16) -> io::Result<TcpStream> {
        let socket = match self.request(Request::Socket)? {
            Reply::Socket(socket) => socket,
            Reply::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
            other => return Err(unexpected(&other)),
        };
        connect_loopback(&socket, port)?;
        Ok(TcpStream::from(socket))
    }

    /// Sends `signal` to the program, and to nothing else in the sandbox
    /// (not its init, nor other processes it started): what a container
    /// runtime does with an image's `StopSignal`. Once the program has ended
    /// the error is ESRCH.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        match self.request(Request::Signal(signal)) {
            Ok(Reply::Signalled) => Ok(()),
            Ok(Reply::Failed(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Ok(other) => Err(unexpected(&other)),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                Err(io::Error::from_raw_os_error(libc::ESRCH))
            }
            Err(err) => Err(err),
        }
    }

    /// Stops the sandbox at once: every process in it is killed, and the
    /// outcome says `StopReason::Cancelled` (unless the program had already
    /// ended). Returns without waiting; [`Running::wait`] then gives the
    /// outcome, with everything the program wrote until then.
    pub fn kill(&self) {
        // Closing the control pipe is the helper's signal to kill the
        // sandbox's init, whose end takes every process in it along.
        lock(&self.control).take();
    }

    /// Waits for the program to end, or the sandbox to be stopped, and
    /// returns its outcome. Can be called again, and from several threads:
    /// each gets the same outcome.
    pub fn wait(&self) -> Result<Outcome, Error> {
        let guard = self
            .finished
            .done
            .wait_while(lock(&self.finished.result), |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        Self::outcome(&guard).expect("a finished run")
    }

    /// Like [`Running::wait`], giving up after `timeout` with `None`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<Outcome>, Error> {
        let (guard, _) = self
            .finished
            .done
            .wait_timeout_while(lock(&self.finished.result), timeout, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        Self::outcome(&guard).transpose()
    }

    fn outcome(result: &Option<Result<Outcome, Error>>) -> Option<Result<Outcome, Error>> {
        result.as_ref().map(|r| match r {
            Ok(outcome) => Ok(outcome.clone()),
            Err(err) => Err(err.duplicate()),
        })
    }

    fn lock_result(&self) -> MutexGuard<'_, Option<Result<Outcome, Error>>> {
        lock(&self.finished.result)
    }

    /// One exchange with the init. The lock keeps each request with its
    /// reply when several threads ask at once; the init answers at once, so
    /// it is held only that long.
    fn request(&self, request: Request) -> io::Result<Reply> {
        let mut channel = lock(&self.channel);
        let Some(fd) = channel.as_ref() else {
            return Err(ended());
        };
        match channel::exchange(fd.as_fd(), request)? {
            Some(reply) => Ok(reply),
            None => {
                *channel = None;
                Err(ended())
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
        if let Some(collector) = self.collector.take() {
            let _ = collector.join();
        }
    }
}

fn unexpected(reply: &Reply) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the sandbox's init answered {reply:?}"),
    )
}

/// Connects `socket` to `127.0.0.1:port` in whichever network namespace it
/// was made in.
fn connect_loopback(socket: &OwnedFd, port: u16) -> io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a valid sockaddr_in whose size is passed along.
    let ret = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() != io::ErrorKind::Interrupted {
        return Err(err);
    }
    // An interrupted connect goes on in the background: wait for it to be
    // writable, then read how it ended.
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, -1) } >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `error` and `len` are valid for the kernel to write.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    if error != 0 {
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_handle_serves_many_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Running>();
    }

    #[test]
    fn an_error_handed_out_again_keeps_its_errno_and_message() {
        let first = Error::Io(io::Error::from_raw_os_error(libc::EPIPE));
        let Error::Io(again) = first.duplicate() else {
            panic!("another variant")
        };
        assert_eq!(again.raw_os_error(), Some(libc::EPIPE));
        let first = Error::Helper("helper exit status: 3".into());
        assert_eq!(first.duplicate().to_string(), first.to_string());
    }
}
