//! The crate's error type: why a call, a reply or a socket operation failed.

use std::io;

/// Why an operation on a Homa socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call's deadline passed before its response arrived; the RPC was
    /// aborted.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The peer stopped answering (the protocol's own timeout).
    #[error("peer timed out")]
    PeerTimeout,
    /// Nothing listens at the destination port (ICMP port unreachable).
    #[error("destination port unreachable")]
    PortUnreachable,
    /// The destination host cannot be reached (ICMP host unreachable, or
    /// the kernel refused the send with `EHOSTUNREACH`).
    #[error("destination host unreachable")]
    HostUnreachable,
    /// The server restarted (or vanished) after the request may have
    /// reached it: it may or may not have run, and it will not be run
    /// again. Retry only if the request is idempotent.
    #[error("server restarted or went away after the request reached it: outcome unknown")]
    OutcomeUnknown,
    /// The server ran the request but dropped the call before its response
    /// reached us (it gave up, or its application discarded the request).
    #[error("server abandoned the call after running the request")]
    Abandoned,
    /// The destination socket does not accept requests (a client-only
    /// socket); the request did not run.
    #[error("destination does not serve requests")]
    NotServer,
    /// No route to the destination's network (the kernel refused the send
    /// with `ENETUNREACH`, or a router answered ICMP net unreachable).
    #[error("destination network unreachable")]
    NetworkUnreachable,
    /// The socket accepts no requests: it was bound to port 0 (an
    /// ephemeral, client-only port) or opened with `Config::server` set to
    /// `Some(false)`. Bind a server to a specific port, or set
    /// [`crate::Config::server`] to `Some(true)`.
    #[error("this socket accepts no requests (bound to port 0 or configured client-only); bind a server to a specific port or set Config::server")]
    ClientOnly,
    /// The message is longer than the configured maximum.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLong {
        /// Length of the message.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// Messages must hold at least one byte.
    #[error("empty message")]
    EmptyMessage,
    /// The call was aborted by the application.
    #[error("rpc aborted")]
    Aborted,
    /// The socket was closed.
    #[error("socket closed")]
    Closed,
    /// The tokio runtime that opened an [`crate::AsyncSocket`] (and ran its
    /// driver task) has shut down: nothing can drive the socket any more,
    /// so it was closed. Open sockets on the runtime that uses them.
    #[error("the tokio runtime driving the socket has shut down")]
    RuntimeShutdown,
    /// The socket's send cap (`max_tx_bytes_per_socket` of the protocol
    /// configuration) is reached. Only the non-waiting
    /// [`crate::AsyncSocket::start_call`] and [`crate::AsyncSocket::reply`]
    /// return it; every other send waits for room.
    #[error("send buffer full")]
    WouldBlock,
    /// The destination's address family does not match the socket's (an
    /// IPv6 destination on an IPv4 socket, or an IPv4 destination on a
    /// socket bound to an IPv6 address other than the wildcard).
    #[error("address family mismatch")]
    AddressFamily,
    /// No RPC with that id awaits this operation (a reply to an unknown or
    /// already answered request, a result already taken).
    #[error("no such rpc")]
    UnknownRpc,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] homa_proto::config::ConfigError),
    /// The host table asked for (`Config::host_sharing` or
    /// `HOMA_HOST_SHARING`) cannot be used: the message names the file and
    /// why (foreign, corrupt, wrong size or owner, full).
    #[error("host sharing: {0}")]
    HostSharing(String),
    /// The operating system refused a socket operation.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::DeadlineExceeded | Error::PeerTimeout => K::TimedOut,
            Error::PortUnreachable | Error::NotServer => K::ConnectionRefused,
            Error::OutcomeUnknown | Error::Abandoned => K::ConnectionAborted,
            Error::HostUnreachable => K::HostUnreachable,
            Error::NetworkUnreachable => K::NetworkUnreachable,
            Error::ClientOnly => K::Unsupported,
            Error::MessageTooLong { .. }
            | Error::EmptyMessage
            | Error::AddressFamily
            | Error::Config(_) => K::InvalidInput,
            Error::HostSharing(_) => K::InvalidData,
            Error::Aborted => K::ConnectionAborted,
            Error::Closed | Error::RuntimeShutdown => K::NotConnected,
            Error::WouldBlock => K::WouldBlock,
            Error::UnknownRpc => K::NotFound,
            Error::Io(e) => e.kind(),
        }
    }

    /// Maps an error of the protocol engine.
    pub(crate) fn from_proto(e: homa_proto::Error) -> Error {
        match e {
            homa_proto::Error::MessageTooLong { len, max } => Error::MessageTooLong { len, max },
            homa_proto::Error::EmptyMessage => Error::EmptyMessage,
            homa_proto::Error::UnknownRpc | homa_proto::Error::WrongState => Error::UnknownRpc,
            homa_proto::Error::NoSocket(_) => Error::Closed,
            homa_proto::Error::WouldBlock => Error::WouldBlock,
            e @ homa_proto::Error::InvalidPort(_) => {
                Error::Io(io::Error::new(io::ErrorKind::InvalidInput, e))
            }
            other => Error::Io(io::Error::other(other)),
        }
    }

    /// Maps the failure reason the protocol engine reports for an RPC.
    pub(crate) fn from_rpc(e: homa_proto::RpcError) -> Error {
        match e {
            homa_proto::RpcError::Timeout => Error::PeerTimeout,
            homa_proto::RpcError::PortUnreachable => Error::PortUnreachable,
            homa_proto::RpcError::HostUnreachable => Error::HostUnreachable,
            homa_proto::RpcError::NetworkUnreachable => Error::NetworkUnreachable,
            homa_proto::RpcError::OutcomeUnknown => Error::OutcomeUnknown,
            homa_proto::RpcError::Abandoned => Error::Abandoned,
            homa_proto::RpcError::NotServer => Error::NotServer,
            _ => Error::PeerTimeout,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(other.kind(), other),
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn into_io_error__keeps_kind_and_message() {
        let e: io::Error = Error::PortUnreachable.into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(e.to_string(), "destination port unreachable");
        let e: io::Error = Error::DeadlineExceeded.into();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let inner = io::Error::from_raw_os_error(libc::EACCES);
        let e: io::Error = Error::Io(inner).into();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    }
}
