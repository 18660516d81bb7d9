//! TLS and password authentication of the PostgreSQL front end, with real clients (psql,
//! tokio-postgres, and a raw protocol client for what drivers hide) against real node
//! processes. The users' config entries are made by `phalanx pg-password`, the certificate by
//! the code `phalanx local` uses.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::pg::{cancel_until_finished, code, field, follower};
use common::{BIN, Cluster};
use phalanx::frontend::pg::tls::{CertificateFiles, ensure_self_signed};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A certificate, and a config with a SCRAM user `alice` (password `wonderland`), an md5 user
/// `walrus` (password `carpenter`) and password authentication for loopback clients (`md5`:
/// SCRAM for SCRAM users, md5 for md5 users).
struct Security {
    dir: tempfile::TempDir,
    files: CertificateFiles,
    config: PathBuf,
}

impl Security {
    fn new() -> Security {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, _) = ensure_self_signed(&dir.path().join("tls")).expect("certificate");
        // Top-level keys first: the [[pg_users]] tables follow.
        let config = format!(
            "pg_auth_loopback = \"md5\"\n\n{}\n{}\n",
            pg_password("alice", "wonderland", false),
            pg_password("walrus", "carpenter", true)
        );
        let path = dir.path().join("phalanx.toml");
        std::fs::write(&path, config).expect("write config");
        Security {
            dir,
            files,
            config: path,
        }
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--config".into(),
            self.config.to_string_lossy().into_owned(),
            "--pg-tls-cert".into(),
            self.files.cert.to_string_lossy().into_owned(),
            "--pg-tls-key".into(),
            self.files.key.to_string_lossy().into_owned(),
        ]
    }

    async fn cluster(&self) -> Cluster {
        let flags = self.flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Cluster::start(3, &flags).await
    }
}

