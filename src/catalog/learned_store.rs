//! Where a learned catalog is kept: in the budget's store. [`LearnedStore`]
//! reads and writes one distribution's stored form ([`Learned::to_json`]);
//! the daemon's catalogs do not know which store it is.
//!
//! - [`FileLearned`] (`budget.store = "file"`): one file beside the ledger,
//!   replaced atomically ([`learned::load`], [`learned::save`]).
//! - [`DynamoLearned`] (`budget.store = "dynamodb"`): items of the
//!   coordination table. A DynamoDB item holds at most 400 KB and the
//!   stored form may take several MB, so it is cut into chunks of at most
//!   [`CHUNK_BYTES`] under a head item:
//!
//!   - `pk = "learned#<alias>"`: `generation`, `chunks`, `bytes`;
//!   - `pk = "learned#<alias>#<slot>#<n>"` for `n` in `0..chunks`, `slot`
//!     the generation's parity: `generation` and `data` (binary).
//!
//!   A write puts the new generation's chunks into the slot the head does
//!   not point at (transactions of at most [`CHUNKS_PER_CALL`] chunks, each
//!   chunk only over an absent one or one of an older generation, and
//!   each transaction only while the head still names the generation the
//!   writer knows, so never into the slot of the generation the head
//!   names), then flips the head, conditional on the same generation.
//!   After a write that failed without a refusal (a timeout: its head
//!   update may have been made), the writer reads the head before its
//!   next write.
//!   With a lease every one of these writes is also conditional on the
//!   writer's fencing number still holding it, as the ledger's are, so a
//!   deposed leader writes nothing. A reader reads the head, then its
//!   chunks, and takes them only if every one carries the head's
//!   generation (else a write was under way: it reads again), so it never
//!   sees a mix of two generations. Chunks that still do not match after
//!   a few reads were damaged: the catalog is taken as empty and the next
//!   write replaces it with a whole generation. At most two slots of chunks and the
//!   head are kept per distribution; nothing is ever deleted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::CatalogError;
use super::learned::{self, Learned, MAX_FILE_BYTES};
use crate::coordination::dynamo::{DynamoTable, Fence, LearnedHead, TableError};
use crate::coordination::fenced::FencedTable;

/// The most bytes of the stored form in one chunk item (DynamoDB's item
/// limit is 400 KB, key and attribute names included).
pub const CHUNK_BYTES: usize = 350_000;
/// Chunks written per TransactWriteItems call: 1.4 MB, well within its
/// limit of 4 MB and 100 items (two more items are the condition checks
/// on the lease and on the head), and small enough to go out within the client's 2 s attempt
/// timeout.
pub const CHUNKS_PER_CALL: usize = 4;
/// The most chunks a stored form can need; a head naming more is refused
/// unread.
pub const MAX_CHUNKS: u64 = MAX_FILE_BYTES.div_ceil(CHUNK_BYTES as u64);
/// How often a changed learned catalog is written to a file.
pub const FILE_SAVE_EVERY: Duration = Duration::from_secs(60);
/// How often a changed learned catalog is written to the table: every
/// write puts the whole stored form (2 write units a KB, in transactions),
/// so less often than a file.
pub const TABLE_SAVE_EVERY: Duration = Duration::from_secs(600);
// Checked when compiling: the largest stored form fits the chunks; a
// chunk item (its data, key and names) stays under DynamoDB's 400 KB; one
// call's chunks stay under TransactWriteItems' 4 MB and 100 items.
const _: () = assert!(MAX_CHUNKS * CHUNK_BYTES as u64 >= MAX_FILE_BYTES);
const _: () = assert!(CHUNK_BYTES + 200 < 400 * 1024);
const _: () = assert!(CHUNKS_PER_CALL * CHUNK_BYTES < 4_000_000 && CHUNKS_PER_CALL + 2 <= 100);

