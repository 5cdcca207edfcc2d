//! No secret is ever printed: passwords drawn from every printable character, raw and
//! percent-encoded, in every URL form the crate reads; neither error texts, `Debug` output nor
//! log lines at TRACE hold the password or any 4 characters of it.

mod common;

use configurable_redlock::{Config, Redlock};
use redlock_runtime::test_util::RedisServer;

/// A small deterministic generator (xorshift), so that a failure reproduces.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A password of 4 to 16 printable ASCII characters, space included.
    fn password(&mut self) -> String {
        let length = 4 + (self.next() % 13) as usize;
        (0..length)
            .map(|_| char::from(b' ' + (self.next() % 95) as u8))
            .collect()
    }
}

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The password, or 4 consecutive characters of it, in `text`.
fn leaks(text: &str, password: &str) -> Option<String> {
    let chars: Vec<char> = password.chars().collect();
    chars
        .windows(4)
        .map(|window| window.iter().collect::<String>())
        .find(|piece| text.contains(piece.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_is_printed_whatever_it_holds() {
    let logs = common::logs();
    let server = RedisServer::start_with_args(&["--requirepass", "the-right-one"]);
    let port = server.port();
    let mut draws = Draws(0x5eed_1234_abcd_ef01);
    let mut checked = 0;
    for round in 0..300 {
        let password = draws.password();
        for written in [password.clone(), percent_encoded(&password)] {
            let urls = [
                format!("redis://:{written}@127.0.0.1:{port}"),
                format!("redis://app:{written}@127.0.0.1:{port}/0"),
                format!("rediss://app:{written}@127.0.0.1:99999"),
                format!("{written}@127.0.0.1:{port}"),
                format!("redis+cluster://app:{written}@127.0.0.1:{port},127.0.0.1:0"),
                format!("redis+sentinel://:{written}@127.0.0.1:{port}/service/x"),
            ];
            for url in urls {
                let mut texts = vec![format!("{:?}", Config::new([&url]))];
                match Redlock::new([&url]) {
                    Err(err) => texts.extend([err.to_string(), format!("{err:?}")]),
                    Ok(redlock) => {
                        texts.push(format!("{redlock:?}"));
                        // Against the server, with the wrong password: a few rounds only,
                        // each fails at once.
                        if round % 30 == 0 && url.starts_with("redis://") {
                            let err = redlock.lock("secret").timeout(-1).await.unwrap_err();
                            texts.extend([err.to_string(), format!("{err:?}")]);
                        }
                    }
                }
                for text in &texts {
                    if let Some(piece) = leaks(text, &password) {
                        panic!("`{piece}` of password {password:?} printed in: {text}");
                    }
                }
                checked += 1;
            }
        }
    }
    let logs = logs.text();
    assert!(logs.contains("redlock"), "TRACE lines were captured");
    let mut draws = Draws(0x5eed_1234_abcd_ef01);
    for _ in 0..300 {
        let password = draws.password();
        if let Some(piece) = leaks(&logs, &password) {
            panic!("`{piece}` of password {password:?} logged");
        }
    }
    assert_eq!(checked, 300 * 2 * 6);
}
