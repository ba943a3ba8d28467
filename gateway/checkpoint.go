package gateway

import (
	"errors"
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"medgate/ledger"
)

// A verifiable ledger (ledger/VERIFY.md): signed checkpoints of the Merkle
// tree over the entries, and proofs against them.
//
//	GET /v1/clearing/checkpoint[?tree_size=N]                       clearing
//	GET /v1/clearing/proofs/inclusion/{settlement_id}[?tree_size=N] clearing
//	GET /v1/clearing/proofs/consistency?from=N[&to=M]               clearing
//	GET /v1/settlements/{settlement_id}/proof[?tree_size=N]         hospital, own entries only
//
// Without tree_size (or to) the tree is the ledger's durable head. Every
// proof carries the signed checkpoint of its tree size(s), so a proof file
// can be checked offline with the verifier key alone (medgate verify).
func init() {
	registerRoutes(
		Route{Method: "GET", Pattern: "/v1/clearing/checkpoint", Role: RoleClearing, Query: []string{"tree_size"}, Handle: (*Server).checkpoint},
		Route{Method: "GET", Pattern: "/v1/clearing/proofs/inclusion/{}", Role: RoleClearing, Query: []string{"tree_size"}, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error {
			return s.inclusionProof(ctx, "", params[0])
		}},
		Route{Method: "GET", Pattern: "/v1/clearing/proofs/consistency", Role: RoleClearing, Query: []string{"from", "to"}, Handle: (*Server).consistencyProof},
		Route{Method: "GET", Pattern: "/v1/settlements/{}/proof", Role: RoleHospital, Query: []string{"tree_size"}, Handle: func(s *Server, ctx *fasthttp.RequestCtx, p Principal, params []string) error {
			h, err := s.hospital(p)
			if err != nil {
				return err
			}
			return s.inclusionProof(ctx, h.ID, params[0])
		}},
	)
}

// ReadCheckpointKey reads a --checkpoint-key file: an ed25519 seed in 64
// hex digits.
func ReadCheckpointKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seed, err := ledger.ParseCheckpointSeed(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return seed, nil
}

// checkpointSigner is the signer of seed, or of the public demo key when
// seed is nil.
func checkpointSigner(seed []byte) (*ledger.CheckpointSigner, error) {
	if seed == nil {
		seed = ledger.DemoCheckpointSeed()
	}
	return ledger.NewCheckpointSigner(seed)
}

// logCheckpointKey logs the verifier key checkpoints are signed with, and
// warns when it is the demo key.
func logCheckpointKey(log zerolog.Logger, seed []byte) error {
	s, err := checkpointSigner(seed)
	if err != nil {
		return err
	}
	if seed == nil {
		log.Warn().Str("verifier_key", s.VerifierKey).
			Msg("checkpoints are signed with the PUBLIC DEMO KEY: they prove nothing; give --checkpoint-key a secret seed in production")
		return nil
	}
	log.Info().Str("verifier_key", s.VerifierKey).Msg("checkpoints signed with the configured key")
	return nil
}

// treeSizeParam reads an optional tree size (0: absent).
func treeSizeParam(ctx *fasthttp.RequestCtx, name string) (uint64, error) {
	return seqParam(ctx, name)
}

// treeErr turns a ledger size error into a 400 naming the parameter.
func treeErr(err error, field string) error {
	if errors.Is(err, ledger.ErrTreeSize) {
		return invalid(field, "%s", err.Error())
	}
	return err
}

func (s *Server) checkpoint(ctx *fasthttp.RequestCtx, _ Principal, _ []string) error {
	size, err := treeSizeParam(ctx, "tree_size")
	if err != nil {
		return err
	}
	signer, err := checkpointSigner(s.cfg.CheckpointKey)
	if err != nil {
		return err
	}
	c, err := s.db.MakeCheckpoint(size, s.clearingNow())
	if err != nil {
		return treeErr(err, "tree_size")
	}
	doc, err := ledger.NewCheckpointDoc(c, signer)
	if err != nil {
		return err
	}
	return s.writeJSON(ctx, fasthttp.StatusOK, doc)
}

// inclusionProof answers the proof that settlement id is in the tree;
// hospital, when set, must own it (another's is 404, as for GET).
func (s *Server) inclusionProof(ctx *fasthttp.RequestCtx, hospital, id string) error {
	size, err := treeSizeParam(ctx, "tree_size")
	if err != nil {
		return err
	}
	e, ok, err := s.db.EntryByID(id)
	if err != nil {
		return err
	}
	if !ok || (hospital != "" && e.Hospital != hospital) {
		return notFound("no settlement %s", id)
	}
	signer, err := checkpointSigner(s.cfg.CheckpointKey)
	if err != nil {
		return err
	}
	doc, err := s.db.NewInclusionDoc(e, size, signer, s.clearingNow())
	if err != nil {
		return treeErr(err, "tree_size")
	}
	return s.writeJSON(ctx, fasthttp.StatusOK, doc)
}

func (s *Server) consistencyProof(ctx *fasthttp.RequestCtx, _ Principal, _ []string) error {
	from, err := treeSizeParam(ctx, "from")
	if err != nil {
		return err
	}
	if from == 0 {
		return missing("from")
	}
	to, err := treeSizeParam(ctx, "to")
	if err != nil {
		return err
	}
	signer, err := checkpointSigner(s.cfg.CheckpointKey)
	if err != nil {
		return err
	}
	doc, err := s.db.NewConsistencyDoc(from, to, signer, s.clearingNow())
	if err != nil {
		// A size past the ledger's head is to's fault; otherwise from's
		// (it must not exceed to).
		field := "from"
		if head, _ := s.db.Head(); to > head {
			field = "to"
		}
		return treeErr(err, field)
	}
	return s.writeJSON(ctx, fasthttp.StatusOK, doc)
}
