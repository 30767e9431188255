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

// generatePassword draws length characters uniformly from alphabet, reading
// random bytes from rnd. It uses rejection sampling: a byte b is used only
// when b < 256 - 256%len(alphabet), so every character has exactly the same
// probability (b % n would otherwise favour the first 256%n characters).
// Repeated characters in alphabet are counted once.
func generatePassword(rnd io.Reader, length int, alphabet string) (secret.Value, error) {
	chars := distinctBytes(alphabet)
	n := len(chars)
	if n < 2 || n > 256 {
		return secret.Value{}, fmt.Errorf("password alphabet must hold 2..256 distinct characters, got %d", n)
	}
	if length <= 0 {
		return secret.Value{}, fmt.Errorf("password length must be positive, got %d", length)
	}
	limit := 256 - 256%n // accept bytes below limit; 256 when n divides 256
	out := make([]byte, 0, length)
	buf := make([]byte, length+length/2+8)
	for len(out) < length {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return secret.Value{}, fmt.Errorf("read random source: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, chars[int(b)%n])
			if len(out) == length {
				break
			}
		}
	}
	return secret.New(string(out)), nil
}

// distinctBytes returns the bytes of s in order, each once.
func distinctBytes(s string) []byte {
	var seen [256]bool
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			out = append(out, s[i])
		}
	}
	return out
}

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
