package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/rotators/rotatortest"
)

func TestConformanceBlueGreen(t *testing.T) {
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			f := newFixture(t, policy.ModeBlueGreen)
			r := f.rotator(t, "")
			_, err := r.Init(ctxT(t))
			require.NoError(t, err)
			return r
		},
		Login:           clientLogin,
		CanCountClients: true,
		CanRestore:      true,
	})
}

func TestConformanceSingleRole(t *testing.T) {
	rotatortest.Run(t, rotatortest.Harness{
		New: func(t *testing.T) rotation.Rotator {
			return newFixture(t, policy.ModeSingleRole).rotator(t, "")
		},
		Login:              clientLogin,
		CanCountClients:    false,
		CanRestore:         true,
		ReplacesAtGenerate: true,
	})
}

// clientLogin logs in as a client would, to the server's postgres database
// (roles are cluster-wide; every role may connect there).
func clientLogin(t *testing.T, c rotation.Credential) error {
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(pgtest.AdminDSN(t), c.Username, c.Secret.Reveal()))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Three rotations, app -> app_blue -> app_green -> app_blue, with a client
// of each role checked at every step.
func TestBlueGreenThreeRotations(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	blue, green := f.role+"_blue", f.role+"_green"

	// An application session of the group role, open before the rotation.
	held := f.hold(t, f.role, f.initPassword)

	// Rotation 1: the engine does not know the current credential yet.
	g1, err := r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/app", RunID: "r1"})
	require.NoError(t, err)
	c1 := g1.Credential
	require.Equal(t, blue, c1.Username)
	require.Equal(t, "password", c1.Field)
	require.Equal(t, f.spec.Connection, c1.Extra)
	c1.Extra["host"] = "changed" // a copy, not the spec's map
	require.Equal(t, "127.0.0.1", f.spec.Connection["host"])
	require.NoError(t, f.login(t, blue, c1.Secret.Reveal()))
	require.NoError(t, f.login(t, f.role, f.initPassword), "the group keeps working until retire")

	// The login just above may still be leaving pg_stat_activity.
	var cl rotation.ClientsResponse
	require.Eventually(t, func() bool {
		cl, err = r.Clients(ctx, rotation.ClientsRequest{Old: rotation.CredentialMeta{Username: f.role}})
		return err == nil && cl.Count == 1
	}, 10*time.Second, 20*time.Millisecond, "sessions of the group role: %+v %v", cl, err)
	require.Equal(t, "1 session of "+f.role+" (from 127.0.0.1)", cl.Detail)

	retire := rotation.RetireRequest{Old: rotation.CredentialMeta{Username: f.role}, New: c1.Meta()}
	require.NoError(t, r.Retire(ctx, retire))
	require.NoError(t, r.Retire(ctx, retire))
	requireRefused(t, f.login(t, f.role, f.initPassword), "the group role after the first retire")
	require.NoError(t, f.login(t, blue, c1.Secret.Reveal()))
	_, err = held.Exec(ctx, "SELECT 1")
	require.NoError(t, err, "retire without terminate leaves sessions open")

	// Rotation 2.
	g2, err := r.Generate(ctx, rotation.GenerateRequest{RunID: "r2", Current: c1.Meta()})
	require.NoError(t, err)
	c2 := g2.Credential
	require.Equal(t, green, c2.Username)
	require.NoError(t, f.login(t, green, c2.Secret.Reveal()))
	require.NoError(t, f.login(t, blue, c1.Secret.Reveal()), "the old credential works until retire")
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: c1.Meta(), New: c2.Meta()}))
	requireRefused(t, f.login(t, blue, c1.Secret.Reveal()), "blue after the second retire")
	require.NoError(t, f.login(t, green, c2.Secret.Reveal()))

	// Rotation 3: back to blue, with a new password.
	g3, err := r.Generate(ctx, rotation.GenerateRequest{RunID: "r3", Current: c2.Meta()})
	require.NoError(t, err)
	c3 := g3.Credential
	require.Equal(t, blue, c3.Username)
	require.False(t, c3.Secret.Equal(c1.Secret))
	require.NoError(t, f.login(t, blue, c3.Secret.Reveal()))
	err = f.login(t, blue, c1.Secret.Reveal())
	requireRefused(t, err, "blue's password of rotation 1")
	require.Contains(t, err.Error(), "password authentication failed")
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: c2.Meta(), New: c3.Meta()}))
	err = f.login(t, green, c2.Secret.Reveal())
	requireRefused(t, err, "green after the third retire")
	require.Contains(t, err.Error(), "not permitted to log in")
	require.NoError(t, f.login(t, blue, c3.Secret.Reveal()))
	require.NoError(t, r.Test(ctx, rotation.TestRequest{Credential: c3}))

	// Rollback of rotation 3: green logs in again with its old password.
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: c2.Meta()}))
	require.NoError(t, f.login(t, green, c2.Secret.Reveal()))

	// Without a recorded current, the one of blue/green that logs in
	// counts as current... and both logging in is refused as ambiguous.
	_, err = r.Generate(ctx, rotation.GenerateRequest{RunID: "r4"})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "both "+blue+" and "+green+" can log in")
}

