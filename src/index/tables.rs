//! Table names of the on-disk index. A version suffix changes whenever a record's
//! encoding changes, so an old database is never misread.
use redb::TableDefinition;

/// digest string → `BlobRecord` (JSON).
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs_v1");
/// ingest ref → `IngestRecord` (JSON).
pub const INGESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ingests_v1");
/// "owner digest\tleaner" → nothing: the blob kept once as `owner` holds bytes that
/// `leaner`'s DAG reads from its stored file (Kubo kept the shared block's first
/// reference). A leaner is a digest, or `pin:<cid>` for a pin someone else holds.
pub const LEANS: TableDefinition<&str, &[u8]> = TableDefinition::new("leans_v1");
/// digest → nothing: a committed blob whose CID was computed by ipcs while it streamed and
/// whose import into the backend has not finished yet (see `store::later_import`).
pub const PENDING_IMPORTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("pending_imports_v1");
