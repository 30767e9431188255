package secret

import (
	"fmt"
	"io"
)

// Generate draws a password of length characters uniformly from alphabet, reading
// random bytes from rnd. It uses rejection sampling: a byte b is used only
// when b < 256 - 256%len(alphabet), so every character has exactly the same
// probability (b % n would otherwise favour the first 256%n characters).
// Repeated characters in alphabet are counted once.
func Generate(rnd io.Reader, length int, alphabet string) (Value, error) {
	chars := DistinctBytes(alphabet)
	n := len(chars)
	if n < 2 || n > 256 {
		return Value{}, fmt.Errorf("password alphabet must hold 2..256 distinct characters, got %d", n)
	}
	if length <= 0 {
		return Value{}, fmt.Errorf("password length must be positive, got %d", length)
	}
	limit := 256 - 256%n // accept bytes below limit; 256 when n divides 256
	out := make([]byte, 0, length)
	buf := make([]byte, length+length/2+8)
	for len(out) < length {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return Value{}, fmt.Errorf("read random source: %w", err)
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
	return New(string(out)), nil
}

// DistinctBytes returns the bytes of s in order, each once.
func DistinctBytes(s string) []byte {
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
