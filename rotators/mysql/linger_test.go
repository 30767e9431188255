package mysql_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/faultproxy"
	"github.com/rotator/rotator/rotation"
)

// comQuit is the packet a client sends to end a MySQL session.
var comQuit = []byte{1, 0, 0, 0, 1}

// TestLingeringLogin: the login test's connection stays in PROCESSLIST
// after the client closed it (here: the network holds its COM_QUIT). With
// the documented grants the rotator ends it (KILL) and the test passes
// with no connection of the user left; without CONNECTION ADMIN
// (terminate_sessions unused) it cannot KILL it, and without PROCESS it
// cannot see it: the login worked, so the test of the credential passes
// and does not wait for a connection it may not end.
func TestLingeringLogin(t *testing.T) {
	f := newFixture(t)
	ctx := ctxT(t)
	r := f.initialized(t)
	gen, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "a", Fence: rotation.Fence{Token: 1, RunID: "a"}})
	require.NoError(t, err)
	user := gen.Credential.Username
	for _, tc := range []struct {
		name   string
		revoke []string
		killed bool
	}{
		{"grants.sql", nil, true},
		{"no CONNECTION ADMIN", []string{"CONNECTION ADMIN"}, false},
		{"no PROCESS", []string{"CONNECTION ADMIN", "PROCESS"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin, pw := "rt_admin_"+randHex(4), "adm-"+randHex(12)
			_, err := f.root.Exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", admin, pw))
			require.NoError(t, err)
			t.Cleanup(func() { _, _ = f.root.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", admin)) })
			runFile(t, "grants.sql", admin)
			for _, priv := range tc.revoke {
				_, err = f.root.Exec(fmt.Sprintf("REVOKE %s ON *.* FROM '%s'@'%%'", priv, admin))
				require.NoError(t, err)
			}
			p, err := faultproxy.New("127.0.0.1:3306")
			require.NoError(t, err)
			t.Cleanup(p.Close)
			t.Cleanup(p.Release)
			lr := f.rotator(t, fmt.Sprintf("%s:%s@tcp(%s)/", admin, pw, p.Addr))
			p.HoldWhen(func(chunk []byte) bool { return bytes.Equal(chunk, comQuit) })

			err = lr.Test(ctx, rotation.TestRequest{SecretID: "db/m", Credential: gen.Credential})
			select {
			case <-p.Held():
			default:
				t.Fatal("no COM_QUIT was held: the login's connection did not linger")
			}
			require.NoError(t, err, "the login worked; its lingering connection is no failure of the credential")
			var n int
			require.NoError(t, f.root.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?`, user).Scan(&n))
			if tc.killed {
				require.Zero(t, n, "the lingering login was ended")
			} else {
				require.Equal(t, 1, n, "the lingering login is still there (the network holds it)")
			}
			p.Release()
		})
	}
}
