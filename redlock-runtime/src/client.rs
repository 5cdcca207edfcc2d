//! What the clones of one [`Redlock`](crate::Redlock) share, and each of its requests uses: the
//! masters, the release notifications of this process, and the locks this client holds.

use std::sync::Arc;

use crate::{backend::Backend, reentry::Owners, wake::ReleaseNotices};

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) backend: Arc<Backend>,
    pub(crate) notices: Arc<ReleaseNotices>,
    /// Who holds which lock, for re-entry.
    pub(crate) owners: Arc<Owners>,
}
