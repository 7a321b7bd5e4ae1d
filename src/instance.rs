//! One running instance per listening address and per `pid_file`.
//!
//! Every worker binds its own socket with `SO_REUSEPORT` (src/listener.rs), and the kernel
//! lets *any* process of the same user join such a group: binding alone would let a
//! second `ringgate run` or `demo` share the port silently and take a share of the
//! connections. This module refuses that, like nginx and HAProxy ("address in use"):
//!
//! - [`check_address_free`], before a listener's group is bound, binds a probe socket
//!   *without* `SO_REUSEPORT` (with `SO_REUSEADDR`, so the TIME_WAIT leftovers of a
//!   previous run do not count). The kernel refuses it while any socket listens on the
//!   address or on one overlapping it (`0.0.0.0`, `[::]`).
//! - [`check_sole_listener`], once the group listens, reads `/proc/net/tcp{,6}`: a
//!   listening socket on the same port and an overlapping address that is not one of
//!   ours joined in the moment between the probe and the bind. Both starters see each
//!   other then, and both refuse (never both serve).
//! - [`PidFile`] holds an exclusive `flock` on `pid_file` for the life of the process: a
//!   second start with the same `pid_file` fails naming the file and the running pid, and
//!   only the holder of the lock removes the file at exit.
//!
//! - The [`Status`] file next to the pid file (`PID_FILE.status`) says which
//!   configuration file the process runs, its generation, and the outcome of its last
//!   reload of that file: what `ringgate reload` checks FILE against and waits on.
//!
//! Sharing the addresses on purpose (a zero-downtime binary upgrade) is not offered yet.
//! Nothing here runs on a worker or on the request path: it is start-up code on the main
//! thread, and its errors stop the start ([`crate::server::StartError::Instance`]).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, Socket, Type};

/// Why this process may not run as a second instance.
#[derive(Debug)]
#[non_exhaustive]
pub enum InstanceError {
    /// Another socket listens on the address (or on one overlapping it).
    AddressInUse { addr: SocketAddr },
    /// Another process's listening socket joined the address while this one bound it.
    SharedListener { addr: SocketAddr },
    /// Another process holds the lock on the pid file.
    PidFileHeld { path: PathBuf, pid: Option<u32> },
    /// The pid file could not be opened, locked or written.
    PidFile { path: PathBuf, error: io::Error },
}

impl std::fmt::Display for InstanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceError::AddressInUse { addr } => write!(
                f,
                "listener {addr}: address in use: another process listens on it \
                 (another ringgate? `ss -ltnp 'sport = :{}'` shows which); \
                 ringgate does not share its addresses",
                addr.port()
            ),
            InstanceError::SharedListener { addr } => write!(
                f,
                "listener {addr}: address in use: another process started listening on it \
                 at the same time as this one; ringgate does not share its addresses"
            ),
            InstanceError::PidFileHeld { path, pid } => {
                write!(f, "pid_file {} is held by ", path.display())?;
                match pid {
                    Some(pid) => write!(f, "pid {pid}")?,
                    None => write!(f, "another process")?,
                }
                write!(
                    f,
                    ": ringgate is already running with this pid_file \
                     (stop it first, or give this instance its own pid_file)"
                )
            }
            InstanceError::PidFile { path, error } => {
                write!(f, "pid_file {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for InstanceError {}

/// Fails with [`InstanceError::AddressInUse`] when a socket listens on `addr` or an
/// address overlapping it; other bind errors are returned as they are (the group bind
/// would meet them too). Port 0 is always free (the kernel picks the port).
pub fn check_address_free(addr: SocketAddr) -> Result<(), ProbeError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = || -> io::Result<()> {
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // SO_REUSEADDR: connections of a previous run in TIME_WAIT are no conflict; a
        // listening socket still is. No SO_REUSEPORT: that is the point of the probe.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())
    };
    match probe() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(ProbeError::InUse(InstanceError::AddressInUse { addr }))
        }
        Err(e) => Err(ProbeError::Bind(io::Error::new(
            e.kind(),
            format!("cannot bind {addr}: {e}"),
        ))),
    }
}

/// What [`check_address_free`] found.
#[derive(Debug)]
pub enum ProbeError {
    /// The address is taken.
    InUse(InstanceError),
    /// The address cannot be bound at all (no such local address, a privileged port…).
    Bind(io::Error),
}

