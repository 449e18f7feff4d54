//! The channel between a running sandbox's handle in the library
//! ([`crate::Running`]) and the sandbox's init: a `SOCK_SEQPACKET` socket
//! pair, so every request and reply is one message, and the end of the
//! init is an end of file. The init says when the program has started,
//! makes TCP sockets inside the sandbox's network namespace and hands them
//! over (`SCM_RIGHTS`, unix(7)), and signals the program.
//!
//! A socket stays in the network namespace it was created in, whoever holds
//! it afterwards: a socket the init makes and the library connects reaches
//! the sandbox's loopback. Neither side needs a privilege for that, unlike
//! `setns(2)`, which would need CAP_SYS_ADMIN in the caller's own user
//! namespace, which a rootless caller does not have. Rootless port drivers
//! (rootlesskit's "builtin" one) work the same way.
//!
//! Both ends are always the same build: the messages carry no version.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The descriptor the helper, then the init, find the sandbox's end on.
pub(crate) const CHANNEL_FD: RawFd = 5;

/// What the library asks of the init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// A new, unconnected IPv4 TCP socket in the sandbox's network namespace.
    Socket,
    /// Send this signal to the program.
    Signal(i32),
}

/// What the init answers, or announces.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The program has been executed. Sent once, unasked, before anything else.
    Started,
    /// The socket asked for.
    Socket(OwnedFd),
    /// The signal was sent.
    Signalled,
    /// The request failed with this errno.
    Failed(i32),
}

/// The longest message either side sends.
const MAX_MESSAGE: usize = 8;