func TestRetireRefusesNewAndStrangers(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	blue := rotation.CredentialMeta{Username: f.role + "_blue"}
	err = r.Retire(ctx, rotation.RetireRequest{Old: blue, New: blue})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	err = r.Retire(ctx, rotation.RetireRequest{Old: rotation.CredentialMeta{Username: "postgres"}, New: blue})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "not one of")
	require.True(t, f.canLogin(t, "postgres"))
}

func TestClientsAndTerminate(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	g1, err := r.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	old := g1.Credential
	held := f.hold(t, old.Username, old.Secret.Reveal())
	held2 := f.hold(t, old.Username, old.Secret.Reveal())

	g2, err := r.Generate(ctx, rotation.GenerateRequest{Current: old.Meta()})
	require.NoError(t, err)
	cl, err := r.Clients(ctx, rotation.ClientsRequest{Old: old.Meta()})
	require.NoError(t, err)
	require.Equal(t, 2, cl.Count)
	require.Equal(t, fmt.Sprintf("2 sessions of %s (from 127.0.0.1)", old.Username), cl.Detail)
	require.Eventually(t, func() bool {
		cl, err := r.Clients(ctx, rotation.ClientsRequest{Old: g2.Credential.Meta()})
		return err == nil && cl.Count == 0
	}, 10*time.Second, 20*time.Millisecond, "Generate's own test login is closed")

	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: old.Meta(), New: g2.Credential.Meta(), Terminate: true}))
	for _, c := range []*pgx.Conn{held, held2} {
		_, err = c.Exec(ctx, "SELECT 1")
		require.Error(t, err, "terminated session")
	}
	require.Eventually(t, func() bool {
		cl, err := r.Clients(ctx, rotation.ClientsRequest{Old: old.Meta()})
		return err == nil && cl.Count == 0
	}, 10*time.Second, 50*time.Millisecond)
	requireRefused(t, f.login(t, old.Username, old.Secret.Reveal()), "the retired role")
	require.NoError(t, f.login(t, g2.Credential.Username, g2.Credential.Secret.Reveal()))
}