/// After every listener's group is bound and listening: fails when a listening socket
/// of another process shares the port of `addr` (bound address, port resolved) on an
/// overlapping address. `ours` are every listening socket of this process. Where
/// `/proc/net` cannot be read the check is skipped (the probe already ran).
pub fn check_sole_listener(addr: SocketAddr, ours: &[&TcpListener]) -> Result<(), InstanceError> {
    let table = if addr.is_ipv6() {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return Ok(());
    };
    let our_inodes: Vec<u64> = ours.iter().filter_map(|s| socket_inode(s)).collect();
    let foreign = listening_sockets(&text).any(|(a, inode)| {
        a.port() == addr.port() && overlaps(a.ip(), addr.ip()) && !our_inodes.contains(&inode)
    });
    if foreign {
        Err(InstanceError::SharedListener { addr })
    } else {
        Ok(())
    }
}

fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// The inode of a socket, from its `/proc/self/fd` link (`socket:[12345]`).
fn socket_inode(s: &TcpListener) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// TCP state `LISTEN` as `/proc/net/tcp` prints it.
const TCP_LISTEN: &str = "0A";

/// The listening sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table: local address
/// and inode. Lines that do not parse are skipped.
fn listening_sockets(table: &str) -> impl Iterator<Item = (SocketAddr, u64)> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&TCP_LISTEN) {
            return None;
        }
        let addr = parse_proc_addr(fields.get(1)?)?;
        let inode = fields.get(9)?.parse().ok()?;
        Some((addr, inode))
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6): the kernel prints each 32-bit
/// word of the address as the host reads it, the port as a number.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Where the [`Status`] of the process holding `pid_file` is written: `PID_FILE.status`.
pub fn status_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".status");
    PathBuf::from(name)
}

/// What a running process says about itself for `ringgate reload`: written whole (a
/// temporary file renamed over it) at start and after every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub pid: u32,
    /// The configuration file it runs (as it was started with, made absolute).
    pub config: PathBuf,
    /// The generation serving now.
    pub generation: u64,
    /// Reloads of the configuration file (SIGHUP, `ringgate reload`) finished so far;
    /// certificate-only reloads are not counted.
    pub file_reloads: u64,
    /// The outcome of the last of those.
    pub last: Option<FileReload>,
}

/// The outcome of one reload of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileReload {
    /// The file is the new generation; some changes may wait for a restart.
    Ok {
        generation: u64,
        needs_restart: Vec<String>,
    },
    /// Nothing changed; `error` is every problem, one per line.
    Failed { error: String },
}

impl Status {
    /// The file's text: one `key value` per line, the error's lines last.
    pub fn render(&self) -> String {
        let mut s = format!(
            "pid {}\nconfig {}\ngeneration {}\nfile_reloads {}\n",
            self.pid,
            self.config.display(),
            self.generation,
            self.file_reloads
        );
        match &self.last {
            None => {}
            Some(FileReload::Ok {
                generation,
                needs_restart,
            }) => {
                s += &format!("last ok {generation}\n");
                for n in needs_restart {
                    s += &format!("needs_restart {}\n", n.replace('\n', " "));
                }
            }
            Some(FileReload::Failed { error }) => {
                s += "last failed\n";
                for line in error.lines() {
                    s += &format!("error {line}\n");
                }
            }
        }
        s
    }

    /// Reads [`Status::render`]'s text; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Status> {
        let (mut pid, mut config, mut generation, mut file_reloads) = (None, None, None, None);
        let (mut last_ok, mut failed, mut needs_restart, mut error) =
            (None, false, Vec::new(), Vec::new());
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "pid" => pid = value.parse().ok(),
                "config" => config = Some(PathBuf::from(value)),
                "generation" => generation = value.parse().ok(),
                "file_reloads" => file_reloads = value.parse().ok(),
                "last" if value == "failed" => failed = true,
                "last" => last_ok = value.strip_prefix("ok ")?.parse().ok(),
                "needs_restart" => needs_restart.push(value.to_string()),
                "error" => error.push(value),
                _ => {}
            }
        }
        let last = match (last_ok, failed) {
            (Some(generation), false) => Some(FileReload::Ok {
                generation,
                needs_restart,
            }),
            (None, true) => Some(FileReload::Failed {
                error: error.join("\n"),
            }),
            _ => None,
        };
        Some(Status {
            pid: pid?,
            config: config?,
            generation: generation?,
            file_reloads: file_reloads?,
            last,
        })
    }

    /// Writes the status to `path` in one step (a temporary file renamed over it), so a
    /// reader never sees half of it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }

    /// Reads the status at `path`; `None` when there is none or it does not parse.
    pub fn read(path: &Path) -> Option<Status> {
        Status::parse(&std::fs::read_to_string(path).ok()?)
    }
}

