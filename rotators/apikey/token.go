package apikey

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// tokenAlphabet is what the random part of a token is drawn from: safe in
// a header, a URL and a shell.
const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

var tokenPrefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]{0,32}$`)

// Token issues tokens itself: no target holds them but the stores. The
// services that accept a token read the current and the previous version
// from the store and accept both (appsecret.Validator does), so the
// dual-key window is the time the previous version stays published.
type Token struct {
	spec *policy.TokenSpec
	rand io.Reader
	log  *slog.Logger
}

var _ rotation.Rotator = (*Token)(nil)

// TokenOption configures a Token.
type TokenOption func(*Token)

// WithRand sets the random source (default crypto/rand).
func WithRand(r io.Reader) TokenOption { return func(t *Token) { t.rand = r } }

// WithTokenLogger sets the logger.
func WithTokenLogger(l *slog.Logger) TokenOption { return func(t *Token) { t.log = l } }

// ValidateToken checks a token configuration.
func ValidateToken(spec *policy.TokenSpec) error {
	if spec == nil {
		return errors.New("token: no configuration")
	}
	if !tokenPrefixRE.MatchString(spec.Prefix) {
		return fmt.Errorf("token: prefix %q: use at most 32 letters, digits, ., _ and -", spec.Prefix)
	}
	if spec.Length != 0 && (spec.Length < policy.MinTokenLength || spec.Length > policy.MaxTokenLength) {
		return fmt.Errorf("token: length must be between %d and %d, got %d", policy.MinTokenLength, policy.MaxTokenLength, spec.Length)
	}
	return nil
}

// NewToken builds a Token rotator.
func NewToken(spec *policy.TokenSpec, opts ...TokenOption) (*Token, error) {
	if err := ValidateToken(spec); err != nil {
		return nil, err
	}
	t := &Token{spec: spec, rand: rand.Reader, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(t)
	}
	return t, nil
}

func (t *Token) length() int {
	if t.spec.Length == 0 {
		return policy.DefaultTokenLength
	}
	return t.spec.Length
}

func (t *Token) field() string {
	if t.spec.Field == "" {
		return policy.DefaultTokenField
	}
	return t.spec.Field
}

// newToken draws length characters uniformly from tokenAlphabet
// (rejection sampling, so no character is likelier than another).
func (t *Token) newToken() (secret.Value, error) {
	n := t.length()
	out := make([]byte, 0, len(t.spec.Prefix)+n)
	out = append(out, t.spec.Prefix...)
	limit := byte(256 - 256%len(tokenAlphabet))
	buf := make([]byte, 64)
	for len(out) < len(t.spec.Prefix)+n {
		if _, err := io.ReadFull(t.rand, buf); err != nil {
			return secret.Value{}, fmt.Errorf("token: read random bytes: %w", err)
		}
		for _, b := range buf {
			if b < limit && len(out) < len(t.spec.Prefix)+n {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return secret.New(string(out)), nil
}

// Generate draws a new token. Its key id is the run id, so history can
// name versions without the token.
func (t *Token) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	v, err := t.newToken()
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	c := rotation.Credential{Secret: v, Field: t.field(), KeyID: "token-" + req.RunID}
	if err := t.Test(ctx, rotation.TestRequest{SecretID: req.SecretID, Credential: c}); err != nil {
		return rotation.GenerateResponse{}, err
	}
	t.log.InfoContext(ctx, "token generated", "secret", req.SecretID, "run_id", req.RunID, "fingerprint", v.Fingerprint())
	return rotation.GenerateResponse{Credential: c}, nil
}

// Test checks the token's shape: the prefix and the length.
func (t *Token) Test(_ context.Context, req rotation.TestRequest) error {
	s := req.Credential.Secret.Reveal()
	rest, ok := strings.CutPrefix(s, t.spec.Prefix)
	if !ok || len(rest) != t.length() {
		return rotation.Permanent(fmt.Errorf("token %s does not have the configured shape (prefix %q, %d characters)",
			req.Credential.Meta(), t.spec.Prefix, t.length()))
	}
	return nil
}

// Clients returns ErrUnsupported: which services hold a token is for the
// http check to find out.
func (t *Token) Clients(context.Context, rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	return rotation.ClientsResponse{}, rotation.ErrUnsupported
}

// Retire does nothing at a target: there is none. The previous token stays
// accepted while the stores keep it as the previous version, that is until
// the next rotation replaces it, unless the services bound how long they
// accept it (appsecret.WithPreviousFor).
func (t *Token) Retire(ctx context.Context, req rotation.RetireRequest) error {
	t.log.InfoContext(ctx, "token retired: services stop accepting it when the stores drop the previous version",
		"secret", req.SecretID, "old", req.Old.String())
	return nil
}

// Restore does nothing: the previous token is valid wherever the stores
// publish it, so rolling the stores back restores it.
func (t *Token) Restore(context.Context, rotation.RestoreRequest) error { return nil }

// Discard does nothing: an unpublished token is accepted nowhere.
func (t *Token) Discard(context.Context, rotation.DiscardRequest) error { return nil }