func TestInit(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	blue, green := f.role+"_blue", f.role+"_green"
	// app_blue exists already and owns a table from before.
	f.exec(t, "CREATE ROLE "+blue+" NOLOGIN")
	f.exec(t, "CREATE TABLE early (id int)")
	f.exec(t, "ALTER TABLE early OWNER TO "+blue)

	r := f.rotator(t, "")
	ctx := ctxT(t)
	rep, err := r.Init(ctx)
	require.NoError(t, err)
	s := rep.String()
	require.Contains(t, s, "role "+blue+" already exists (NOLOGIN)")
	require.Contains(t, s, "created role "+green+" (NOLOGIN)")
	require.Contains(t, s, "granted "+f.role+" to "+blue)
	require.Contains(t, s, "reassigned 1 objects owned by "+blue)
	require.Contains(t, s, f.role+" keeps LOGIN")
	var owner string
	f.queryRow(t, "SELECT tableowner FROM pg_tables WHERE tablename = 'early'", []any{&owner})
	require.Equal(t, f.role, owner)
	require.True(t, f.canLogin(t, f.role), "init leaves the group's LOGIN alone")
	require.NoError(t, f.login(t, f.role, f.initPassword))

	// Again: nothing new.
	rep2, err := r.Init(ctx)
	require.NoError(t, err)
	for _, a := range rep2.Actions {
		require.NotRegexp(t, `^(created|granted|set|reassigned)`, a)
	}
	require.Contains(t, rep2.String(), blue+" is already a member of "+f.role)
	require.Contains(t, rep2.String(), green+" already sets role "+f.role+" at login")

	// A table created by app_blue after a rotation belongs to the group.
	g, err := r.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	require.Equal(t, blue, g.Credential.Username)
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(f.dsn, blue, g.Credential.Secret.Reveal()))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE TABLE made_by_blue (id int)")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "INSERT INTO early VALUES (1)")
	require.NoError(t, err, "blue has the group's privileges")
	f.queryRow(t, "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_blue'", []any{&owner})
	require.Equal(t, f.role, owner)
}

func TestInitMissingRole(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	f.spec.Role = "nobody_" + randHex(4)
	r := f.rotator(t, "")
	_, err := r.Init(ctxT(t))
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "does not exist")
	require.Contains(t, err.Error(), "CREATE ROLE")

	// Generate before init says to run init.
	f.spec.Role = f.role
	r = f.rotator(t, "")
	_, err = r.Generate(ctxT(t), rotation.GenerateRequest{})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	require.Contains(t, err.Error(), "rotator init")
}

func TestStoredAsSCRAMVerifier(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	g, err := r.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	var stored string
	f.queryRow(t, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", []any{&stored}, g.Credential.Username)
	require.Regexp(t, `^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$`, stored)
	require.NotContains(t, stored, g.Credential.Secret.Reveal())
}

// With every statement logged, no generated password reaches the server
// log: ALTER ROLE carries a verifier.
func TestPlaintextNeverInServerLog(t *testing.T) {
	cluster := pgtest.SharedCluster(t)
	if cluster == nil {
		t.Skip("TEST_DATABASE_URL is set: the server log is not reachable; run without it to use a throwaway cluster")
	}
	f := newFixture(t, policy.ModeBlueGreen)
	f.exec(t, "ALTER SYSTEM SET log_statement = 'all'")
	f.exec(t, "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, f.dsn); err == nil {
			_, _ = conn.Exec(ctx, "ALTER SYSTEM RESET log_statement")
			_, _ = conn.Exec(ctx, "SELECT pg_reload_conf()")
			_ = conn.Close(ctx)
		}
	})
	require.Eventually(t, func() bool {
		var v string
		f.queryRow(t, "SHOW log_statement", []any{&v})
		return v == "all"
	}, 10*time.Second, 50*time.Millisecond)

	ctx := ctxT(t)
	var secrets []secret.Value
	bg := f.rotator(t, "")
	_, err := bg.Init(ctx)
	require.NoError(t, err)
	cur := rotation.CredentialMeta{}
	for range 3 {
		g, err := bg.Generate(ctx, rotation.GenerateRequest{Current: cur})
		require.NoError(t, err)
		secrets = append(secrets, g.Credential.Secret)
		require.NoError(t, bg.Test(ctx, rotation.TestRequest{Credential: g.Credential}))
		cur = g.Credential.Meta()
	}
	sf := *f.spec
	sf.Mode = policy.ModeSingleRole
	single, err := postgres.New(&sf, secret.New(f.dsn))
	require.NoError(t, err)
	defer single.Close()
	g, err := single.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	secrets = append(secrets, g.Credential.Secret)
	// Restore sends the previous password as a verifier too.
	prev := rotation.Credential{Username: f.role, Secret: secret.New("prev-" + randHex(12))}
	secrets = append(secrets, prev.Secret)
	require.NoError(t, single.Restore(ctx, rotation.RestoreRequest{Old: g.Credential.Meta(), Previous: &prev}))

	logFile := filepath.Join(cluster.Dir, "postgres.log")
	wantLogged := []string{ // proof that the statements were logged, with verifiers
		`ALTER ROLE "` + f.role + `_blue" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:`,
		`ALTER ROLE "` + f.role + `_green" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:`,
		`ALTER ROLE "` + f.role + `" WITH PASSWORD 'SCRAM-SHA-256$4096:`,
	}
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logFile)
		for _, w := range wantLogged {
			if !bytes.Contains(b, []byte(w)) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "statement logging must show the ALTER ROLE statements in %s", logFile)
	log, err := os.ReadFile(logFile)
	require.NoError(t, err)
	for i, s := range secrets {
		require.False(t, bytes.Contains(log, []byte(s.Reveal())), "password %d appears in the server log", i)
	}
}

