// Package seal encrypts secret material that must survive a crash before it
// is written to the state database: AES-256-GCM with a key from the
// environment or a file, and the run id as associated data, so a sealed blob
// cannot be moved to another run.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Environment variables that carry the key.
const (
	EnvKey     = "ROTATOR_STATE_KEY"
	EnvKeyFile = "ROTATOR_STATE_KEY_FILE"
)

// HowToMakeKey is appended to key errors.
const HowToMakeKey = "make one with `rotator keygen` and put it in " + EnvKey +
	" (or in a file named by " + EnvKeyFile + "); keep it: runs sealed with a lost key cannot be resumed"

// ErrNoKey is returned when neither variable is set.
var ErrNoKey = errors.New("no state key: " + EnvKey + " and " + EnvKeyFile + " are unset")

// Key is a 32-byte AES-256 key.
type Key struct {
	aead cipher.AEAD
	id   string
}

const prefix = "v1:"

// Generate makes a new random key in its text form.
func Generate(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Parse reads a key in its text form (base64 of 32 bytes).
func Parse(text string) (*Key, error) {
	text = strings.TrimSpace(text)
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("state key is not base64: %s", HowToMakeKey)
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("state key is %d bytes, want 32: %s", len(raw), HowToMakeKey)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return &Key{aead: aead, id: hex.EncodeToString(sum[:4])}, nil
}

// FromEnv loads the key from ROTATOR_STATE_KEY or the file named by
// ROTATOR_STATE_KEY_FILE. Errors say how to make a key.
func FromEnv() (*Key, error) {
	v, vset := os.LookupEnv(EnvKey)
	f, fset := os.LookupEnv(EnvKeyFile)
	switch {
	case v != "" && f != "":
		return nil, fmt.Errorf("both %s and %s are set: keep one, so it is clear which key seals the runs", EnvKey, EnvKeyFile)
	case vset && v == "" && f == "":
		return nil, fmt.Errorf("%s is set but empty; %s", EnvKey, HowToMakeKey)
	case fset && f == "" && v == "":
		return nil, fmt.Errorf("%s is set but empty; %s", EnvKeyFile, HowToMakeKey)
	}
	if v != "" {
		k, err := Parse(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKey, err)
		}
		return k, nil
	}
	if f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: read %s: %w; %s", EnvKeyFile, f, err, HowToMakeKey)
		}
		k, err := Parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", EnvKeyFile, f, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w; %s", ErrNoKey, HowToMakeKey)
}

// ID is a short non-secret identifier of the key, recorded beside sealed
// data so a wrong key is reported as such.
func (k *Key) ID() string { return k.id }

// Seal encrypts plaintext bound to ad (the run id).
func (k *Key) Seal(plaintext []byte, ad string) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	out := append([]byte(prefix+k.id+":"), nonce...)
	return k.aead.Seal(out, nonce, plaintext, []byte(ad))
}

// ErrWrongKey means the data was sealed with another key.
var ErrWrongKey = errors.New("sealed with another state key")

// Open decrypts data sealed with ad.
func (k *Key) Open(sealed []byte, ad string) ([]byte, error) {
	head := prefix + k.id + ":"
	if !strings.HasPrefix(string(sealed), prefix) {
		return nil, errors.New("sealed data has an unknown format")
	}
	if !strings.HasPrefix(string(sealed), head) {
		return nil, fmt.Errorf("%w (this key is %s)", ErrWrongKey, k.id)
	}
	rest := sealed[len(head):]
	ns := k.aead.NonceSize()
	if len(rest) < ns {
		return nil, errors.New("sealed data is truncated")
	}
	pt, err := k.aead.Open(nil, rest[:ns], rest[ns:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("open sealed data: authentication failed (tampered, or sealed for another run)")
	}
	return pt, nil
}
