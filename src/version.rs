//! What `ringgate --version` prints, like `nginx -V`: the version and git commit of this
//! build, the rustls it was built with, and whether this kernel offers kernel TLS (a
//! quick loopback probe, [`crate::transport::ktls::support`]). Never fails: a fact that
//! cannot be read prints as "unknown".

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit built (12 hex digits), or `unknown` outside a git checkout.
pub const COMMIT: &str = env!("RINGGATE_GIT_COMMIT");
/// The rustls version in Cargo.lock at build time.
pub const RUSTLS: &str = env!("RINGGATE_RUSTLS_VERSION");

/// The `--version` text, one fact a line. Probes kernel TLS (blocking, milliseconds):
/// call from the command line only.
pub fn long() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let support = crate::transport::ktls::support();
    let ktls = if support.is_available() {
        format!("yes ({})", support.describe())
    } else {
        format!("no ({})", support.describe())
    };
    format!(
        "ringgate {VERSION} (commit {COMMIT})\n\
         built with rustls {RUSTLS} (aws-lc-rs), TLS 1.2 and 1.3\n\
         kernel {release}: kernel TLS {ktls}\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_version_commit_rustls_and_kernel_tls() {
        let text = super::long();
        assert!(text.starts_with("ringgate 0."), "{text}");
        assert!(text.contains("(commit "), "{text}");
        assert!(text.contains("rustls 0.23."), "{text}");
        assert!(text.contains("kernel TLS "), "{text}");
    }
}
