package mysql_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
)

// TestAdminGrants: an account with exactly deploy/mysql/grants.sql (run
// with the mariadb client, as an operator would) can init the pair and
// run every action of the rotator: two re-keys, clients, a retire that
// kills a connection, a restore and a discard, all fenced.
func TestAdminGrants(t *testing.T) {
	f := newFixture(t)
	admin, pw := "rt_admin_"+randHex(4), "adm-"+randHex(12)
	_, err := f.root.Exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", admin, pw))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = f.root.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", admin)) })

	runFile(t, "grants.sql", admin)
	runFile(t, "init-grants.sql", admin)

	r, err := mysql.New(f.spec(), secret.New(fmt.Sprintf("%s:%s@tcp(127.0.0.1:3306)/", admin, pw)))
	require.NoError(t, err)
	t.Cleanup(r.Close)
	ctx := ctxT(t)
	_, err = r.Init(ctx)
	require.NoError(t, err)
	// init-grants.sql is for init only: everything below runs without it.
	_, err = f.root.Exec(fmt.Sprintf("REVOKE UPDATE ON mysql.* FROM '%s'@'%%'", admin))
	require.NoError(t, err)
	rep, err := r.Init(ctx)
	require.NoError(t, err, "init again, with grants.sql only, finds everything in place")
	require.NotContains(t, rep.String(), "created")
	fa := rotation.Fence{Token: 10, RunID: "a"}
	a, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "a", Fence: fa})
	require.NoError(t, err)
	b, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/m", RunID: "b", Current: a.Credential.Meta(), Fence: rotation.Fence{Token: 11, RunID: "b"}})
	require.NoError(t, err)

	// A client still connected as the old user: counted, then killed.
	conn := openAs(t, a.Credential)
	c, err := r.Clients(ctx, rotation.ClientsRequest{Old: a.Credential.Meta()})
	require.NoError(t, err)
	require.Equal(t, 1, c.Count, c.Detail)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: a.Credential.Meta(), New: b.Credential.Meta(), Terminate: true, Fence: rotation.Fence{Token: 11}}))
	require.Error(t, conn.PingContext(ctx), "the old user's connection was killed")
	c, err = r.Clients(ctx, rotation.ClientsRequest{Old: a.Credential.Meta()})
	require.NoError(t, err)
	require.Zero(t, c.Count)
	require.Error(t, login(a.Credential.Username, a.Credential.Secret.Reveal()))
	require.NoError(t, login(b.Credential.Username, b.Credential.Secret.Reveal()))

	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: a.Credential.Meta(), Fence: rotation.Fence{Token: 12}}))
	require.NoError(t, login(a.Credential.Username, a.Credential.Secret.Reveal()))
	require.NoError(t, r.Discard(ctx, rotation.DiscardRequest{New: a.Credential.Meta(), Current: b.Credential.Meta(), Fence: rotation.Fence{Token: 12}}))
	require.Error(t, login(a.Credential.Username, a.Credential.Secret.Reveal()))
}

// runFile runs deploy/mysql/<name> for the account admin with the
// mariadb client, as an operator would.
func runFile(t *testing.T, name, admin string) {
	t.Helper()
	text, err := os.ReadFile("../../deploy/mysql/" + name)
	require.NoError(t, err)
	client, err := exec.LookPath("mariadb")
	if err != nil {
		client, err = exec.LookPath("mysql")
	}
	require.NoError(t, err, "the mariadb client is needed: apt-get install mariadb-client")
	cmd := exec.Command(client, "-h", "127.0.0.1", "-P", "3306", "-u", "root")
	cmd.Stdin = bytes.NewReader([]byte(strings.ReplaceAll(string(text), "'rotator_admin'", "'"+admin+"'")))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "mariadb < %s:\n%s", name, out)
}
