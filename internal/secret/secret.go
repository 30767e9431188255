// Package secret holds the one type that carries plaintext secret material
// through the program. Every way of printing it prints REDACTED; the only
// way to the plaintext is Reveal, which is easy to grep for.
package secret

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// Redacted is what every printed form of a Value shows.
const Redacted = "REDACTED"

// Value is secret material: a password, an API key, a token, a DSN.
// The zero Value is empty.
type Value struct {
	s string
}

// New wraps plaintext.
func New(plaintext string) Value { return Value{s: plaintext} }

// Reveal returns the plaintext. Call it only where the plaintext must leave
// the process: a login, a write to a secret store, a provider API call.
func (v Value) Reveal() string { return v.s }

// IsZero reports whether v holds nothing.
func (v Value) IsZero() bool { return v.s == "" }

// Equal compares two values in constant time.
func (v Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare([]byte(v.s), []byte(o.s)) == 1
}

// Fingerprint is a short, non-reversible identifier of the value (the first
// 12 hex digits of its SHA-256), safe to log and to compare across
// processes: clients report it to say which version they use. It is only
// safe for high-entropy values, which is all this program generates.
func (v Value) Fingerprint() string {
	if v.s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(v.s))
	return hex.EncodeToString(sum[:6])
}

// String implements fmt.Stringer.
func (v Value) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (v Value) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb prints REDACTED.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (YAML, maps keys, ...).
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
