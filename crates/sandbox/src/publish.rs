//! Publishing a port of a running sandbox on the host, for `run -p`: each
//! connection accepted on a host listener is joined to a new connection to
//! the program's port inside the sandbox ([`Running::connect`]), bytes
//! copied both ways, as rootless runtimes' port drivers do. The sandbox
//! still has no network of its own beyond its loopback.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use crate::Running;

impl Running {
    /// Forwards every connection accepted on `listener` to `port` inside the
    /// sandbox until the sandbox ends, then closes what is still open and
    /// returns. Blocks: run it on a thread of its own, one per published
    /// port. A connection the program refuses is closed at once.
    pub fn publish(&self, listener: TcpListener, port: u16) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        // Both sides of every open connection, to be shut down when the
        // sandbox ends: a client that keeps an idle connection open would
        // otherwise keep its copying thread, and this call, waiting.
        let open: Mutex<Vec<(u64, TcpStream)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| -> io::Result<()> {
            let mut next_id = 0u64;
            let result = loop {
                let mut fds = [
                    libc::pollfd {
                        fd: listener.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: self.ended.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: `fds` is a valid array of two pollfd.
                if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } == -1 {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    break Err(err);
                }
                if fds[1].revents != 0 {
                    break Ok(());
                }
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                        ) =>
                    {
                        continue;
                    }
                    Err(err) => break Err(err),
                };
                let id = next_id;
                next_id += 1;
                let open = &open;
                scope.spawn(move || {
                    let _ = client.set_nonblocking(false);
                    let Ok(inner) = self.connect(port) else {
                        return;
                    };
                    let (Ok(client_copy), Ok(inner_copy)) = (client.try_clone(), inner.try_clone())
                    else {
                        return;
                    };
                    {
                        let mut open = lock(open);
                        // Registered under the lock the final shutdown
                        // takes: a connection made as the sandbox ended is
                        // either shut down there or not spliced at all.
                        if has_ended(self) {
                            return;
                        }
                        open.extend([(id, client_copy), (id, inner_copy)]);
                    }
                    splice(client, inner);
                    lock(open).retain(|(i, _)| *i != id);
                });
            };
            for (_, stream) in lock(&open).iter() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            result
        })
    }
}

/// Whether the run is over, without waiting.
fn has_ended(running: &Running) -> bool {
    let mut pfd = libc::pollfd {
        fd: running.ended.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout only samples its state.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Copies bytes both ways between two connected streams until both
/// directions are done. The end of one direction's input is passed on as
/// a shutdown of the other side's writing half, so a peer that half-closes
/// still gets its answer; a failed direction shuts both streams down.
pub(crate) fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    std::thread::scope(|scope| {
        scope.spawn(|| copy(a2, b2));
        copy(b, a);
    });
}

/// One direction: `from` to `to` until `from` ends.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A connected pair of TCP streams on the host's loopback.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    #[test]
    fn a_half_closed_request_still_gets_its_whole_answer() {
        // client <-> (outer, inner) spliced <-> server
        let (mut client, outer) = tcp_pair();
        let (inner, mut server) = tcp_pair();
        let spliced = std::thread::spawn(move || splice(outer, inner));
        client.write_all(b"question").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut asked = Vec::new();
        server.read_to_end(&mut asked).unwrap();
        assert_eq!(asked, b"question");
        let answer = vec![7u8; 1 << 20];
        server.write_all(&answer).unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), answer.len());
        spliced.join().unwrap();
    }

    #[test]
    fn a_reset_on_one_side_ends_both() {
        let (mut client, outer) = tcp_pair();
        let (inner, server) = tcp_pair();
        let spliced = std::thread::spawn(move || splice(outer, inner));
        // Linger 0: closing sends a reset instead of an orderly end.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid linger struct whose size is passed along.
        unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(server);
        let mut got = Vec::new();
        // The client sees its connection end, without having closed it.
        let _ = client.read_to_end(&mut got);
        spliced.join().unwrap();
        assert!(got.is_empty());
    }
}
