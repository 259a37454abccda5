//! CAR archives of images, for sites with no network: `export` writes the DAG of every
//! blob of some images plus a small index DAG (`format`) as one CAR through Kubo's `dag
//! export` (each block once); `import` feeds a CAR to Kubo's `dag import` (which checks
//! every block against its CID), then adopts each blob into the store only after its
//! bytes hashed to its digest, and undoes everything if anything fails. `walk` finds an
//! image's blobs in the store. Registering the images in containerd is the CLI's part
//! (`cli::car`), once the store holds every blob.
pub mod export;
pub mod format;
pub mod import;
pub mod walk;

use crate::ipfs::KuboClient;
use crate::store::ContentStore;

pub use export::Exported;
pub use import::{ImportProgress, Imported};
pub use walk::{Blob, Descriptor, ImageRef};

/// Export and import over one store and its Kubo node.
pub struct Archive {
    store: ContentStore,
    kubo: KuboClient,
    /// One import at a time: an import pins and unpins the CAR's root, which another
    /// import of the same CAR would share.
    importing: tokio::sync::Mutex<()>,
}

impl Archive {
    /// `kubo` is the node the store's backend uses.
    pub fn new(store: ContentStore, kubo: KuboClient) -> Archive {
        Archive {
            store,
            kubo,
            importing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    pub fn kubo(&self) -> &KuboClient {
        &self.kubo
    }
}
