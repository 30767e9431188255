package awssm

import (
	"errors"
	"strings"

	"github.com/google/uuid"
)

// tokenNamespace is the UUIDv5 namespace of version ids derived from run
// ids that are not UUIDs themselves. Never change it: it would give every
// run a new token, and a retried publish a second version.
var tokenNamespace = uuid.MustParse("6b1f0c52-8e3a-4d1b-9f45-2e770ac35d91")

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
	return uuid.NewSHA1(tokenNamespace, []byte(runID)).String(), nil
}

// isUUID reports whether s is a UUID in its canonical 8-4-4-4-12 form
// (uuid.Parse also takes the urn:uuid:, braced and undashed forms, which
// are not ids to use as they are).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}
