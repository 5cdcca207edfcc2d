//! What the clones of one [`Redlock`](crate::Redlock) share, and each of its requests uses: the
//! masters, what the waits of this process share, and the locks this client holds.

use std::sync::Arc;

use crate::{backend::Backend, reentry::Owners, wait::Waits};

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) backend: Arc<Backend>,
    /// What its waits share: release notices, local lines, waiting counts.
    pub(crate) waits: Waits,
    /// Who holds which lock, for re-entry.
    pub(crate) owners: Arc<Owners>,
}
