package postgres

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/xdg-go/scram"

	"github.com/rotator/rotator/internal/secret"
)

// generatePassword draws a password (secret.Generate: uniform over
// alphabet by rejection sampling).
var generatePassword = secret.Generate

// distinctBytes returns the bytes of s in order, each once.
var distinctBytes = secret.DistinctBytes

// scramIterations is PostgreSQL's default (scram_iterations, 4096).
const scramIterations = 4096

// scramSaltLen is the salt length PostgreSQL itself uses.
const scramSaltLen = 16

// scramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores in
// pg_authid.rolpassword for password, with a fresh salt from rnd:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// Sending this instead of the plaintext in ALTER ROLE ... PASSWORD keeps the
// plaintext out of the server log (log_statement = 'all'), pg_stat_statements
// and pg_stat_activity. PostgreSQL applies SASLprep to passwords; for the
// ASCII alphabets the policy allows SASLprep changes nothing, so the
// password is used as is.
func scramVerifier(rnd io.Reader, password secret.Value) (string, error) {
	salt := make([]byte, scramSaltLen)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return "", fmt.Errorf("read random source for salt: %w", err)
	}
	return scramVerifierWithSalt(password, salt, scramIterations)
}

func scramVerifierWithSalt(password secret.Value, salt []byte, iters int) (string, error) {
	if password.IsZero() {
		return "", errors.New("empty password")
	}
	c, err := scram.HashGeneratorFcn(sha256.New).NewClientUnprepped("", password.Reveal(), "")
	if err != nil {
		return "", fmt.Errorf("scram client: %w", err)
	}
	sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iters})
	if err != nil {
		return "", fmt.Errorf("compute scram keys: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iters, b64(salt), b64(sc.StoredKey), b64(sc.ServerKey)), nil
}
