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
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(Self::Server(url.to_owned()));
        };
        let (base, kind) = match scheme.split_once('+') {
            Some((base @ ("redis" | "rediss"), kind @ ("cluster" | "sentinel"))) => (base, kind),
            Some(_) => {
                return Err(format!(
                    "unknown scheme `{scheme}` (expected redis, rediss, unix, redis+cluster, \
                     rediss+cluster, redis+sentinel or rediss+sentinel)"
                ));
            }
            None => return Ok(Self::Server(url.to_owned())),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
        if hosts.iter().any(|host| host.is_empty()) {
            return Err(format!(
                "expected comma-separated host:port addresses after `{scheme}://`"
            ));
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

#[cfg(test)]
mod tests {
    use super::Target;

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
}