func TestSingleRole(t *testing.T) {
	f := newFixture(t, policy.ModeSingleRole)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	me := rotation.CredentialMeta{Username: f.role}

	g, err := r.Generate(ctx, rotation.GenerateRequest{Current: me})
	require.NoError(t, err)
	c := g.Credential
	require.Equal(t, f.role, c.Username)
	require.NoError(t, f.login(t, f.role, c.Secret.Reveal()))
	requireRefused(t, f.login(t, f.role, f.initPassword), "the old password right after generate (single-role)")

	_, err = r.Clients(ctx, rotation.ClientsRequest{Old: me})
	require.ErrorIs(t, err, rotation.ErrUnsupported)
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: me, New: me}))
	require.NoError(t, f.login(t, f.role, c.Secret.Reveal()), "retire is a no-op")

	err = r.Restore(ctx, rotation.RestoreRequest{Old: me})
	require.ErrorIs(t, err, rotation.ErrNotRestorable)
	err = r.Discard(ctx, rotation.DiscardRequest{New: me, Current: me})
	require.ErrorIs(t, err, rotation.ErrNotRestorable)
	require.NoError(t, f.login(t, f.role, c.Secret.Reveal()), "a failed restore changes nothing")

	prev := rotation.Credential{Username: f.role, Secret: secret.New(f.initPassword)}
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: me, Previous: &prev}))
	require.NoError(t, r.Restore(ctx, rotation.RestoreRequest{Old: me, Previous: &prev}))
	require.NoError(t, f.login(t, f.role, f.initPassword))
	requireRefused(t, f.login(t, f.role, c.Secret.Reveal()), "the rolled-back password")

	_, err = r.Init(ctx)
	require.Error(t, err, "init is for blue/green only")
}

func TestAdminAuthFailure(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	f.spec.AdminDSN = policy.Ref{Env: "ROTATOR_TEST_ADMIN_DSN"}
	bad := pgtest.UserDSN(f.dsn, "postgres", "wrong-admin-password-123")
	r := f.rotator(t, bad)
	_, err := r.Generate(ctxT(t), rotation.GenerateRequest{})
	require.Error(t, err)
	require.True(t, rotation.IsPermanent(err))
	msg := err.Error()
	require.Contains(t, msg, "authentication failed")
	require.Contains(t, msg, "env ROTATOR_TEST_ADMIN_DSN")
	require.Contains(t, msg, "127.0.0.1:")
	require.NotContains(t, msg, "wrong-admin-password-123")
}

func TestValidate(t *testing.T) {
	good := func() *policy.PostgresSpec { return &policy.PostgresSpec{Role: "app"} }
	require.NoError(t, postgres.Validate(good()))
	tests := []struct {
		name string
		edit func(*policy.PostgresSpec)
		want string
	}{
		{"no role", func(s *policy.PostgresSpec) { s.Role = "" }, "role: required"},
		{"long role", func(s *policy.PostgresSpec) { s.Role = strings.Repeat("a", 58) }, "longer than 57"},
		{"bad mode", func(s *policy.PostgresSpec) { s.Mode = "rainbow" }, "mode"},
		{"short", func(s *policy.PostgresSpec) { s.Password.Length = 8 }, "password.length"},
		{"quote", func(s *policy.PostgresSpec) { s.Password.Alphabet = "abcdefghijklmnop'" }, "password.alphabet"},
		{"few", func(s *policy.PostgresSpec) { s.Password.Alphabet = "abcabcabcabcabcabc" }, "at least 16 distinct"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.edit(s)
			err := postgres.Validate(s)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			_, err = postgres.New(s, secret.New("postgres://x@localhost/db"))
			require.Error(t, err, "New validates too")
		})
	}
	_, err := postgres.New(good(), secret.New("postgres://u:s3cr3tpw@host:notaport/db"))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cr3tpw")
}