/// `phalanx pg-password --user USER [--md5]` with the password on standard input.
fn pg_password(user: &str, password: &str, md5: bool) -> String {
    let mut command = Command::new(BIN);
    command.args(["pg-password", "--user", user]);
    if md5 {
        command.arg("--md5");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phalanx pg-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "pg-password: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entry = String::from_utf8(output.stdout).expect("utf-8");
    assert!(!entry.contains(password), "the password is never printed");
    entry
}

/// psql as `user` on `node` with libpq connection options; returns (success, stdout, stderr).
fn psql(
    cluster: &Cluster,
    node: usize,
    user: &str,
    options: &str,
    command: &str,
) -> (bool, String, String) {
    let (host, port) = cluster.nodes[node].pg.split_once(':').expect("host:port");
    let conninfo =
        format!("host={host} port={port} user={user} dbname=phalanx connect_timeout=10 {options}");
    let output = Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-d",
            &conninfo,
            "-c",
            command,
        ])
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql (postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// tokio-postgres without TLS, as `user` with `password`.
async fn connect_plain(
    cluster: &Cluster,
    node: usize,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (host, port) = cluster.nodes[node].pg.split_once(':').expect("host:port");
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port.parse().expect("port"))
        .user(user)
        .password(password)
        .dbname("phalanx")
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_and_passwords_with_psql_and_tokio_postgres() {
    let security = Security::new();
    let cluster = security.cluster().await;
    let node = follower(&cluster).await;
    let root = security.files.cert.to_string_lossy().into_owned();

    // psql verifies the certificate (CA and host name) and logs in with SCRAM over TLS,
    // with channel binding required (SCRAM-SHA-256-PLUS); its session works end to end.
    let verified = format!(
        "sslmode=verify-full sslrootcert={root} channel_binding=require password=wonderland"
    );
    let (ok, out, err) = psql(&cluster, node, "alice", &verified, "\\conninfo");
    assert!(ok, "psql over TLS failed: {err}");
    assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");
    assert!(out.contains("as user \"alice\""), "{out}");
    let (ok, out, err) = psql(
        &cluster,
        node,
        "alice",
        &verified,
        "CREATE TABLE secrets (id INTEGER PRIMARY KEY, v TEXT); \
         INSERT INTO secrets VALUES (1, 'over tls'); SELECT v FROM secrets",
    );
    assert!(ok, "psql statements over TLS failed: {err}");
    assert_eq!(out.trim().lines().last(), Some("over tls"), "{out}");
    // A certificate psql cannot verify against another root is refused by psql itself.
    let other = ensure_self_signed(&security.dir.path().join("other"))
        .expect("other cert")
        .0;
    let (ok, _, err) = psql(
        &cluster,
        node,
        "alice",
        &format!(
            "sslmode=verify-ca sslrootcert={} password=wonderland",
            other.cert.display()
        ),
        "SELECT 1",
    );
    assert!(!ok && err.contains("certificate verify failed"), "{err}");

    // The md5 user logs in with psql (md5 over plaintext here) and is refused with a wrong
    // password.
    let (ok, out, err) = psql(
        &cluster,
        node,
        "walrus",
        "sslmode=disable password=carpenter",
        "\\conninfo",
    );
    assert!(ok, "md5 login failed: {err}");
    assert!(!out.contains("SSL connection"), "{out}");
    // The catalog lists the configured users as roles (psql's \du reads pg_roles), and
    // pg_settings this node's connection limit and the session settings' defaults.
    let (ok, out, err) = psql(
        &cluster,
        node,
        "walrus",
        "sslmode=disable password=carpenter",
        "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles",
    );
    assert!(ok, "pg_roles: {err}");
    assert_eq!(out.trim(), "alice,postgres,walrus");
    let (ok, out, err) = psql(
        &cluster,
        node,
        "walrus",
        "sslmode=disable password=carpenter",
        "SELECT name, setting, context FROM pg_settings \
         WHERE name IN ('max_connections', 'phalanx.read_consistency') ORDER BY name",
    );
    assert!(ok, "pg_settings: {err}");
    assert_eq!(
        out.trim(),
        "max_connections|100|postmaster\nphalanx.read_consistency|linearizable|user"
    );
    let (ok, _, err) = psql(
        &cluster,
        node,
        "walrus",
        "sslmode=require password=oysters",
        "SELECT 1",
    );
    assert!(!ok, "wrong md5 password accepted");
    assert!(
        err.contains("password authentication failed for user \"walrus\""),
        "{err}"
    );

    // tokio-postgres (SCRAM without TLS): the right password works, a wrong one and an
    // unknown user get the same 28P01 with nothing telling them apart.
    let alice = connect_plain(&cluster, node, "alice", "wonderland")
        .await
        .expect("SCRAM login");
    let row = alice
        .query_one("SELECT v FROM secrets WHERE id = 1", &[])
        .await
        .expect("select");
    assert_eq!(row.get::<_, String>(0), "over tls");
    for (user, password) in [("alice", "looking-glass"), ("mallory", "wonderland")] {
        let error = connect_plain(&cluster, node, user, password)
            .await
            .expect_err("refused");
        assert_eq!(code(&error), "28P01", "{user}: {error}");
        let message = error.as_db_error().map(|e| e.message().to_owned());
        assert_eq!(
            message.as_deref(),
            Some(format!("password authentication failed for user \"{user}\"").as_str())
        );
    }
    let error = connect_plain(&cluster, node, "walrus", "oysters")
        .await
        .expect_err("refused");
    assert_eq!(code(&error), "28P01", "{error}");

    // CancelRequest is honoured for a password-authenticated session: an insert waiting for
    // a row another session's open transaction holds stops with 57014. (If leadership moves
    // meanwhile, the holder's transaction is gone and the insert may go through: then the
    // scenario is repeated with another key.)
    let holder = connect_plain(&cluster, node, "walrus", "carpenter")
        .await
        .expect("md5 login");
    let mut alice = alice;
    for key in 2..5 {
        holder
            .batch_execute(&format!(
                "BEGIN; INSERT INTO secrets VALUES ({key}, 'held')"
            ))
            .await
            .expect("hold a row");
        let cancel = alice.cancel_token();
        let blocked = tokio::spawn(async move {
            let result = alice
                .batch_execute(&format!("INSERT INTO secrets VALUES ({key}, 'canceled')"))
                .await;
            (alice, result)
        });
        cancel_until_finished(&cancel, &blocked).await;
        let (back, result) = blocked.await.expect("join");
        alice = back;
        match result {
            Err(error) => {
                assert_eq!(code(&error), "57014", "{error}");
                holder.batch_execute("ROLLBACK").await.expect("rollback");
                break;
            }
            Ok(()) => {
                let lost = holder.batch_execute("SELECT 1").await.expect_err(
                    "the insert went through only if the holder's transaction was lost",
                );
                assert_eq!(code(&lost), "40001", "{lost}");
                holder.batch_execute("ROLLBACK").await.expect("rollback");
                assert!(key < 4, "leadership kept moving during the cancel scenario");
            }
        }
    }

    // Which mechanism each user meets: md5 only for the md5 user; an unknown user gets SCRAM
    // like a real one, with the same salt on every attempt and every node.
    let pg = &cluster.nodes[node].pg;
    assert_eq!(first_challenge(pg, "walrus").await.0, 5, "md5");
    let (kind, alice_first) = first_challenge(pg, "alice").await;
    assert_eq!(kind, 10, "SASL");
    assert_eq!(
        alice_first,
        vec!["SCRAM-SHA-256".to_owned()],
        "no -PLUS without TLS"
    );
    assert_eq!(
        first_challenge(pg, "mallory").await.0,
        10,
        "unknown users get SCRAM"
    );
    let salts: Vec<String> = {
        let mut salts = Vec::new();
        for n in &cluster.nodes {
            salts.push(scram_salt(&n.pg, "mallory").await);
        }
        salts.push(scram_salt(pg, "mallory").await);
        salts
    };
    assert!(salts.windows(2).all(|w| w[0] == w[1]), "{salts:?}");
    assert_ne!(salts[0], scram_salt(pg, "alice").await);
}

/// `pg_tls_required`: a plaintext session is refused with 28000 "no encryption"; TLS (and a
/// CancelRequest, which needs no session) still work. GSSENCRequest is answered `N`,
/// plaintext smuggled after an SSLRequest is refused, and PostgreSQL 17's direct TLS works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_required_refuses_plaintext_and_negotiation_corners() {
    let security = Security::new();
    let mut cluster = security.cluster().await;
    let node = follower(&cluster).await;
    cluster.stop(node);
    cluster.start_node_with_env(node, &[("PHALANX_PG_TLS_REQUIRED", "true")]);
    let pg = cluster.nodes[node].pg.clone();
    common::eventually(
        Duration::from_secs(30),
        "the node accepts connections",
        || async {
            TcpStream::connect(&pg)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await;

    let error = connect_plain(&cluster, node, "alice", "wonderland")
        .await
        .expect_err("plaintext refused");
    assert_eq!(code(&error), "28000", "{error}");
    let message = error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("no encryption"), "{message}");
    let (ok, _, err) = psql(
        &cluster,
        node,
        "alice",
        "sslmode=disable password=wonderland",
        "SELECT 1",
    );
    assert!(!ok && err.contains("no encryption"), "{err}");
    let (ok, out, err) = psql(
        &cluster,
        node,
        "alice",
        "sslmode=require password=wonderland",
        "SELECT 1",
    );
    assert!(ok, "TLS session refused: {err}");
    assert_eq!(out.trim(), "1");

    // GSSENCRequest → 'N', then an SSLRequest → 'S' on the same connection (libpq's
    // gssencmode=prefer order).
    let mut tcp = TcpStream::connect(&pg).await.expect("connect");
    tcp.write_all(&negotiation_request(80_877_104))
        .await
        .expect("gss");
    assert_eq!(tcp.read_u8().await.expect("answer"), b'N');
    tcp.write_all(&negotiation_request(80_877_103))
        .await
        .expect("ssl");
    assert_eq!(tcp.read_u8().await.expect("answer"), b'S');

    // A startup packet sent in the clear right behind the SSLRequest is refused in the clear.
    let mut tcp = TcpStream::connect(&pg).await.expect("connect");
    let mut smuggled = negotiation_request(80_877_103);
    smuggled.extend(startup_packet("alice"));
    tcp.write_all(&smuggled).await.expect("send");
    assert_eq!(tcp.read_u8().await.expect("answer"), b'S');
    let (kind, body) = read_message(&mut tcp).await.expect("an error");
    assert_eq!(kind, b'E');
    assert_eq!(field(&body, b'C'), "08P01", "{}", field(&body, b'M'));

    // Direct TLS (sslnegotiation=direct): the handshake first, with ALPN "postgresql"; the
    // session then authenticates over TLS, where SCRAM-SHA-256-PLUS is offered.
    let mut tls = direct_tls(&pg, &security.files.cert, Some(b"postgresql"))
        .await
        .expect("direct TLS handshake");
    tls.write_all(&startup_packet("alice"))
        .await
        .expect("startup");
    let (kind, body) = read_message(&mut tls).await.expect("challenge");
    assert_eq!(kind, b'R');
    let mechanisms = sasl_mechanisms(&body);
    assert!(
        mechanisms.contains(&"SCRAM-SHA-256-PLUS".to_owned()),
        "{mechanisms:?}"
    );
    // Without the ALPN name the server hangs up.
    let refused = async {
        let mut tls = direct_tls(&pg, &security.files.cert, None).await?;
        tls.write_all(&startup_packet("alice")).await?;
        read_message(&mut tls).await
    };
    assert!(refused.await.is_err(), "direct TLS without ALPN was served");
}

/// An SSLRequest or GSSENCRequest packet.
fn negotiation_request(code: i32) -> Vec<u8> {
    let mut packet = 8i32.to_be_bytes().to_vec();
    packet.extend_from_slice(&code.to_be_bytes());
    packet
}

fn startup_packet(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0{user}\0database\0phalanx\0\0").as_bytes());
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

async fn read_message(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(u8, Vec<u8>)> {
    let kind = stream.read_u8().await?;
    let length = stream.read_i32().await?;
    let mut body = vec![0u8; usize::try_from(length).unwrap_or(4).saturating_sub(4)];
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// The mechanisms of an AuthenticationSASL body.
fn sasl_mechanisms(body: &[u8]) -> Vec<String> {
    assert_eq!(
        body.get(..4),
        Some(&10i32.to_be_bytes()[..]),
        "not SASL: {body:?}"
    );
    body[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect()
}

/// The authentication request a plaintext startup as `user` gets: (code, SASL mechanisms).
async fn first_challenge(addr: &str, user: &str) -> (i32, Vec<String>) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&startup_packet(user)).await.expect("startup");
    let (kind, body) = read_message(&mut tcp).await.expect("answer");
    assert_eq!(kind, b'R', "{}", field(&body, b'M'));
    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let mechanisms = if code == 10 {
        sasl_mechanisms(&body)
    } else {
        Vec::new()
    };
    (code, mechanisms)
}

/// The salt the server's SCRAM first message gives `user`.
async fn scram_salt(addr: &str, user: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&startup_packet(user)).await.expect("startup");
    let (kind, _) = read_message(&mut tcp).await.expect("SASL");
    assert_eq!(kind, b'R');
    let client_first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
    body.extend_from_slice(client_first);
    let mut message = vec![b'p'];
    message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    message.extend(body);
    tcp.write_all(&message).await.expect("client-first");
    let (kind, body) = read_message(&mut tcp).await.expect("server-first");
    assert_eq!(
        (kind, body.get(..4)),
        (b'R', Some(&11i32.to_be_bytes()[..]))
    );
    let server_first = String::from_utf8_lossy(&body[4..]).into_owned();
    server_first
        .split(',')
        .find_map(|f| f.strip_prefix("s="))
        .expect("salt")
        .to_owned()
}

/// A TLS connection started without an SSLRequest, trusting only `root`.
async fn direct_tls(
    addr: &str,
    root: &Path,
    alpn: Option<&[u8]>,
) -> std::io::Result<impl AsyncRead + AsyncWrite + Unpin> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(root).expect("read root") {
        roots.add(cert.expect("certificate")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}
