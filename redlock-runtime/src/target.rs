//! What one entry of [`Config::urls`](crate::Config::urls) names: one Redis server, one Redis
//! Cluster, or one master found through Sentinel. Each is one vote in the quorum.

/// A master of the quorum, as its URL names it.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `redis://`, `rediss://`, `unix://`: one server.
    Server(String),
    /// `redis+cluster://[user:password@]host:port[,host:port...]`: seed nodes of one cluster.
    Cluster(Vec<String>),
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`: the master of
    /// `service`, as the sentinels at these addresses report it. The user and password are the
    /// master's; the sentinels are reached without credentials.
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        /// Database, user and password for the master.
        master: redis::RedisConnectionInfo,
        tls: bool,
    },
}

impl Target {
    /// Reads a URL; the error says what is wrong with it (never with its password).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        if url.trim().is_empty() {
            return Err("empty URL: expected e.g. `redis://127.0.0.1:6379`".into());
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "no scheme: write `redis://{}` (or rediss://, redis+cluster://, \
                 redis+sentinel://)",
                redact_url(&format!("x://{url}")).trim_start_matches("x://")
            ));
        };
        let (base, kind) = match scheme.split_once('+') {
            Some((base @ ("redis" | "rediss"), kind @ ("cluster" | "sentinel"))) => (base, kind),
            None if matches!(scheme, "redis" | "rediss") => {
                check_user_info(rest)?;
                let after = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
                let (address, path) = after.split_once('/').unwrap_or((after, ""));
                check_address(address)?;
                check_database(path)?;
                return Ok(Self::Server(url.to_owned()));
            }
            None if scheme == "unix" => return Ok(Self::Server(url.to_owned())),
            _ => {
                return Err(format!(
                    "unknown scheme `{scheme}` (expected redis, rediss, unix, redis+cluster, \
                     rediss+cluster, redis+sentinel or rediss+sentinel)"
                ));
            }
        };
        check_user_info(rest)?;
        let (userinfo, after) = match rest.rsplit_once('@') {
            Some((userinfo, after)) => (format!("{userinfo}@"), after),
            None => (String::new(), rest),
        };
        let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
        let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
        if hosts.iter().any(|host| host.is_empty()) {
            return Err(format!(
                "expected comma-separated host:port addresses after `{scheme}://`"
            ));
        }
        for host in &hosts {
            check_address(host)?;
        }
        if kind == "cluster" {
            if !path.is_empty() {
                return Err("a cluster URL takes no path: a cluster has only database 0".into());
            }
            let seeds = hosts
                .iter()
                .map(|host| format!("{base}://{userinfo}{host}"))
                .collect();
            return Ok(Self::Cluster(seeds));
        }
        let (service, db) = path.split_once('/').unwrap_or((path, ""));
        check_database(db)?;
        if service.is_empty() {
            return Err("a sentinel URL names the monitored master: `.../<service>[/db]`".into());
        }
        let master_url = format!("{base}://{userinfo}{}/{db}", hosts[0]);
        let master = redis::IntoConnectionInfo::into_connection_info(master_url.as_str())
            .map_err(|err| err.to_string())?
            .redis_settings()
            .clone();
        Ok(Self::Sentinel {
            sentinels: hosts
                .iter()
                .map(|host| format!("{base}://{host}"))
                .collect(),
            service: service.to_owned(),
            master,
            tls: base == "rediss",
        })
    }
}

/// The URL with the password of its user-info part replaced by `***`, the only form of a URL
/// this crate ever prints. Works on malformed URLs too: everything before the last `@` may be
/// user-info (a password may hold an unencoded `/`, `?`, `#` or `@`), and only a user name
/// that cannot be part of a password is kept.
pub(crate) fn redact_url(url: &str) -> String {
    // Without a scheme (`secret@host`), all before the `@` may be secret.
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].find(':') {
        Some(colon) if scheme_end > 0 && !rest[..colon].contains(['/', '?', '#', '@']) => {
            &rest[..colon]
        }
        // `redis://secret@host`: some clients read a lone user-info as a password.
        _ => "",
    };
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

/// The password a URL may hold (everything of its user-info after the user name), raw and
/// percent-decoded: what [`Secret::scrub`] keeps out of printed text.
#[derive(Clone, Default)]
pub(crate) struct Secret(Vec<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    pub(crate) fn of(url: &str) -> Self {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let Some((userinfo, _)) = rest.rsplit_once('@') else {
            return Self::default();
        };
        // Without a scheme, all of it (see `redact_url`).
        let password = match userinfo.split_once(':') {
            Some((_, password)) if url.contains("://") => password,
            _ => userinfo,
        };
        let mut forms = vec![password.to_owned(), decode(password)];
        forms.retain(|form| !form.is_empty());
        Self(forms)
    }

    /// `text` with every piece of the password (every 4 characters of it, or all of a
    /// shorter one) replaced by `***`: a third party's message about the URL may quote a part.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for form in &self.0 {
            let chars: Vec<char> = form.chars().collect();
            let width = chars.len().min(4);
            for window in chars.windows(width) {
                let piece: String = window.iter().collect();
                while text.contains(&piece) {
                    text = text.replace(&piece, "***");
                }
            }
        }
        text
    }
}

