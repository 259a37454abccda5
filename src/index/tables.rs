//! Table names of the on-disk index. A version suffix changes whenever a record's
//! encoding changes, so an old database is never misread.
use redb::TableDefinition;

/// digest string → `BlobRecord` (JSON).
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs_v1");
/// ingest ref → `IngestRecord` (JSON).
pub const INGESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ingests_v1");