/// The `pid_file`, locked (`flock`, exclusive) for as long as this value lives. Dropping
/// it removes the file: only the process holding the lock ever removes it.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Opens (creating) and locks `path` without waiting; fails with
    /// [`InstanceError::PidFileHeld`] when another process holds it. The file is left as
    /// it was until [`PidFile::write_pid`].
    pub fn acquire(path: &Path) -> Result<PidFile, InstanceError> {
        let io_err = |error| InstanceError::PidFile {
            path: path.to_path_buf(),
            error,
        };
        // The holder removes the file as it exits; a file opened just before that is
        // locked after it, but no longer at `path`: open again then. Two tries suffice
        // unless a third instance starts in the same moment.
        for _ in 0..3 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io_err)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let pid = text.lines().next().and_then(|l| l.trim().parse().ok());
                    return Err(InstanceError::PidFileHeld {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
            }
            let same = match (std::fs::metadata(path), file.metadata()) {
                (Ok(at_path), Ok(locked)) => {
                    at_path.dev() == locked.dev() && at_path.ino() == locked.ino()
                }
                _ => false,
            };
            if same {
                return Ok(PidFile {
                    path: path.to_path_buf(),
                    file,
                });
            }
        }
        Err(io_err(io::Error::other(
            "it was replaced while being locked, three times (other instances starting?)",
        )))
    }

    /// Replaces the file's content with `pid` and a newline.
    pub fn write_pid(&mut self, pid: u32) -> Result<(), InstanceError> {
        let io_err = |error| InstanceError::PidFile {
            path: self.path.clone(),
            error,
        };
        self.file.set_len(0).map_err(io_err)?;
        self.file.rewind().map_err(io_err)?;
        self.file
            .write_all(format!("{pid}\n").as_bytes())
            .map_err(io_err)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file and its [`Status`] file (the lock is still held, so no other
    /// instance has them).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(status_path(&self.path));
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_parse() {
        let v4 = parse_proc_addr("0100007F:1F90").unwrap();
        assert_eq!(v4, "127.0.0.1:8080".parse().unwrap());
        let any6 = parse_proc_addr("00000000000000000000000000000000:01BB").unwrap();
        assert_eq!(any6, "[::]:443".parse().unwrap());
        let lo6 = parse_proc_addr("00000000000000000000000001000000:01BB").unwrap();
        assert_eq!(lo6, "[::1]:443".parse().unwrap());
        assert_eq!(parse_proc_addr("0100007F"), None);
        assert_eq!(parse_proc_addr("XYZ:1F90"), None);
    }

    #[test]
    fn a_listener_without_reuseport_is_in_use() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        match check_address_free(addr) {
            Err(ProbeError::InUse(e)) => assert!(e.to_string().contains("address in use")),
            other => panic!("{other:?}"),
        }
        drop(l);
        check_address_free(addr).unwrap();
    }

    #[test]
    fn a_foreign_reuseport_listener_is_seen_in_proc() {
        let (ours, addr) = crate::listener::bind_reuseport("127.0.0.1:0".parse().unwrap(), 8, 2)
            .expect("bind a group");
        let refs: Vec<&TcpListener> = ours.iter().collect();
        check_sole_listener(addr, &refs).expect("only ours listen");
        // Another group member that is not in `ours` stands for another process.
        let (other, _) = crate::listener::bind_reuseport(addr, 8, 1).expect("join the group");
        let err = check_sole_listener(addr, &refs).unwrap_err();
        assert!(err.to_string().contains("address in use"), "{err}");
        drop(other);
        check_sole_listener(addr, &refs).expect("the other one left");
    }

    #[test]
    fn a_status_reads_back_as_written() {
        let mut st = Status {
            pid: 7,
            config: PathBuf::from("/etc/ring gate/ringgate.toml"),
            generation: 3,
            file_reloads: 2,
            last: Some(FileReload::Ok {
                generation: 3,
                needs_restart: vec!["server.workers 2 -> 3".into()],
            }),
        };
        assert_eq!(Status::parse(&st.render()), Some(st.clone()));
        st.last = Some(FileReload::Failed {
            error: "a.toml:1:2: x: bad\na.toml:3:4: y: worse".into(),
        });
        assert_eq!(Status::parse(&st.render()), Some(st.clone()));
        st.last = None;
        assert_eq!(Status::parse(&st.render()), Some(st));
        assert_eq!(Status::parse("pid 1\n"), None);
        assert_eq!(
            status_path(Path::new("/run/ringgate.pid")),
            Path::new("/run/ringgate.pid.status")
        );
    }

    #[test]
    fn the_pid_file_is_held_and_removed_by_its_holder_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringgate.pid");
        let mut first = PidFile::acquire(&path).unwrap();
        first.write_pid(4242).unwrap();
        let second = PidFile::acquire(&path).unwrap_err();
        assert!(second.to_string().contains("held by pid 4242"), "{second}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");
        drop(first);
        assert!(!path.exists());
        let third = PidFile::acquire(&path).unwrap();
        assert!(path.exists());
        drop(third);
    }
}
