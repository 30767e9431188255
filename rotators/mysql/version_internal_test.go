package mysql

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// TestSupported: real version strings, as VERSION() (or the handshake)
// gives them, read as what they are; only MariaDB 10.4.2 and later pass.
func TestSupported(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version, comment string
		ok               bool
		want             string // in the error
	}{
		{"10.11.6-MariaDB-0+deb12u1", "Debian 12", true, ""},
		{"5.5.5-10.11.6-MariaDB", "", true, ""}, // the handshake's form
		{"10.11.19-MariaDB-0+deb12u1", "Debian 12", true, ""},
		{"11.4.2-MariaDB-ubu2404", "mariadb.org binary distribution", true, ""},
		{"10.4.2-MariaDB", "", true, ""},
		{"10.5.23-MariaDB-log", "Source distribution", true, ""},
		{"10.4.1-MariaDB", "", false, "needs MariaDB 10.4.2 or later"},
		{"10.3.39-MariaDB-0+deb10u1", "Debian 10", false, "runs MariaDB 10.3.39"},
		{"5.5.5-10.1.48-MariaDB", "", false, "runs MariaDB 10.1.48"},
		{"8.0.36", "MySQL Community Server - GPL", false, `it is not MariaDB: it reports version "8.0.36" ("MySQL Community Server - GPL")`},
		{"8.4.0", "MySQL Community Server - GPL", false, "MySQL is not supported"},
		{"8.0.36-28", "Percona Server (GPL), Release 28, Revision 47601f19", false, "it is not MariaDB"},
		{"5.7.44-log", "MySQL Community Server (GPL)", false, "it is not MariaDB"},
		{"MariaDB", "", false, "does not read as MariaDB major.minor.patch"},
	} {
		err := supported(tc.version, tc.comment)
		if tc.ok {
			require.NoError(t, err, tc.version)
			continue
		}
		require.Error(t, err, tc.version)
		require.Contains(t, err.Error(), tc.want, tc.version)
		require.Contains(t, err.Error(), "MariaDB 10.4.2 or later", "says what is supported: %v", err)
	}
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]version{
		"10.11.6-MariaDB-0+deb12u1": {10, 11, 6},
		"5.5.5-10.11.6-MariaDB":     {10, 11, 6},
		"8.0.36":                    {8, 0, 36},
		"11.4":                      {11, 4, 0},
	} {
		_, got, err := parseVersion(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
}

// TestRefusePermanent: a server that is not a supported MariaDB is
// refused with a permanent error (the engine does not retry it) that
// names the server by address, never with the DSN's password.
func TestRefusePermanent(t *testing.T) {
	t.Parallel()
	const pw = "s3cret-admin-pw"
	r, err := New(&policy.MySQLSpec{Role: "app"}, secret.New("rotator_admin:"+pw+"@tcp(db.example:3307)/"))
	require.NoError(t, err)
	require.NoError(t, r.refuse("10.11.6-MariaDB-0+deb12u1", "Debian 12"))
	err = r.refuse("8.0.36", "MySQL Community Server - GPL")
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err), "%v", err)
	require.Contains(t, err.Error(), "the server at db.example:3307")
	require.Contains(t, err.Error(), `"8.0.36"`)
	require.NotContains(t, err.Error(), pw)
	t.Log(err)
}

// TestCheckWaitersAndClose: a call that waits for another call's check of
// the server and whose context ends says what it was waiting for; a Close
// during the check makes the checking call report the rotator closed, not
// hand back the closed pool. The server is a listener that accepts and
// never answers, so the check is in progress for as long as the test
// wants.
func TestCheckWaitersAndClose(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		for {
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
				return
			}
		}
	})
	r, err := New(&policy.MySQLSpec{Role: "app"}, secret.New("admin:pw@tcp("+ln.Addr().String()+")/?timeout=30s&readTimeout=30s"))
	require.NoError(t, err)

	first := make(chan error, 1)
	go func() {
		_, err := r.admin(context.Background())
		first <- err
	}()
	var server net.Conn
	select {
	case server = <-accepted: // the first call's check is connecting, and waits for the handshake
		t.Cleanup(func() { _ = server.Close() })
	case <-time.After(20 * time.Second):
		t.Fatal("the first call did not connect to the server")
	}
	// The check is in progress (r.checking is set before it connects).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.admin(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "waiting for another call's check of the server at "+ln.Addr().String())

	r.Close()
	_ = server.Close() // the handshake fails: the check ends
	select {
	case err := <-first:
		require.ErrorIs(t, err, errClosed, "closed during its check")
		require.True(t, rotation.IsPermanent(err))
	case <-time.After(20 * time.Second):
		t.Fatal("the checking call did not return after Close")
	}
}