// Issue 13, finding 3: Generate re-keys the standby and then cannot log in
// with the new password (here: the database refuses its connections, as a
// pg_hba rule would). The standby must not be left able to log in with a
// password nobody holds.
func TestGenerateThatCannotLogInDisablesTheStandby(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	var db string
	f.queryRow(t, "SELECT current_database()", []any{&db})
	f.exec(t, "REVOKE CONNECT ON DATABASE "+pgx.Identifier{db}.Sanitize()+" FROM PUBLIC")
	t.Cleanup(func() { f.exec(t, "GRANT CONNECT ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO PUBLIC") })

	_, err = r.Generate(ctx, rotation.GenerateRequest{SecretID: "db/app", RunID: "r1"})
	require.ErrorContains(t, err, "with its new password")
	require.False(t, f.canLogin(t, f.role+"_blue"), "the re-keyed standby is NOLOGIN again")
	require.True(t, f.canLogin(t, f.role), "the current role is untouched")
}

// What the target shows guards the re-key: a standby that can log in and
// has client sessions is in use (a client holds a password no store
// publishes, or a rollback left it enabled), and Generate refuses to re-key
// it; once those clients are gone, or once the role is retired (NOLOGIN:
// its leftover sessions cannot reconnect anyway), it goes ahead.
func TestGenerateRefusesAStandbyInUse(t *testing.T) {
	f := newFixture(t, policy.ModeBlueGreen)
	r := f.rotator(t, "")
	ctx := ctxT(t)
	_, err := r.Init(ctx)
	require.NoError(t, err)
	g1, err := r.Generate(ctx, rotation.GenerateRequest{})
	require.NoError(t, err)
	blue := g1.Credential
	g2, err := r.Generate(ctx, rotation.GenerateRequest{Current: blue.Meta()})
	require.NoError(t, err)
	green := g2.Credential
	require.NotEqual(t, blue.Username, green.Username)

	// Green is current; blue, the standby, still can log in and a client
	// uses it.
	held := f.hold(t, blue.Username, blue.Secret.Reveal())
	_, err = r.Generate(ctx, rotation.GenerateRequest{Current: green.Meta()})
	require.ErrorIs(t, err, postgres.ErrStandbyInUse)
	require.Contains(t, err.Error(), fmt.Sprintf("the standby role %q can log in and has 1 client session(s)", blue.Username))
	require.NotContains(t, err.Error(), blue.Secret.Reveal())
	require.NoError(t, f.login(t, blue.Username, blue.Secret.Reveal()), "the standby's password is unchanged")

	// Retired (NOLOGIN) with the session left over: re-keyed.
	require.NoError(t, r.Retire(ctx, rotation.RetireRequest{Old: blue.Meta(), New: green.Meta()}))
	g3, err := r.Generate(ctx, rotation.GenerateRequest{Current: green.Meta()})
	require.NoError(t, err)
	require.Equal(t, blue.Username, g3.Credential.Username)
	require.NoError(t, f.login(t, g3.Credential.Username, g3.Credential.Secret.Reveal()))
	require.NoError(t, held.Close(ctx))
	require.Eventually(t, func() bool {
		var n int
		f.queryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name <> 'rotator-login-test'", []any{&n}, blue.Username)
		return n == 0
	}, eventually, tick, "the client's session ends")

	// Rotator's own login tests are not clients: Generate twice at once
	// (the first one's test login may still be closing) re-keys both times.
	for range 2 {
		_, err = r.Generate(ctx, rotation.GenerateRequest{Current: green.Meta()})
		require.NoError(t, err)
	}
}
