package postgres

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

func seeded(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func TestGeneratePassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		length   int
		alphabet string
	}{
		{"default", policy.DefaultPasswordLength, policy.DefaultPasswordAlphabet},
		{"shortest", policy.MinPasswordLength, policy.DefaultPasswordAlphabet},
		{"longest", policy.MaxPasswordLength, policy.DefaultPasswordAlphabet},
		{"sixteen letters", 40, "abcdefghijklmnop"},
		{"url safe punctuation", 64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"},
		{"duplicates counted once", 50, "aabbccddeeffgghhiijjkkllmmnnoopp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pw, err := generatePassword(seeded(1), tc.length, tc.alphabet)
			require.NoError(t, err)
			p := pw.Reveal()
			require.Len(t, p, tc.length)
			for _, c := range p {
				require.Contains(t, tc.alphabet, string(c))
			}
			again, err := generatePassword(seeded(1), tc.length, tc.alphabet)
			require.NoError(t, err)
			require.Equal(t, p, again.Reveal(), "the injected source decides the password")
			other, err := generatePassword(seeded(2), tc.length, tc.alphabet)
			require.NoError(t, err)
			require.NotEqual(t, p, other.Reveal())
		})
	}
}

// Every character of the alphabet is drawn about equally often: a chi-square
// test over 620,000 draws from the 62-character default alphabet (where
// b % 62 without rejection would favour the first 8 characters by 1/31).
func TestGeneratePasswordDistribution(t *testing.T) {
	t.Parallel()
	alphabet := policy.DefaultPasswordAlphabet
	const draws = 620_000
	pw, err := generatePassword(seeded(7), draws, alphabet)
	require.NoError(t, err)
	counts := map[rune]int{}
	for _, c := range pw.Reveal() {
		counts[c]++
	}
	require.Len(t, counts, len(alphabet))
	exp := float64(draws) / float64(len(alphabet))
	chi := 0.0
	for _, c := range alphabet {
		d := float64(counts[c]) - exp
		chi += d * d / exp
	}
	// 61 degrees of freedom: p = 0.0001 at about 112.
	require.Less(t, chi, 112.0, "chi-square %.1f: the characters are not uniform", chi)
	// The first 8 characters are not favoured (they would be by ~3% with modulo bias).
	first, rest := 0, 0
	for i, c := range alphabet {
		if i < 8 {
			first += counts[c]
		} else {
			rest += counts[c]
		}
	}
	ratio := (float64(first) / 8) / (float64(rest) / float64(len(alphabet)-8))
	require.InDelta(t, 1.0, ratio, 0.015)
}

// Bytes at or above 256 - 256%n are skipped, not folded onto the first
// characters.
func TestGeneratePasswordRejectsBiasedBytes(t *testing.T) {
	t.Parallel()
	alphabet := policy.DefaultPasswordAlphabet // n = 62, limit 248
	src := bytes.Repeat([]byte{248, 255, 250, 61, 0, 247}, 20)
	pw, err := generatePassword(bytes.NewReader(src), 16, alphabet)
	require.NoError(t, err)
	// Only 61 ('9'), 0 ('A') and 247 (247 % 62 = 61, '9') are used.
	require.Equal(t, strings.Repeat("9A9", 6)[:16], pw.Reveal())
}

func TestGeneratePasswordErrors(t *testing.T) {
	t.Parallel()
	_, err := generatePassword(bytes.NewReader(nil), 32, policy.DefaultPasswordAlphabet)
	require.Error(t, err)
	_, err = generatePassword(seeded(1), 32, "a")
	require.Error(t, err)
	_, err = generatePassword(seeded(1), 0, policy.DefaultPasswordAlphabet)
	require.Error(t, err)
}

// The verifier has PostgreSQL's format and a fresh salt each time.
func TestSCRAMVerifier(t *testing.T) {
	t.Parallel()
	v, err := scramVerifier(seeded(3), secret.New("pencil"))
	require.NoError(t, err)
	require.Regexp(t, `^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$`, v)
	require.NotContains(t, v, "pencil")
	v2, err := scramVerifier(seeded(4), secret.New("pencil"))
	require.NoError(t, err)
	require.NotEqual(t, v, v2, "a fresh salt each time")

	salt := []byte("0123456789abcdef")
	_, err = scramVerifier(bytes.NewReader(nil), secret.New("pencil"))
	require.Error(t, err)
	_, err = scramVerifierWithSalt(secret.Value{}, salt, 4096)
	require.Error(t, err)
}

func TestScrub(t *testing.T) {
	t.Parallel()
	base := errors.New("login with hunter2hunter2 failed")
	err := scrub(base, secret.New("hunter2hunter2"))
	require.Equal(t, "login with REDACTED failed", err.Error())
	require.ErrorIs(t, err, base)
	require.Same(t, base, scrub(base, secret.New("other")))
	require.NoError(t, scrub(nil))
}

// Known answer from PostgreSQL itself: let the server hash a password,
// recompute the verifier with the server's salt and iterations, and compare.
func TestSCRAMVerifierMatchesPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	role := "kat_" + strings.ToLower(crand.Text()[:8])
	const pw = "Known-Answer.Test~42"
	_, err = conn.Exec(ctx, "SET password_encryption = 'scram-sha-256'")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE ROLE "+role+" PASSWORD '"+pw+"'")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP ROLE "+role) })
	var stored string
	require.NoError(t, conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored))

	m := regexp.MustCompile(`^SCRAM-SHA-256\$(\d+):([^$]+)\$`).FindStringSubmatch(stored)
	require.NotNil(t, m, stored)
	iters, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	salt, err := base64.StdEncoding.DecodeString(m[2])
	require.NoError(t, err)
	got, err := scramVerifierWithSalt(secret.New(pw), salt, iters)
	require.NoError(t, err)
	require.Equal(t, stored, got)
}
