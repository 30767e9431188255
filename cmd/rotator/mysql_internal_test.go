package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/policy"
)

// TestMySQLSecretsRedacted: the engine's redaction list of a mysql secret
// holds its admin DSN and the password in it, in every form.
func TestMySQLSecretsRedacted(t *testing.T) {
	t.Setenv("ROTATOR_TEST_MYSQL_ADMIN", "rotator_admin:p%40ss-w0rd\"x@tcp(db:3306)/")
	s := &policy.SecretSpec{ID: "db/m", Rotator: policy.RotatorSpec{MySQL: &policy.MySQLSpec{
		AdminDSN: policy.Ref{Env: "ROTATOR_TEST_MYSQL_ADMIN"}, Role: "app"}}}
	var got []string
	for _, v := range resolvedSecrets(s) {
		got = append(got, v.Reveal())
	}
	require.Contains(t, got, "rotator_admin:p%40ss-w0rd\"x@tcp(db:3306)/")
	require.Contains(t, got, "p%40ss-w0rd\"x", "the password as the driver reads it (go-sql-driver does not unescape)")
	require.Contains(t, got, `p%40ss-w0rd\"x`, "JSON-escaped")
}
