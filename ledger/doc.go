// Package ledger is the gateway's append-only, hash-chained settlement ledger
// and registry, stored in Pebble.
//
// # Writes: one writer, group commit, nothing answered before it is synced
//
// Every write goes through one goroutine (the writer). Append hands it the
// entry and waits. The writer takes whatever requests are queued (up to
// Options.MaxBatch) into ONE Pebble batch; for each entry in order it first
// does all reads and checks (idempotency key unused, reversed settlement
// present / a settlement / not yet reversed, counters and balance stay in
// range) against the DB plus the batch so far, and only then adds its
// writes. A refused entry therefore adds nothing and consumes no sequence
// number. An accepted entry is sealed: Seq = head+1, SettlementID =
// "S%012d", PrevHash = the previous entry's Hash, CommittedAt =
// Options.Now() (never earlier than the previous entry's, nor inside a
// closed month), Hash = sha256(PrevHash || body), where body is the
// entry's canonical encoding without the trailing Hash.
//
// The writer then applies the batch (WAL write and memtable, visible to
// readers) without waiting for its sync, and hands it to a second
// goroutine, the syncer, which waits for the WAL sync and only then
// answers the batch's requests, refused entries included (a refusal may
// rest on an earlier entry of the same batch). Meanwhile the writer builds
// and applies the next batches (about maxInFlight), and Pebble syncs them
// together, so the serial stage is building a batch, not the disk's sync
// latency; throughput grows with concurrency while every acknowledged entry
// is on disk. Batches are answered in order; once one fails to sync, every
// later one fails too. The writer's own state runs ahead of the durable
// one: its chain head and the values written by batches still in flight
// (counters, balances) are its own, and what it reads back within a batch
// it takes from that state first (pending, in flight, then the hot cache
// and the store). Batches of settlements need no index for that; batches
// with a registry operation or a reversal, which read arbitrary keys back,
// are indexed batches (the writer's own reads go through the batch only in
// an operation's, whose writes its state does not hold), and a registry
// operation's batch is waited for before the next one is built.
//
// A settlement's trace codes are the exception: Append reserves them in
// memory and looks them up in the committed store before handing the entry
// to the writer, and releases them once the writer has answered (see
// tracecodes.go), so that the twenty-odd lookups of a bill run in parallel
// instead of in the one serial stage.
//
// Why a single writer: sequence numbers, the hash chain and the uniqueness
// checks (idempotency keys, one reversal per settlement) are all "read,
// then write depending on what was read". A single goroutine
// makes them trivially serializable without locks, and batching makes its
// fsync cost shared. Registry writes (PutHospitals, PutCatalog, PutPersons)
// go through the same writer, so a new person's opening balance cannot race
// with a settlement moving that balance, and there is one place that deals
// with write failures. Opening balances and credits are entries of the chain
// (KindOpening, KindCredit), appended by their operations in the
// operation's batch (writer.go: applyBalanceEntry).
//
// Write failure: if a commit fails (Pebble reports WAL write errors through
// its Logger.Fatalf, which this package turns into a panic that the writer
// recovers, and sync errors to the syncer), every request of the batch (and
// of the batches after it) gets an error wrapping
// ErrWriteFailed, the in-memory head does not move, and the DB enters a
// failed state: every later write returns ErrWriteFailed at once (the
// gateway answers 503), reads keep working. Pebble's commit pipeline is not
// usable after such an error, so the only way out is to restart (reopen),
// which replays the WAL: whatever reached the disk is then durable, and
// idempotency keys make client retries safe.
//
// # Reads: durable watermark
//
// Pebble publishes a batch to readers before its WAL sync completes. The DB
// therefore keeps the durable head (seq and hash of the last synced entry)
// in memory, and the read methods that expose ledger entries or their
// indexes (Idempotency, TraceCodeOwner, Entry, EntryByID, ReversedBy) check
// the seq of what they found against it: beyond it, they wait until it is
// durable, or return ErrWriteFailed if the store failed first. Index values
// carry the seq of the entry that last wrote them for this purpose (a trace
// code record keeps the seq of the reversal that freed it rather than being
// deleted). Scan and Verify stop at the durable head as of their call.
// Counters and Balance are not gated: the gateway serializes each person
// with a lock held until its Append returns.
//
// The keys every settlement reads — the person's record, balance and
// counters — are served from an in-memory write-through cache (hotcache.go)
// that the syncer updates once a batch is durable and before it is
// answered, preloaded when the store opens; and the keys that are almost
// always absent — a new idempotency key, a new trace code, a year without
// counters yet — are first looked up in in-memory Bloom filters built when
// the store opens (keyfilter.go), so that the settlement path does not
// prove absences against the LSM tree. Reads take no global lock: the
// head is an atomic pointer, waiters sleep on a channel that is closed and
// replaced whenever the head moves, hospitals and catalogs are immutable
// maps behind atomic pointers (copy-on-write, replaced after a durable
// commit), the hot cache is sharded behind read-write locks and the filters
// are atomic words.
//
// # Key layout
//
// All integers in keys are big-endian so that keys sort numerically; "lp(s)"
// is s preceded by its length as a uvarint, so that a variable-length
// component cannot run into the next one.
//
//	mformat                              -> byte 4 (layout version, storeFormat) | bucket shift
//	mmigrating                           -> the upgrade to format 4 under way (mformat says 4 already): phase | last key (upgrade.go)
//	mhead                                -> seq (8) | hash (32) of the last entry
//	e | seq(8)                           -> encoded Entry (see AppendEntry)
//	K | bucket(4) | lp(hospital) | request id -> body sha256 (32) | seq (8)
//	T | bucket(4) | trace code           -> owner seq (8), then the freeing reversal's seq (8) once freed
//	r | settlement seq(8)                -> seq of its reversal (8)
//	c | lp(region) | lp(person) | year   -> counters blob: uvarint n, n × (lp(name), uvarint value), sorted by name, no zeros
//	b | lp(region) | person              -> balance, int64 (8): Σ BalanceChange of the person's entries
//	o | lp(region) | person              -> opening balance, int64 (8), written once (audit.go)
//	x | lp(region) | reference           -> a credit: lp(person) | amount (8) | balance after (8) | its entry's seq (8) (credits.go)
//	p | lp(region) | person id           -> encoded Person
//	h | hospital id                      -> encoded Hospital
//	g | lp(region) | code                -> encoded CatalogEntry
//	w | name                             -> sha256 of the outside records last applied under name (applied.go)
//	R | lp(region) | key                 -> lp(route) | body sha256 (32) | first answer: a region write's idempotency key (regionkeys.go)
//
// Derived from the entries, written by the writer in the entry's batch
// (derive.go; Open rebuilds them for a store of format 1):
//
//	a | month(4) | lp(insured) | lp(treating) -> pair totals: u settlements | u reversals | 13 × s amounts
//	A | month(4)                         -> the month's first seq (8) | last seq (8) | last hash (32)
//	i | lp(hospital) | at(8) | seq(8)    -> hospital row: kind | u reversed seq | s total | s fund total | s personal account
//	l | stored hash index(8)             -> Merkle tree stored hash (32), see merkle.go
//
// and, by CloseMonth:
//
//	z | month(4)                         -> seq (8) | hash (32) | closed at (8) | the frozen statement
//
// month is YYYYMM as a uint32 (the month in UTC+8 of the entry's
// CommittedAt); at is CommittedAt with its sign bit flipped. Pair totals and
// month records are coalesced per batch (one Set per touched key); the
// other derived records cost one Set per entry, the tree about one (leaves
// are not stored; they are computed from the entry's Hash). The
// writer never stamps an entry earlier than the previous one nor inside a
// closed month (DB.floor), so a month's entries are one contiguous seq
// range and a closed month receives nothing.
//
// The bucket of a "K" or "T" record is the seq of the entry that wrote it
// shifted right by the store's bucket shift (2^20 entries a bucket), so
// that these random keys are merged by compactions only with the recent
// ones; lookups search the buckets newest first (bucketed.go). Formats 1
// and 2 kept them without bucket under "k" and "t"; Open moves them
// (upgrade.go).
//
// The year in counter keys is 4 bytes, the int32 with its sign bit flipped.
// There is no settlement-id index: ids are "S" + the seq in at least 12
// digits, so EntryByID and ReversedBy parse the id (ParseSettlementID) and
// read the entry key directly — one less write per entry and one less read
// per lookup. Counters of a (region, person, year) live under one key, so
// reading them is one Get and updating them one Set. A settlement writes its
// entry, its idempotency key, its trace codes, its person's counters and
// balance; a reversal writes its entry, its idempotency key, the reversed
// settlement's "r" marker, frees the reversed settlement's trace codes (its
// own TraceCodes field is informational and neither checked nor marked), and
// applies its own Changes and BalanceChange to the same person's counters of
// the same year and balance. The writer checks that a reversal mirrors its
// settlement — same insured region, person and date year, Changes and
// BalanceChange the exact negation (ErrReversalMismatch otherwise) — so that
// a reversal always restores the counters and balance it should. The head
// record is written once per batch.
// All of it is in the batch of the entry.
//
// # Entry encoding
//
// Hand-written and versioned (first byte EntryFormat), varint-based, with
// the Hash as the last 32 bytes so that "the encoding without Hash" is a
// prefix of the stored value and Verify hashes the stored bytes directly.
// The decoder is strict — minimal varints, booleans 0 or 1, counts bounded
// by the remaining input, no trailing bytes, at most MaxEntrySize — so it
// never over-allocates on hostile input, and any accepted input re-encodes
// to the same bytes (the encoding is canonical both ways).
//
// Format 2 (since format 1, which is still read) stores a settlement's
// policy input field by field in varints instead of its fixed-width ABI
// bytes, and its bill lines once, as part of that input, instead of a
// second time: a settlement of 12 lines took 1,576 bytes in format 1 and
// takes 902. Fewer bytes an entry is less to write to the WAL and sync, to
// hash, to hold in the memtable and to flush. DecodeEntry gives back the
// exact ABI bytes (Input) and the lines, so readers see no difference; an
// entry remembers its format, so a format 1 entry re-encodes to the bytes
// its Hash covers.
//
// # Restart
//
// Open reads the head record and checks it against the last entry (and that
// no entry lies beyond it); everything in the store after Pebble's WAL
// replay is durable, so the head is also the durable watermark. All indexes
// live in Pebble, written in the entry's batch, so they are exactly as they
// were; hospitals and catalogs are reloaded into memory, the key filters
// are loaded from the file saved at the last clean close and brought up to
// the head from the entries written since (or, without a usable file,
// built from the keys: keyfilter_file.go), and the hot cache is preloaded.
//
// Entry values (the bulk of the bytes, never changed) are stored apart from
// the keys in Pebble's blob files (value separation), so compactions move
// the small index records, not the entries.
package ledger