/// A reader that finds the chunks changing under it tries this often.
const READS: usize = 3;
/// The longest one call on the table may take, SDK retries included.
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// One distribution's learned paths, kept somewhere.
pub trait LearnedStore: Clone + Send + Sync + 'static {
    /// Where, for messages: a file, or a table and item.
    fn location(&self) -> String;

    /// How often a changed set is written (and once more at shutdown).
    fn save_every(&self) -> Duration;

    /// The stored paths; `None` when nothing was kept yet. A stored form
    /// that cannot be read is refused as a whole, naming what is wrong.
    fn load(&self) -> impl Future<Output = Result<Option<Learned>, CatalogError>> + Send;

    /// Replaces the stored form with `json` ([`Learned::to_json`]).
    /// [`CatalogError::Refused`]: this writer may not write now (it no
    /// longer holds the lease, or the store changed since it was read).
    fn save(&self, json: Vec<u8>) -> impl Future<Output = Result<(), CatalogError>> + Send;
}

/// The file beside the ledger.
#[derive(Clone, Debug)]
pub struct FileLearned {
    path: std::path::PathBuf,
}

impl FileLearned {
    pub fn new(path: std::path::PathBuf) -> FileLearned {
        FileLearned { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl LearnedStore for FileLearned {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn save_every(&self) -> Duration {
        FILE_SAVE_EVERY
    }

    async fn load(&self) -> Result<Option<Learned>, CatalogError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || learned::load(&path))
            .await
            .map_err(|e| CatalogError::Stored {
                path: self.location(),
                message: format!("reading stopped: {e}"),
            })?
    }

    async fn save(&self, json: Vec<u8>) -> Result<(), CatalogError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || learned::save(&path, &json))
            .await
            .map_err(|e| CatalogError::Stored {
                path: self.location(),
                message: format!("writing stopped: {e}"),
            })?
    }
}

/// What a DynamoDB writer knows of the stored generations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Generations {
    /// The head's generation as last read or written; `None`: no head.
    head: Option<u64>,
    /// The highest generation this writer put chunks of.
    tried: Option<u64>,
    /// A write failed without a definite refusal (a timeout, a dropped
    /// connection): its head update may have been made, so `head` is not
    /// known until the head is read again.
    unsure: bool,
}

/// The generation of the next write: above the head's and above any this
/// writer tried before (whose chunks may be in the table, unflipped), and
/// of the other parity than the head's, so its chunks go into the slot the
/// head does not point at.
fn next_generation(known: Generations) -> u64 {
    let head = known.head.unwrap_or(0);
    let mut next = head.max(known.tried.unwrap_or(0)) + 1;
    if next % 2 == head % 2 {
        next += 1;
    }
    next
}

/// The head item's key.
pub fn head_key(alias: &str) -> String {
    format!("learned#{alias}")
}

/// The key of chunk `n` of a generation.
pub fn chunk_key(alias: &str, generation: u64, n: u64) -> String {
    format!("learned#{alias}#{}#{n}", generation % 2)
}

/// A head item's figures, checked before any chunk is read.
fn check_head(head: &LearnedHead, name: &str) -> Result<(), CatalogError> {
    let bad = |message: String| CatalogError::Stored {
        path: name.to_owned(),
        message,
    };
    if head.bytes > MAX_FILE_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the {MAX_FILE_BYTES} a learned catalog can take; not read",
            head.bytes
        )));
    }
    if head.chunks > MAX_CHUNKS {
        return Err(bad(format!(
            "{} chunks, more than the {MAX_CHUNKS} a learned catalog can take; not read",
            head.chunks
        )));
    }
    if head.chunks == 0 || head.bytes < head.chunks {
        return Err(bad(format!(
            "{} chunks holding {} bytes: not a stored learned catalog",
            head.chunks, head.bytes
        )));
    }
    Ok(())
}

/// What the chunks read make.
#[derive(Debug, PartialEq, Eq)]
enum Assembled {
    /// The stored form, whole.
    Whole(Vec<u8>),
    /// A chunk of another generation, or missing: a write was under way.
    Torn(String),
}

