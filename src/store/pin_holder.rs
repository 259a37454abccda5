//! Whose recursive pin a blob's CID carries. Kubo keeps one recursive pin per CID, and
//! the last `add` or `pin add` names it. A pin under another name than this store's is
//! someone else's (`nerdctl push ipfs://` re-adds every blob with `pin=true`): ipcs
//! neither removes it (Delete) nor renames it by importing the same bytes over it (an
//! import after the commit).
use crate::cid::Cid;
use crate::store::error::StoreError;
use crate::store::Inner;

impl Inner {
    /// The name of `cid`'s recursive pin when someone other than this store holds it;
    /// None when the pin is this store's or there is none. `ctx` names the operation for
    /// the error when the backend cannot say.
    pub(crate) async fn others_pin(
        &self,
        cid: &Cid,
        ctx: String,
    ) -> Result<Option<String>, StoreError> {
        let pinned_as = self
            .backend
            .pinned_as(cid)
            .await
            .map_err(StoreError::ipfs(ctx))?;
        let ours = self.backend.pin_name();
        Ok(pinned_as.filter(|name| !ours.is_empty() && name != ours))
    }
}
