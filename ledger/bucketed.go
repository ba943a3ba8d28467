package ledger

import "github.com/cockroachdb/pebble/v2"

// Trace-code and idempotency records live in buckets: the record written by
// entry seq has the bucket seq >> shift (4 bytes, big-endian) right after
// its prefix, ahead of the code or the (hospital, request id).
//
// Why: both kinds of key are random (a drug's trace code, a hospital's
// request id). Under one flat prefix every flush carries about fifteen
// random keys an entry into the whole index, and compactions merge them
// into tables that span the whole history: at 10 million entries
// compactions took 26 % of the gateway's CPU and it kept 61–76 % of an
// empty ledger's throughput (bench/RESULTS.md). In buckets, the keys an
// entry writes all fall in the newest bucket, so compactions rewrite the
// tables of that bucket only, older buckets' tables stay in the bottom
// level untouched, and the cost of a write stops growing with the ledger.
//
// The price is paid by lookups, which search the buckets from the newest to
// the oldest and stop at the first record: a record lives in the bucket of
// the entry that last wrote it, and a code settled again after a reversal
// has its new record in a bucket at least as new as the old one, so the
// first record found is the latest. The in-memory filters (keyfilter.go)
// hold the keys without their bucket and answer nearly every lookup (a key
// never written) without the store; only a key that exists — a retried
// request, found in the newest buckets — or a false positive (≈ 0.1 %)
// searches, and a bucket without the key is mostly ruled out by the tables'
// bloom filters. A new store uses 2^20 entries a bucket (defaultBucketShift):
// 48 buckets at 50 million entries.
//
// Records: a settlement marks its codes in its own bucket; a reversal frees
// them where they are, in the bucket of the settlement it reverses (a code in
// use has exactly one record saying so, its settlement's). An idempotency
// key is written once, in its entry's bucket.

// bucket is the bucket of the records written by entry seq.
func (db *DB) bucket(seq uint64) uint32 { return uint32(seq >> db.bshift) }

// topBucket is the newest bucket a record may be in: that of the last entry
// the writer sealed, which moves before the entry's batch is applied, so a
// record visible in the store is never in a newer bucket.
func (db *DB) topBucket() uint32 { return db.bucket(db.sealed.Load()) }

// probe looks the bucketed key up in r, bucket by bucket from top down to
// 0, and calls fn with the value of the first record found. It overwrites
// key's bucket.
func probe(r pebble.Reader, key []byte, top uint32, fn func(v []byte) error) (found bool, err error) {
	for b := int64(top); b >= 0; b-- {
		be.PutUint32(key[1:bucketKeyLen], uint32(b))
		if found, err = getFrom(r, key, fn); found || err != nil {
			return found, err
		}
	}
	return false, nil
}