/// Puts the chunks read for `head` together: each must carry the head's
/// generation and together hold exactly its bytes.
fn assemble(
    head: &LearnedHead,
    chunks: Vec<Option<(u64, Vec<u8>)>>,
    name: &str,
) -> Result<Assembled, CatalogError> {
    let mut whole = Vec::new();
    for (n, chunk) in chunks.into_iter().enumerate() {
        let Some((generation, data)) = chunk else {
            return Ok(Assembled::Torn(format!("chunk {n} is missing")));
        };
        if generation != head.generation {
            return Ok(Assembled::Torn(format!(
                "chunk {n} is of generation {generation}, the head names {}",
                head.generation
            )));
        }
        if data.len() > CHUNK_BYTES || whole.len() + data.len() > head.bytes as usize {
            return Err(CatalogError::Stored {
                path: name.to_owned(),
                message: format!(
                    "chunk {n} holds {} bytes, more than the head's {} bytes allow",
                    data.len(),
                    head.bytes
                ),
            });
        }
        whole.extend_from_slice(&data);
    }
    if whole.len() as u64 != head.bytes {
        return Err(CatalogError::Stored {
            path: name.to_owned(),
            message: format!(
                "the chunks hold {} bytes, the head names {}",
                whole.len(),
                head.bytes
            ),
        });
    }
    Ok(Assembled::Whole(whole))
}

/// One distribution's learned catalog in the coordination table. Clones
/// share what the writer knows of the stored generations.
#[derive(Clone, Debug)]
pub struct DynamoLearned {
    table: DynamoTable,
    alias: String,
    /// The table as the ledger's store writes it: its fence is this
    /// writer's fence.
    fence: FencedTable,
    known: Arc<Mutex<Generations>>,
    chunk_bytes: usize,
}

impl DynamoLearned {
    /// The learned catalog of `alias` in `table`, written under the same
    /// fence as the ledger kept there (the ledger's
    /// [`crate::budget::DynamoStore`] is passed as it is).
    pub fn new(table: &impl AsRef<FencedTable>, alias: &str) -> DynamoLearned {
        let table = table.as_ref();
        DynamoLearned {
            table: DynamoTable::new(table.client(), table.table(), CALL_LIMIT),
            alias: alias.to_owned(),
            fence: table.clone(),
            known: Arc::default(),
            chunk_bytes: CHUNK_BYTES,
        }
    }

    /// Writes chunks of at most `bytes` (tests: many chunks from a few
    /// paths). At most [`CHUNK_BYTES`].
    pub fn with_chunk_bytes(mut self, bytes: usize) -> DynamoLearned {
        self.chunk_bytes = bytes.clamp(1, CHUNK_BYTES);
        self
    }

    /// Makes its calls with `client` (tests: one that loses answers).
    pub fn with_client(mut self, client: aws_sdk_dynamodb::Client) -> DynamoLearned {
        self.table = DynamoTable::new(client, self.table.table().to_owned(), CALL_LIMIT);
        self
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The head was read: it names `head`.
    fn heard(&self, head: Option<u64>) {
        let mut known = self.known();
        known.head = head;
        known.unsure = false;
    }

    /// Reads the head again after a write whose outcome is not known: it
    /// names this writer's last generation (its head update was made) or
    /// the one it knew (it was not); anything else was written by another
    /// writer, and what is kept here must be read again first.
    async fn make_sure(&self) -> Result<(), CatalogError> {
        let known = *self.known();
        let read = self
            .table
            .learned_head(&head_key(&self.alias))
            .await
            .map_err(|e| self.failed(e))?
            .map(|h| h.generation);
        if read != known.head && (read.is_none() || read != known.tried) {
            return Err(CatalogError::Refused {
                path: self.location(),
                message: format!(
                    "another writer changed the learned catalog (its head names generation \
                     {read:?}, this writer knew {:?} and tried {:?})",
                    known.head, known.tried
                ),
            });
        }
        self.heard(read);
        Ok(())
    }

    fn failed(&self, e: TableError) -> CatalogError {
        match e {
            TableError::Refused(_) => CatalogError::Refused {
                path: self.location(),
                message: "this replica no longer holds the lease, or another writer changed \
                          the learned catalog since it was read"
                    .to_owned(),
            },
            e => CatalogError::Table {
                path: self.location(),
                message: e.to_string(),
            },
        }
    }
}

impl LearnedStore for DynamoLearned {
    fn location(&self) -> String {
        format!(
            "DynamoDB table {}, item pk = \"{}\"",
            self.table.table(),
            head_key(&self.alias)
        )
    }

