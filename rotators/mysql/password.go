package mysql

import (
	"crypto/sha1" //nolint:gosec // mysql_native_password is defined on SHA-1; the server, not rotator, chose it
	"encoding/hex"
	"strings"

	"github.com/rotator/rotator/internal/secret"
)

// generatePassword draws a password (secret.Generate, as rotators/postgres
// does).
var generatePassword = secret.Generate

var distinctBytes = secret.DistinctBytes

// NativeHash is the mysql_native_password hash of pw: "*" followed by the
// upper-case hex of SHA1(SHA1(pw)), what the server stores and what
// `IDENTIFIED BY PASSWORD '...'` takes, so the password itself never
// reaches the server in SQL.
func NativeHash(pw secret.Value) string {
	h1 := sha1.Sum([]byte(pw.Reveal())) //nolint:gosec // see the import
	h2 := sha1.Sum(h1[:])               //nolint:gosec
	return "*" + strings.ToUpper(hex.EncodeToString(h2[:]))
}
