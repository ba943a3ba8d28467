package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"

	"medgate/engine/money"
	"medgate/gateway"
	"medgate/ledger"
)

// medgate verify: offline checks of the ledger and of what the gateway
// publishes (ledger/VERIFY.md). Nothing here talks to a gateway.
func init() {
	register(command{name: "verify", summary: "verify the ledger, checkpoints, proofs and exports offline",
		run: verifyCmd})
}

const verifyUsage = `Usage:
  medgate verify ledger --db DIR [--checkpoint FILE --key KEY]
        walk the hash chain and the Merkle tree of a stopped gateway's ledger,
        naming the first bad entry; with a checkpoint, check the ledger still
        holds the tree it signed
  medgate verify checkpoint --key KEY FILE
  medgate verify inclusion --key KEY FILE
  medgate verify consistency --key KEY [--old CHECKPOINT] [--new CHECKPOINT] FILE
        check a checkpoint / an inclusion proof / a consistency proof, as
        GET /v1/clearing/checkpoint, .../proofs/inclusion/{id} (or
        /v1/settlements/{id}/proof) and .../proofs/consistency answer them
  medgate verify export [--checkpoint FILE --key KEY] FILE
        check an NDJSON export (GET /v1/clearing/export): every entry's hash,
        the chain, and with a checkpoint the Merkle root it signed
  medgate verify key [--checkpoint-key FILE]
        print the verifier key of a checkpoint key (default: the demo key)

KEY is a note verifier key (medgate-ledger+<hash>+<base64>), 64 hex digits of
an ed25519 public key, or a file holding either. FILE "-" is standard input.
A CHECKPOINT file is the checkpoint endpoint's JSON or the signed note itself.
Exit codes: 0 verified, 1 verification failed, 2 usage or unreadable input.
`

func verifyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, verifyUsage)
		return exitOK
	}
	sub, args := args[0], args[1:]
	fl := flag.NewFlagSet("verify "+sub, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, verifyUsage) }
	keyArg := fl.String("key", "", "verifier key, hex public key, or a file holding one")
	var (
		dbDir, cpFile, oldFile, newFile, seedFile *string
	)
	switch sub {
	case "ledger":
		dbDir = fl.String("db", "", "the ledger's Pebble directory (the gateway must be stopped)")
		cpFile = fl.String("checkpoint", "", "a checkpoint the ledger must still hold")
	case "export":
		cpFile = fl.String("checkpoint", "", "a checkpoint whose root the export must reproduce")
	case "consistency":
		oldFile = fl.String("old", "", "a checkpoint saved earlier: must be the proof's from side")
		newFile = fl.String("new", "", "a checkpoint: must be the proof's to side")
	case "key":
		seedFile = fl.String("checkpoint-key", "", "the checkpoint key file (64 hex digits); default: the demo key")
	case "checkpoint", "inclusion":
	default:
		fmt.Fprintf(stderr, "medgate verify: unknown check %q\n\n%s", sub, verifyUsage)
		return exitUsage
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "medgate verify %s: %s\n", sub, fmt.Sprintf(format, a...))
		return exitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stdout, "FAIL: %s\n", fmt.Sprintf(format, a...))
		return exitFailure
	}
	// The verifier, when a key is given or needed.
	var v note.Verifier
	needKey := sub == "checkpoint" || sub == "inclusion" || sub == "consistency" || (cpFile != nil && *cpFile != "")
	if *keyArg != "" && !needKey {
		// Nothing here is signed: a key given would be dropped, and the OK
		// read as a check against it.
		if sub == "key" {
			return usageErr("--key is not read by verify key (the checkpoint key is --checkpoint-key FILE)")
		}
		return usageErr("--key without --checkpoint FILE checks nothing: the ledger and its export carry no signature, a checkpoint does")
	}
	if needKey {
		if *keyArg == "" {
			return usageErr("--key is required (medgate verify key prints the verifier key of a checkpoint key)")
		}
		k := *keyArg
		if b, err := os.ReadFile(k); err == nil {
			k = string(b)
		}
		var err error
		if v, err = ledger.ParseVerifier(k); err != nil {
			return usageErr("--key: %v", err)
		}
		if isDemoVerifier(v) {
			fmt.Fprintf(stderr, "medgate verify %s: WARNING: --key is the PUBLIC DEMO checkpoint key: anyone can sign with it, so what it signed proves nothing\n", sub)
		}
	}
	var cp *ledger.Checkpoint
	if cpFile != nil && *cpFile != "" {
		b, err := readInput(*cpFile)
		if err != nil {
			return usageErr("--checkpoint: %v", err)
		}
		if cp, err = openCheckpointFile(b, v); err != nil {
			return fail("checkpoint %s: %v", *cpFile, err)
		}
	}
	file := func() ([]byte, bool) {
		if fl.NArg() != 1 {
			usageErr("want exactly one FILE")
			return nil, false
		}
		b, err := readInput(fl.Arg(0))
		if err != nil {
			usageErr("%v", err)
			return nil, false
		}
		return b, true
	}

	switch sub {
	case "key":
		var seed []byte
		if *seedFile != "" {
			var err error
			if seed, err = gateway.ReadCheckpointKey(*seedFile); err != nil {
				return usageErr("%v", err)
			}
			fmt.Fprint(stderr, keyFileWarning("medgate verify key: ", *seedFile))
		} else {
			seed = ledger.DemoCheckpointSeed()
			fmt.Fprintln(stderr, "medgate verify key: no --checkpoint-key: this is the PUBLIC DEMO key")
		}
		s, err := ledger.NewCheckpointSigner(seed)
		if err != nil {
			return usageErr("%v", err)
		}
		fmt.Fprintln(stdout, s.VerifierKey)
		fmt.Fprintln(stdout, hex.EncodeToString(s.Public))
		return exitOK

	case "ledger":
		if *dbDir == "" || fl.NArg() != 0 {
			return usageErr("want --db DIR and no other argument")
		}
		rep, err := ledger.VerifyStore(*dbDir, nil, cp)
		if err != nil {
			return usageErr("%v", err)
		}
		var ce *ledger.ChainError
		var te *ledger.TreeError
		switch {
		case errors.As(rep.ChainErr, &ce):
			return fail("hash chain broken at %s: %s; %d entries before it verified",
				entryName(ce.Seq, ce.Kind), ce.Reason, rep.Entries)
		case errors.As(rep.TreeErr, &te):
			return fail("Merkle tree wrong at %s: %s", entryName(te.Seq, te.Kind), te.Reason)
		case rep.TreeErr != nil:
			return fail("%v", rep.TreeErr)
		case rep.CheckpointErr != nil:
			return fail("%v", rep.CheckpointErr)
		}
		fmt.Fprintf(stdout, "OK: %d entries; hash chain and Merkle tree verified\nhead %s\nroot %s\n",
			rep.Entries, hex.EncodeToString(rep.Head[:]), rep.Root)
		if cp != nil {
			fmt.Fprintf(stdout, "the ledger holds the signed checkpoint of tree size %d (%s)\n", cp.Size, cp.Time.Format("2006-01-02T15:04:05Z07:00"))
		}
		return exitOK

	case "checkpoint":
		b, ok := file()
		if !ok {
			return exitUsage
		}
		c, err := openCheckpointFile(b, v)
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stdout, "OK: checkpoint signed by %s\ntree size %d\nroot %s\nhead %s\ntime %s\n", v.Name(),
			c.Size, c.Root, hex.EncodeToString(c.Head[:]), c.Time.Format("2006-01-02T15:04:05Z07:00"))
		return exitOK

	case "inclusion":
		b, ok := file()
		if !ok {
			return exitUsage
		}
		var d ledger.InclusionDoc
		if err := strictUnmarshal(b, &d); err != nil {
			return fail("not an inclusion proof: %v", err)
		}
		c, e, err := d.Verify(v)
		if err != nil {
			return fail("%v", err)
		}
		kind := "settlement"
		if e.Kind == ledger.KindReversal {
			kind = "reversal of " + e.Reverses
		}
		fmt.Fprintf(stdout, "OK: %s (seq %d, %s, hospital %s, total %s) is entry %d of the tree of size %d signed at %s\nroot %s\n",
			e.SettlementID, e.Seq, kind, e.Hospital, money.FormatFen(e.Amounts.Total), e.Seq, c.Size,
			c.Time.Format("2006-01-02T15:04:05Z07:00"), c.Root)
		return exitOK

	case "consistency":
		b, ok := file()
		if !ok {
			return exitUsage
		}
		var d ledger.ConsistencyDoc
		if err := strictUnmarshal(b, &d); err != nil {
			return fail("not a consistency proof: %v", err)
		}
		from, to, err := d.Verify(v)
		if err != nil {
			return fail("%v", err)
		}
		for _, side := range []struct {
			name, file string
			want       *ledger.Checkpoint
		}{{"--old", *oldFile, from}, {"--new", *newFile, to}} {
			if side.file == "" {
				continue
			}
			cb, err := readInput(side.file)
			if err != nil {
				return usageErr("%s: %v", side.name, err)
			}
			c, err := openCheckpointFile(cb, v)
			if err != nil {
				return fail("%s %s: %v", side.name, side.file, err)
			}
			if c.Size != side.want.Size || c.Root != side.want.Root {
				return fail("%s %s is the tree of size %d, root %s; the proof's is %d, root %s",
					side.name, side.file, c.Size, c.Root, side.want.Size, side.want.Root)
			}
		}
		fmt.Fprintf(stdout, "OK: the tree of size %d (root %s) is a prefix of the tree of size %d (root %s)\n",
			from.Size, from.Root, to.Size, to.Root)
		return exitOK

	case "export":
		if fl.NArg() != 1 {
			return usageErr("want exactly one FILE")
		}
		var r io.Reader = os.Stdin
		if name := fl.Arg(0); name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return usageErr("%v", err)
			}
			defer f.Close()
			r = f
		}
		rep, err := ledger.VerifyExport(r, cp)
		if err != nil {
			var ee *ledger.ExportError
			if errors.As(err, &ee) && ee.Seq != 0 {
				if ee.Kind == ledger.KindCredit || ee.Kind == ledger.KindOpening {
					return fail("%s: %v", entryName(ee.Seq, ee.Kind), err)
				}
				return fail("entry %s: %v", ledger.SettlementID(ee.Seq), err)
			}
			return fail("%v", err)
		}
		if cp != nil && !rep.CheckpointMatched {
			return fail("the export (seq %d..%d) cannot be checked against the checkpoint of tree size %d: it must start at seq 1 and reach it",
				rep.From, rep.To, cp.Size)
		}
		if rep.Entries == 0 {
			fmt.Fprintln(stdout, "OK: the export is empty")
			if rep.CheckpointMatched {
				fmt.Fprintf(stdout, "matches the signed checkpoint of tree size %d\n", cp.Size)
			}
			return exitOK
		}
		fmt.Fprintf(stdout, "OK: %d entries, seq %d..%d; every hash and link verified\n", rep.Entries, rep.From, rep.To)
		if rep.HasRoot {
			fmt.Fprintf(stdout, "root of entries 1..%d: %s\n", rep.To, rep.Root)
		}
		if rep.CheckpointMatched {
			fmt.Fprintf(stdout, "matches the signed checkpoint of tree size %d\n", cp.Size)
		}
		return exitOK
	}
	return exitUsage
}

