//! TLS for test servers: a throwaway CA and a server certificate made with `openssl`, and the
//! arguments that make `redis-server` serve TLS only with them.

use std::{
    path::Path,
    process::{Command, Stdio},
};

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 / localhost, in `dir`.
pub(super) fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (needed for TLS test servers)");
        assert!(status.success(), "openssl {args:?} failed");
    };
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write san.cnf");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=redlock-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
    ]);
}

/// The arguments that make a server listen for TLS only on `port`, with the certificates of
/// [`make_certificates`] in its directory; clients need not present one.
pub(super) fn listen_args(port: &str) -> Vec<&str> {
    vec![
        "--port",
        "0",
        "--tls-port",
        port,
        "--tls-cert-file",
        "server.crt",
        "--tls-key-file",
        "server.key",
        "--tls-ca-cert-file",
        "ca.crt",
        "--tls-auth-clients",
        "no",
    ]
}
