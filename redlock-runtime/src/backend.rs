//! The masters of one client, with what every round over them needs: the client's settings
//! and its background releases.

use std::sync::Arc;

use crate::{
    Config, LockError,
    background::BackgroundReleases,
    master::{Master, ServerIds},
    quorum::quorum_of,
    scripts,
    target::redact_url,
};

/// The masters of one client; shared by its handles, its requests and its leases.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) masters: Vec<Arc<Master>>,
    pub(crate) config: Config,
    pub(crate) background: Arc<BackgroundReleases>,
}

impl Backend {
    /// One master per URL of `config`; no I/O until first use.
    pub(crate) fn new(config: Config) -> Result<Self, LockError> {
        if config.urls.is_empty() {
            return Err(LockError::NoMasters);
        }
        for (setting, value) in [
            ("master_timeout", config.master_timeout),
            ("connect_timeout", config.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(LockError::InvalidSetting {
                    setting,
                    value: format!("{value:?}"),
                    reason: "it must be more than zero (every call would time out unsent)",
                });
            }
        }
        // A server listed twice would cast two votes: one server could make a quorum.
        let same = |url: &str| url.trim().trim_end_matches('/').to_owned();
        for (index, url) in config.urls.iter().enumerate() {
            if config.urls[..index]
                .iter()
                .any(|earlier| same(earlier) == same(url))
            {
                return Err(LockError::InvalidUrl {
                    url: redact_url(url),
                    reason: "listed twice among the masters: each server must count as one vote"
                        .into(),
                });
            }
        }
        let server_ids = Arc::new(ServerIds::default());
        let scripts: Arc<[&'static str]> = scripts::codes().into();
        let masters = config
            .urls
            .iter()
            .map(|url| {
                let (ids, scripts) = (Arc::clone(&server_ids), Arc::clone(&scripts));
                Master::new(
                    url,
                    config.master_timeout,
                    config.connect_timeout,
                    ids,
                    scripts,
                )
                .map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            masters,
            config,
            background: Arc::default(),
        })
    }

    /// How many masters must agree: a strict majority.
    pub(crate) fn quorum(&self) -> usize {
        quorum_of(self.masters.len())
    }
}