impl Request {
    fn encode(self) -> Vec<u8> {
        match self {
            Request::Socket => b"c".to_vec(),
            Request::Signal(signal) => [&b"k"[..], &signal.to_le_bytes()].concat(),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Request> {
        match bytes {
            [b'c'] => Some(Request::Socket),
            [b'k', n @ ..] => Some(Request::Signal(i32::from_le_bytes(n.try_into().ok()?))),
            _ => None,
        }
    }
}

impl Reply {
    /// The message's bytes, and the descriptor passed along with them.
    fn encode(&self) -> (Vec<u8>, Option<BorrowedFd<'_>>) {
        match self {
            Reply::Started => (b"S".to_vec(), None),
            Reply::Socket(fd) => (b"c".to_vec(), Some(fd.as_fd())),
            Reply::Signalled => (b"k".to_vec(), None),
            Reply::Failed(errno) => ([&b"e"[..], &errno.to_le_bytes()].concat(), None),
        }
    }

    fn decode(bytes: &[u8], fd: Option<OwnedFd>) -> Option<Reply> {
        match (bytes, fd) {
            ([b'S'], None) => Some(Reply::Started),
            ([b'c'], Some(fd)) => Some(Reply::Socket(fd)),
            ([b'k'], None) => Some(Reply::Signalled),
            ([b'e', n @ ..], None) => Some(Reply::Failed(i32::from_le_bytes(n.try_into().ok()?))),
            _ => None,
        }
    }
}

/// A connected pair: the library's end and the sandbox's, both
/// close-on-exec.
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded; both descriptors are new and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one message, with `pass` attached as `SCM_RIGHTS` when given.
fn send(fd: BorrowedFd<'_>, bytes: &[u8], pass: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // A buffer with room for one descriptor, aligned for `cmsghdr`.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(pass) = pass {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` describes `control`, which is large enough for one
        // header and one descriptor (checked above), so the first header and
        // its data lie inside it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), pass.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers of the lengths it gives.
        // MSG_NOSIGNAL: a peer that is gone is an error, not SIGPIPE.
        let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if ret >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one message into `buf`: its length and the descriptor passed
/// with it, or `None` at end of file.
fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<(usize, Option<OwnedFd>)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a few descriptors: more than one is never sent, but any that
    // arrive must be received to be closed.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the lengths it gives.
        // Received descriptors are close-on-exec from the start.
        let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if ret >= 0 {
            break ret as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` up to `msg_controllen`; the CMSG
    // macros walk only within it, and each SCM_RIGHTS header's data holds
    // whole descriptors, now owned by this process.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header);
                let len = (*header).cmsg_len as usize - (data as usize - header as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 || fds.len() > 1 {
        return Err(malformed());
    }
    Ok(Some((n, fds.pop())))
}

fn malformed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a malformed message on the sandbox channel",
    )
}

/// The library's side: sends `request` and waits for its reply; `None` when
/// the init has gone (the sandbox has ended).
pub(crate) fn exchange(fd: BorrowedFd<'_>, request: Request) -> io::Result<Option<Reply>> {
    match send(fd, &request.encode(), None) {
        Ok(()) => {}
        Err(err) if is_hang_up(&err) => return Ok(None),
        Err(err) => return Err(err),
    }
    next_reply(fd)
}

/// The library's side: the next message from the init; `None` when it has
/// gone.
pub(crate) fn next_reply(fd: BorrowedFd<'_>) -> io::Result<Option<Reply>> {
    let mut buf = [0u8; MAX_MESSAGE];
    match recv(fd, &mut buf) {
        Ok(Some((n, passed))) => Reply::decode(&buf[..n], passed)
            .map(Some)
            .ok_or_else(malformed),
        Ok(None) => Ok(None),
        Err(err) if is_hang_up(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

fn is_hang_up(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN)
    )
}

/// The init's side: tells the library that the program has started.
pub(crate) fn announce_started(fd: BorrowedFd<'_>) -> io::Result<()> {
    let (bytes, _) = Reply::Started.encode();
    send(fd, &bytes, None)
}

/// The init's side: answers one request, signalling `program` when asked.
/// Returns `false` once the library has hung up.
pub(crate) fn serve_one(fd: BorrowedFd<'_>, program: libc::pid_t) -> io::Result<bool> {
    let mut buf = [0u8; MAX_MESSAGE];
    let request = match recv(fd, &mut buf) {
        Ok(Some((n, _))) => Request::decode(&buf[..n]),
        Ok(None) => return Ok(false),
        Err(err) if is_hang_up(&err) => return Ok(false),
        Err(err) => return Err(err),
    };
    let reply = match request {
        Some(Request::Socket) => match tcp_socket() {
            Ok(socket) => Reply::Socket(socket),
            Err(err) => Reply::Failed(err.raw_os_error().unwrap_or(libc::EIO)),
        },
        Some(Request::Signal(signal)) => {
            // SAFETY: integer arguments. The program is this process's child
            // and is not reaped while requests are served, so its pid is its.
            if unsafe { libc::kill(program, signal) } == 0 {
                Reply::Signalled
            } else {
                Reply::Failed(
                    io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO),
                )
            }
        }
        None => Reply::Failed(libc::EINVAL),
    };
    let (bytes, pass) = reply.encode();
    match send(fd, &bytes, pass) {
        Ok(()) => Ok(true),
        Err(err) if is_hang_up(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// A new IPv4 TCP socket, in the caller's network namespace.
fn tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new descriptor owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockopt(fd: &OwnedFd, option: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for the kernel to write.
        let ret = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(ret, 0);
        value
    }

    #[test]
    fn messages_round_trip() {
        for request in [Request::Socket, Request::Signal(15), Request::Signal(-1)] {
            assert_eq!(Request::decode(&request.encode()), Some(request));
        }
        assert_eq!(Request::decode(b""), None);
        assert_eq!(Request::decode(b"k\x01"), None);
        assert_eq!(Request::decode(b"x"), None);
        let (bytes, _) = Reply::Failed(libc::ESRCH).encode();
        assert!(matches!(
            Reply::decode(&bytes, None),
            Some(Reply::Failed(libc::ESRCH))
        ));
        // A socket reply without its socket is malformed.
        assert!(Reply::decode(b"c", None).is_none());
    }

    #[test]
    fn the_init_hands_over_a_tcp_socket_of_its_own() {
        let (library, sandbox) = pair().unwrap();
        let server = std::thread::spawn(move || {
            announce_started(sandbox.as_fd()).unwrap();
            while serve_one(sandbox.as_fd(), 0).unwrap() {}
        });
        assert!(matches!(
            next_reply(library.as_fd()).unwrap(),
            Some(Reply::Started)
        ));
        let Some(Reply::Socket(socket)) = exchange(library.as_fd(), Request::Socket).unwrap()
        else {
            panic!("no socket")
        };
        assert_eq!(sockopt(&socket, libc::SO_DOMAIN), libc::AF_INET);
        assert_eq!(sockopt(&socket, libc::SO_TYPE), libc::SOCK_STREAM);
        // SAFETY: integer arguments on a descriptor owned here.
        let flags = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        // Hanging up ends the init's side.
        drop(library);
        server.join().unwrap();
    }

    #[test]
    fn the_init_signals_the_program_and_reports_failures() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let program = child.id() as libc::pid_t;
        let (library, sandbox) = pair().unwrap();
        let server = std::thread::spawn(
            move || {
                while serve_one(sandbox.as_fd(), program).unwrap() {}
            },
        );
        let reply = exchange(library.as_fd(), Request::Signal(-5)).unwrap();
        assert!(
            matches!(reply, Some(Reply::Failed(libc::EINVAL))),
            "{reply:?}"
        );
        let reply = exchange(library.as_fd(), Request::Signal(libc::SIGTERM)).unwrap();
        assert!(matches!(reply, Some(Reply::Signalled)), "{reply:?}");
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        drop(library);
        server.join().unwrap();
    }

    #[test]
    fn a_gone_init_is_an_end_not_an_error() {
        let (library, sandbox) = pair().unwrap();
        drop(sandbox);
        assert!(next_reply(library.as_fd()).unwrap().is_none());
        assert!(
            exchange(library.as_fd(), Request::Socket)
                .unwrap()
                .is_none()
        );
    }
}