// entryName names entry seq of kind k (0: unknown) in a failure: a
// settlement or reversal by its settlement id, which hospitals and
// clearing houses know it by; a credit or an opening balance, which has
// none (no route, statement or row shows it), by its seq and kind.
func entryName(seq uint64, k ledger.Kind) string {
	switch k {
	case ledger.KindCredit:
		return fmt.Sprintf("entry %d (credit)", seq)
	case ledger.KindOpening:
		return fmt.Sprintf("entry %d (opening balance)", seq)
	}
	return fmt.Sprintf("entry %s (seq %d)", ledger.SettlementID(seq), seq)
}

// isDemoVerifier says whether v is the public demo checkpoint key's: it
// accepts a signature made with the demo seed.
func isDemoVerifier(v note.Verifier) bool {
	msg := []byte("medgate: is this the demo checkpoint key?")
	return v.Verify(msg, ed25519.Sign(ed25519.NewKeyFromSeed(ledger.DemoCheckpointSeed()), msg))
}

func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// openCheckpointFile verifies a checkpoint file: the endpoint's JSON (whose
// fields must agree with its signed note) or the signed note itself.
func openCheckpointFile(b []byte, v note.Verifier) (*ledger.Checkpoint, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var d ledger.CheckpointDoc
		if err := strictUnmarshal(t, &d); err != nil {
			return nil, fmt.Errorf("not a checkpoint: %v", err)
		}
		return d.Verify(v)
	}
	// A bare note is saved from the JSON answer's "checkpoint" string,
	// often with a newline more (jq -r, echo) or CRLF line ends; a signed
	// note ends in exactly one "\n" and holds no "\r", so these are undone
	// before its signature is checked (the signed text is unchanged).
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = append(bytes.TrimRight(b, " \t\r\n"), '\n')
	return ledger.OpenCheckpoint(b, v)
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