    fn save_every(&self) -> Duration {
        TABLE_SAVE_EVERY
    }

    async fn load(&self) -> Result<Option<Learned>, CatalogError> {
        let name = self.location();
        let mut torn = None;
        for _ in 0..READS {
            let head = self
                .table
                .learned_head(&head_key(&self.alias))
                .await
                .map_err(|e| self.failed(e))?;
            let Some(head) = head else {
                self.heard(None);
                return Ok(None);
            };
            check_head(&head, &name)?;
            let mut chunks = Vec::new();
            for n in 0..head.chunks {
                let key = chunk_key(&self.alias, head.generation, n);
                let chunk = self
                    .table
                    .learned_chunk(&key)
                    .await
                    .map_err(|e| self.failed(e))?;
                let stale = chunk.as_ref().is_none_or(|(g, _)| *g != head.generation);
                chunks.push(chunk);
                if stale {
                    break;
                }
            }
            match assemble(&head, chunks, &name)? {
                Assembled::Whole(json) => {
                    let read = Learned::from_json(&json, &name)?;
                    self.heard(Some(head.generation));
                    return Ok(Some(read));
                }
                Assembled::Torn(why) => torn = Some((head.generation, why)),
            }
        }
        // Torn at every read: no write of this store leaves it so (chunks
        // are written only while the head names another slot), so it was
        // damaged. What it held is lost; it is taken as empty, so that the
        // next write puts a whole generation into the other slot and
        // flips the head to it.
        let (generation, why) = torn.unwrap_or_default();
        tracing::error!(
            item = %name,
            generation,
            reason = %why,
            "the learned catalog's chunks do not match its head after {READS} reads: \
             damaged; starting it afresh (the next write replaces it)"
        );
        self.heard(Some(generation));
        Ok(None)
    }

    async fn save(&self, json: Vec<u8>) -> Result<(), CatalogError> {
        let fence = self
            .fence
            .write_fence()
            .map_err(|refused| CatalogError::Refused {
                path: self.location(),
                message: refused.to_string(),
            })?;
        if self.known().unsure {
            self.make_sure().await?;
        }
        let written = self.write(&json, fence.as_ref()).await;
        if let Err(e) = &written
            && !matches!(e, CatalogError::Refused { .. })
        {
            // Not a refusal: the head update may have been made.
            self.known().unsure = true;
        }
        written
    }
}

impl DynamoLearned {
    /// Writes `json` as the next generation: its chunks into the slot the
    /// head does not name (only while it names the generation known
    /// here), then the head.
    async fn write(&self, json: &[u8], fence: Option<&Fence>) -> Result<(), CatalogError> {
        let known = *self.known();
        let generation = next_generation(known);
        self.known().tried = Some(generation);
        let head_key = head_key(&self.alias);
        let keyed: Vec<(String, &[u8])> = json
            .chunks(self.chunk_bytes)
            .enumerate()
            .map(|(n, data)| (chunk_key(&self.alias, generation, n as u64), data))
            .collect();
        for call in keyed.chunks(CHUNKS_PER_CALL) {
            self.table
                .put_learned_chunks(call, generation, &head_key, known.head, fence)
                .await
                .map_err(|e| self.failed(e))?;
        }
        let head = LearnedHead {
            generation,
            chunks: keyed.len() as u64,
            bytes: json.len() as u64,
        };
        self.table
            .flip_learned_head(&head_key, &head, known.head, fence)
            .await
            .map_err(|e| self.failed(e))?;
        self.known().head = Some(generation);
        Ok(())
    }
}

/// The store of a distribution's learned catalog.
#[derive(Clone, Debug)]
pub enum AnyLearnedStore {
    File(FileLearned),
    Dynamo(DynamoLearned),
}

impl LearnedStore for AnyLearnedStore {
    fn location(&self) -> String {
        match self {
            AnyLearnedStore::File(s) => s.location(),
            AnyLearnedStore::Dynamo(s) => s.location(),
        }
    }

