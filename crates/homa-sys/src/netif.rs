//! Network interfaces: which interface holds an address, and interface
//! MTUs, as the calling thread's network namespace sees them
//! (`getifaddrs` and the `SIOCGIFMTU` ioctl on a datagram socket, not
//! `/sys/class/net`, which shows the namespace that mounted it).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, SockaddrStorage};

/// One IP address of an interface that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The interface's name (`eth0`, `lo`).
    pub name: String,
    /// The address.
    pub addr: IpAddr,
    /// The interface is the loopback device.
    pub loopback: bool,
    /// The interface's MTU (bytes of IP packet).
    pub mtu: u32,
}

fn ip_of(s: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(a.ip()));
    }
    s.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip()))
}

/// The IP addresses of the interfaces that are up, each with its
/// interface's MTU. Interfaces whose MTU cannot be read are left out.
pub fn up_addresses() -> io::Result<Vec<InterfaceAddr>> {
    let probe = probe_socket()?;
    let mut out = Vec::new();
    for ifa in getifaddrs()? {
        if !ifa.flags.contains(InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(addr) = ifa.address.as_ref().and_then(ip_of) else {
            continue;
        };
        let Ok(mtu) = mtu_of(&probe, &ifa.interface_name) else {
            continue;
        };
        out.push(InterfaceAddr {
            name: ifa.interface_name,
            addr,
            loopback: ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            mtu,
        });
    }
    Ok(out)
}

/// The MTU of the interface called `name` (`SIOCGIFMTU`).
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    let probe = probe_socket()?;
    mtu_of(&probe, name)
}

/// A datagram socket to ask interface ioctls of (any family works).
fn probe_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn mtu_of(probe: &OwnedFd, name: &str) -> io::Result<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `ifreq` is plain old data (a name array and a union of
    // integers and addresses); all-zero is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (the array is
    // zeroed past it) and writes the `ifru_mtu` member of the request we
    // own; the descriptor is open for the duration of the call.
    let r = unsafe { libc::ioctl(probe.as_raw_fd(), libc::SIOCGIFMTU as _, &mut req) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the union's MTU member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_and_has_its_mtu() {
        let addrs = up_addresses().unwrap();
        let lo = addrs
            .iter()
            .find(|a| a.addr == IpAddr::from([127, 0, 0, 1]))
            .expect("127.0.0.1 on an up interface");
        assert!(lo.loopback, "{lo:?}");
        assert_eq!(interface_mtu(&lo.name).unwrap(), lo.mtu);
        // Linux's loopback MTU is 65 536 unless someone changed it; any
        // loopback carries at least a minimal IPv4 packet.
        assert!(lo.mtu >= 576, "{lo:?}");
    }

    #[test]
    fn unknown_and_invalid_names_fail() {
        assert!(interface_mtu("no-such-if0").is_err());
        assert!(interface_mtu("").is_err());
        assert!(interface_mtu("a-name-far-too-long-for-linux").is_err());
    }
}