/// Percent-decodes `text` (bytes that do not form UTF-8 are kept as `\u{FFFD}`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a user-info (before the last `@`) that holds `/`, `?` or `#`: URL parsers end the
/// user-info there, and would read part of the password as the host.
fn check_user_info(rest: &str) -> Result<(), String> {
    match rest.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(['/', '?', '#']) => Err(
            "its user name or password holds a `/`, `?` or `#`: percent-encode them \
             (`%2F`, `%3F`, `%23`)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Checks `[user[:password]@]host[:port]`: a host, and a port from 1 to 65535 if given. The
/// error never shows the password.
fn check_address(authority: &str) -> Result<(), String> {
    let address = authority
        .rsplit_once('@')
        .map_or(authority, |(_, address)| address);
    // `[::1]:6379`: the port follows the bracket.
    let (host, port) = match address.rsplit_once(']') {
        Some((host, after)) => (host, after.strip_prefix(':')),
        None => match address.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        },
    };
    if host.trim_start_matches('[').is_empty() {
        return Err(format!(
            "no host in `{address}`: expected e.g. `127.0.0.1:6379`"
        ));
    }
    match port {
        Some(port) if !matches!(port.parse::<u16>(), Ok(1..)) => Err(format!(
            "port `{port}` of `{address}` is not a number from 1 to 65535"
        )),
        _ => Ok(()),
    }
}

/// Checks the database part of a path: empty, or a number.
fn check_database(db: &str) -> Result<(), String> {
    if db.is_empty() || db.parse::<u32>().is_ok() {
        Ok(())
    } else {
        Err(format!("database `{db}` is not a number (e.g. `/0`)"))
    }
}

#[cfg(test)]
mod tests {
    use super::{Secret, Target, redact_url};

    #[test]
    fn a_bad_url_says_which_part_is_wrong() {
        let wrong = |url: &str| Target::parse(url).err().unwrap_or_default();
        assert!(wrong("").contains("empty URL"));
        assert!(wrong("http://127.0.0.1:6379").contains("unknown scheme `http`"));
        assert!(wrong("127.0.0.1:6379").contains("write `redis://127.0.0.1:6379`"));
        assert!(wrong("redis://127.0.0.1:99999").contains("port `99999`"));
        assert!(wrong("redis://127.0.0.1:0").contains("port `0`"));
        assert!(wrong("redis://127.0.0.1:port").contains("port `port`"));
        assert!(wrong("redis://:pw@:6379").contains("no host"));
        assert!(wrong("redis://h:1/x").contains("database `x`"));
        assert!(wrong("redis+cluster://h:1,h:70000").contains("port `70000`"));
        assert!(!wrong("redis://:s3cret@h:99999").contains("s3cret"));
        assert!(!wrong("s3cret@h:1").contains("s3cret"));
        for fine in ["redis://[::1]:6379/2", "redis://h", "rediss://u:p@h:1"] {
            assert!(Target::parse(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn plain_urls_are_one_server() {
        for url in [
            "redis://127.0.0.1:6379/2",
            "rediss://h",
            "unix:///tmp/r.sock",
        ] {
            assert!(matches!(Target::parse(url), Ok(Target::Server(u)) if u == url));
        }
    }

    #[test]
    fn cluster_urls_list_their_seeds_with_the_credentials() {
        let Ok(Target::Cluster(seeds)) =
            Target::parse("redis+cluster://app:pw@10.0.0.1:7000, 10.0.0.2:7001")
        else {
            panic!("not a cluster target");
        };
        assert_eq!(
            seeds,
            [
                "redis://app:pw@10.0.0.1:7000",
                "redis://app:pw@10.0.0.2:7001"
            ]
        );
        assert!(Target::parse("redis+cluster://h:1/0").is_err());
        assert!(Target::parse("redis+cluster://h:1,,h:2").is_err());
    }

    #[test]
    fn sentinel_urls_name_the_service_and_the_master_credentials() {
        let Ok(Target::Sentinel {
            sentinels,
            service,
            master,
            tls,
        }) = Target::parse("redis+sentinel://:s3cret@s1:26379,s2:26379/jobs/3")
        else {
            panic!("not a sentinel target");
        };
        assert_eq!(sentinels, ["redis://s1:26379", "redis://s2:26379"]);
        assert_eq!(service, "jobs");
        assert_eq!(master.db(), 3);
        assert_eq!(master.password(), Some("s3cret"));
        assert!(!tls);
        assert!(Target::parse("redis+sentinel://s1:26379").is_err());
        assert!(Target::parse("redis+sentinal://s1:26379/x").is_err());
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("rediss://app:p@ss@h"), "rediss://app:***@h");
        assert_eq!(redact_url("redis://lonely@h"), "redis://:***@h");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("s3cret@h:1"), ":***@h:1");
        // Unencoded reserved characters in the password: all of it is redacted.
        assert_eq!(redact_url("redis://u:pa/ss@h:1"), "redis://u:***@h:1");
        assert_eq!(redact_url("redis://:t:/%40?#x@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://a/b:c@h"), "redis://:***@h");
    }

    #[test]
    fn a_password_with_reserved_characters_is_refused_without_being_shown() {
        for url in [
            "redis://u:pa/ss@h:1",
            "redis+sentinel://:p?w@s:1/m",
            "redis://:p#w@h",
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(err.contains("percent-encode"), "{err}");
            assert!(!err.contains("pa/") && !err.contains("p?w") && !err.contains("p#w"));
        }
    }

    #[test]
    fn a_secret_is_scrubbed_piece_by_piece() {
        let secret = Secret::of("redis://user:s3cr%2Fet@h:1");
        assert_eq!(secret.scrub("port `s3cr` of `x`"), "port `***` of `x`");
        assert_eq!(
            secret.scrub("cr/et"),
            "***t",
            "no 4 characters of it are left"
        );
        assert_eq!(secret.scrub("nothing here"), "nothing here");
        assert!(Secret::of("redis://h:1").scrub("h:1") == "h:1");
    }
}
