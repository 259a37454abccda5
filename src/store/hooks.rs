//! The core's second seam: what happens around it without it knowing. After a blob
//! becomes local the core sends a commit event (and an import event once a blob imported
//! after its commit is in the backend); when Info or Read finds no record it
//! asks the read-miss hook, which may obtain the blob elsewhere and record it through
//! `ContentStore::adopt`. Peer distribution implements both (`crate::peer`); a store
//! working alone uses `Standalone`. Hooks get the store as an argument instead of
//! holding it, so no reference cycle forms.
use crate::digest::Digest;
use crate::store::{ContentStore, Info};
use futures::future::BoxFuture;
use std::sync::Arc;

pub trait Distribution: Send + Sync + 'static {
    /// `rec` was committed here or adopted. The core awaits it before answering, so
    /// what it learns (manifest hints) is known to the next request; spawn slow work.
    fn committed(self: Arc<Self>, core: ContentStore, rec: Info) -> BoxFuture<'static, ()>;
    /// `rec`, committed earlier, is now in the backend too (its import ran after the
    /// commit: `later_import`): it can be shared.
    fn imported(self: Arc<Self>, _core: ContentStore, _rec: Info) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    /// The index lacks `digest`: the record, if this hook obtained and adopted it.
    fn read_miss(
        self: Arc<Self>,
        core: ContentStore,
        digest: Digest,
    ) -> BoxFuture<'static, Option<Info>>;
}

/// No distribution: commits stay local, misses are misses.
pub struct Standalone;

impl Distribution for Standalone {
    fn committed(self: Arc<Self>, _core: ContentStore, _rec: Info) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn read_miss(
        self: Arc<Self>,
        _core: ContentStore,
        _digest: Digest,
    ) -> BoxFuture<'static, Option<Info>> {
        Box::pin(async { None })
    }
}
