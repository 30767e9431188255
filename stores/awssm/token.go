package awssm

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
)

// tokenNamespace is the UUIDv5 namespace of version ids derived from run
// ids that are not UUIDs themselves. Never change it: it would give every
// run a new token, and a retried publish a second version.
var tokenNamespace = [16]byte{0x6b, 0x1f, 0x0c, 0x52, 0x8e, 0x3a, 0x4d, 0x1b, 0x9f, 0x45, 0x2e, 0x77, 0x0a, 0xc3, 0x5d, 0x91}

// Token returns the ClientRequestToken (and so the version id) of the
// version a run writes. A run id that is already a UUID (the engine's run
// ids are) is used as is, in lower case; any other run id is mapped to the
// UUIDv5 of the run id in a fixed namespace. Either way the token is 36
// characters, inside the 32-64 Secrets Manager accepts, and the same for
// every retry of the run.
func Token(runID string) (string, error) {
	if runID == "" {
		return "", errors.New("empty run id")
	}
	if isUUID(runID) {
		return strings.ToLower(runID), nil
	}
	h := sha1.New()
	h.Write(tokenNamespace[:])
	h.Write([]byte(runID))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return formatUUID(u), nil
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// isUUID reports whether s is a UUID in its canonical 8-4-4-4-12 form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