    fn save_every(&self) -> Duration {
        match self {
            AnyLearnedStore::File(s) => s.save_every(),
            AnyLearnedStore::Dynamo(s) => s.save_every(),
        }
    }

    async fn load(&self) -> Result<Option<Learned>, CatalogError> {
        match self {
            AnyLearnedStore::File(s) => s.load().await,
            AnyLearnedStore::Dynamo(s) => s.load().await,
        }
    }

    async fn save(&self, json: Vec<u8>) -> Result<(), CatalogError> {
        match self {
            AnyLearnedStore::File(s) => s.save(json).await,
            AnyLearnedStore::Dynamo(s) => s.save(json).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_goes_to_the_slot_the_head_does_not_name_and_above_every_try() {
        let g = |head, tried| {
            next_generation(Generations {
                head,
                tried,
                unsure: false,
            })
        };
        assert_eq!(g(None, None), 1);
        assert_eq!(g(Some(1), None), 2);
        assert_eq!(g(Some(2), Some(2)), 3);
        // A write of 3 failed half-way: its chunks may be there, so the
        // next is 5, still in the slot head 2 does not name.
        assert_eq!(g(Some(2), Some(3)), 5);
        // Another writer moved the head past what this one tried.
        assert_eq!(g(Some(6), Some(3)), 7);
        for head in 0..6u64 {
            for tried in 0..8u64 {
                let next = g(Some(head), Some(tried));
                assert!(next > head && next > tried);
                assert_ne!(chunk_key("w", next, 0), chunk_key("w", head, 0));
            }
        }
    }

    fn head(generation: u64, chunks: u64, bytes: u64) -> LearnedHead {
        LearnedHead {
            generation,
            chunks,
            bytes,
        }
    }

    #[test]
    fn chunks_of_the_heads_generation_make_the_stored_form() {
        let mut l = Learned::new();
        for i in 0..200 {
            l.learn(&crate::path::CfPath::parse(&format!("/d/{i}.html")).unwrap());
        }
        let json = l.to_json();
        let chunks: Vec<_> = json.chunks(100).map(|c| Some((4, c.to_vec()))).collect();
        let h = head(4, chunks.len() as u64, json.len() as u64);
        let Assembled::Whole(back) = assemble(&h, chunks.clone(), "t").unwrap() else {
            panic!("torn");
        };
        assert_eq!(back, json);
        assert_eq!(Learned::from_json(&back, "t").unwrap().len(), 200);

        // One chunk of the generation before (a write under way): torn.
        let mut mixed = chunks.clone();
        mixed[3] = Some((2, json[300..400].to_vec()));
        assert!(matches!(
            assemble(&h, mixed, "t").unwrap(),
            Assembled::Torn(why) if why.contains("chunk 3") && why.contains("generation 2")
        ));
        let mut missing = chunks.clone();
        missing[0] = None;
        assert!(matches!(
            assemble(&h, missing, "t").unwrap(),
            Assembled::Torn(_)
        ));
        // Fewer bytes than the head names: corrupt, not torn.
        let short = head(4, chunks.len() as u64, json.len() as u64 + 1);
        let e = assemble(&short, chunks, "item x").unwrap_err().to_string();
        assert!(e.contains("item x") && e.contains("head names"), "{e}");
    }

    #[test]
    fn heads_beyond_the_bounds_are_refused_unread() {
        check_head(&head(1, 1, 20), "t").unwrap();
        check_head(&head(1, MAX_CHUNKS, MAX_FILE_BYTES), "t").unwrap();
        for (h, says) in [
            (head(1, 1, MAX_FILE_BYTES + 1), "bytes, more than"),
            (head(1, MAX_CHUNKS + 1, MAX_FILE_BYTES), "chunks, more than"),
            (head(1, 0, 0), "0 chunks"),
        ] {
            let e = check_head(&h, "DynamoDB table t, item pk = \"learned#www\"")
                .unwrap_err()
                .to_string();
            assert!(e.contains("learned#www") && e.contains(says), "{e}");
        }
    }
}
