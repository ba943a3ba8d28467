package gateway

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Role is what a principal may do.
type Role string

const (
	RoleHospital Role = "hospital"
	RoleRegion   Role = "region"
	RoleClearing Role = "clearing"
)

// Principal is the holder of a bearer token: a hospital (ID is its id), a
// region (ID is its code) or a clearing house.
type Principal struct {
	Role Role
	ID   string
	// PublicKey verifies a region's signed policy uploads (regions only).
	PublicKey ed25519.PublicKey
}

// Principals maps token hashes to principals. Only sha256 of each token is
// ever stored, so the world files and the database hold no usable secret.
type Principals struct {
	byHash map[[32]byte]Principal
}

// PrincipalRecord is one line of principals.json.
type PrincipalRecord struct {
	TokenSHA256 string `json:"token_sha256"`
	Role        Role   `json:"role"`
	ID          string `json:"id"`
	// PublicKey is a region's ed25519 public key in hex (64 digits): policy
	// uploads must be signed with its private key.
	PublicKey string `json:"public_key,omitempty"`
}

// NewPrincipals validates records and indexes them by token hash.
func NewPrincipals(records []PrincipalRecord) (*Principals, error) {
	p := &Principals{byHash: make(map[[32]byte]Principal, len(records))}
	for i, r := range records {
		raw, err := hex.DecodeString(r.TokenSHA256)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("gateway: principals[%d].token_sha256 is not 64 hex digits", i)
		}
		if [32]byte(raw) == emptyTokenHash {
			// What sha256sum prints for a token that was never set
			// (printf '%s' "$TOKEN" | sha256sum with TOKEN unset).
			return nil, fmt.Errorf("gateway: principals[%d].token_sha256 is the sha256 of the empty string: the %s %q would have no token", i, r.Role, r.ID)
		}
		switch r.Role {
		case RoleHospital, RoleRegion, RoleClearing:
		default:
			return nil, fmt.Errorf("gateway: principals[%d].role %q is not hospital, region or clearing", i, r.Role)
		}
		if r.Role != RoleClearing && r.ID == "" {
			return nil, fmt.Errorf("gateway: principals[%d].id is required for role %s", i, r.Role)
		}
		if r.Role == RoleRegion && !isRegion(r.ID) {
			return nil, fmt.Errorf("gateway: principals[%d].id %q is not a 6-digit region code", i, r.ID)
		}
		if r.Role == RoleHospital && len(r.ID) > MaxIDLen {
			return nil, fmt.Errorf("gateway: principals[%d].id is longer than %d characters", i, MaxIDLen)
		}
		var pub ed25519.PublicKey
		if r.PublicKey != "" {
			k, err := hex.DecodeString(r.PublicKey)
			if err != nil || len(k) != ed25519.PublicKeySize || r.Role != RoleRegion {
				return nil, fmt.Errorf("gateway: principals[%d].public_key must be a region's ed25519 key in 64 hex digits", i)
			}
			pub = k
		}
		var h [32]byte
		copy(h[:], raw)
		if _, dup := p.byHash[h]; dup {
			return nil, fmt.Errorf("gateway: principals[%d]: the same token is listed twice", i)
		}
		p.byHash[h] = Principal{Role: r.Role, ID: r.ID, PublicKey: pub}
	}
	return p, nil
}

// emptyTokenHash is the sha256 of the empty string.
var emptyTokenHash = sha256.Sum256(nil)

// Lookup returns the principal holding token.
func (p *Principals) Lookup(token []byte) (Principal, bool) {
	if p == nil {
		return Principal{}, false
	}
	pr, ok := p.byHash[sha256.Sum256(token)]
	return pr, ok
}

// TokenHash is the hex sha256 of a token, as principals.json stores it.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
