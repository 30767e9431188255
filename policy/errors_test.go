package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// base is a minimal valid file; cases replace parts of it.
const base = `stores:
  - name: local
    files: {dir: out}
secrets:
  - id: db/postgres
    class: database
    rotator:
      postgres:
        admin_dsn: {env: PG_DSN}
        role: app
    publish:
      - {store: local, path: db/postgres.json}
`

// edit returns base with old replaced by new (exactly once).
func edit(t *testing.T, old, new string) string {
	t.Helper()
	require.Equal(t, 1, strings.Count(base, old), "base must contain %q once", old)
	return strings.Replace(base, old, new, 1)
}

func TestParseBase(t *testing.T) {
	t.Parallel()
	f, err := Parse("policies.yaml", []byte(base))
	require.NoError(t, err)
	require.Equal(t, 1, f.Version)
	require.Len(t, f.Secrets, 1)
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		old  string // replaced in base by new; empty: data is the whole file
		new  string
		want []string
	}{
		{
			name: "unknown field",
			old:  "        role: app\n", new: "        role: app\n        rolle: app\n",
			want: []string{`policies.yaml:11:9: secrets[0].rotator.postgres.rolle: unknown field; expected one of admin_dsn, connection, mode, password, role, terminate_sessions`},
		},
		{
			name: "unknown top-level field",
			old:  "stores:\n", new: "store:\n  - name: x\nstores:\n",
			want: []string{`policies.yaml:1:1: store: unknown field; expected one of classes, defaults, notify, secrets, stores, version`},
		},
		{
			name: "mapping expected, list given",
			old:  "    rotator:\n      postgres:\n        admin_dsn: {env: PG_DSN}\n        role: app\n", new: "    rotator: [postgres]\n",
			want: []string{`policies.yaml:7:14: secrets[0].rotator: expected a mapping, got a list`},
		},
		{
			name: "mapping expected, text given: the text is not quoted (it may be a secret)",
			old:  "        role: app\n", new: "        role: app\n        password: hunter2secret\n",
			want: []string{`policies.yaml:11:19: secrets[0].rotator.postgres.password: expected a mapping, got a text value`},
		},
		{
			name: "misindented key: the hint points at the block",
			old:  "        role: app\n", new: "        role: app\n          mode: single_role\n",
			want: []string{`policies.yaml:11: YAML syntax: mapping values are not allowed in this context (check the indentation of the block that starts at line 11 and the lines below it: keys of one mapping line up, list items start with "- ", no tabs)`},
		},
		{
			name: "list expected, mapping given",
			old:  "    publish:\n      - {store: local, path: db/postgres.json}\n", new: "    publish: {store: local, path: db/postgres.json}\n",
			want: []string{`policies.yaml:11:14: secrets[0].publish: expected a list, got a mapping`},
		},
		{
			name: "string expected, number given",
			old:  "role: app", new: "role: 42",
			want: []string{`policies.yaml:10:15: secrets[0].rotator.postgres.role: expected a string, got the number 42`},
		},
		{
			name: "null value",
			old:  "class: database", new: "class:",
			want: []string{`policies.yaml:6:11: secrets[0].class: has no value: give it one or remove the key`},
		},
		{
			name: "bad duration",
			old:  "class: database\n", new: "class: database\n    grace: 10 minutes\n",
			want: []string{`policies.yaml:7:12: secrets[0].grace: expected a duration such as 90d, 12h or 30m, got "10 minutes"`},
		},
		{
			name: "bare number duration",
			old:  "class: database\n", new: "class: database\n    monitor: 300\n",
			want: []string{`policies.yaml:7:14: secrets[0].monitor: expected a duration such as 90d, 12h or 30m, got the bare number 300 (add a unit)`},
		},
		{
			name: "negative duration",
			old:  "class: database\n", new: "class: database\n    jitter: -1h\n",
			want: []string{`policies.yaml:7:13: secrets[0].jitter: must not be negative: expected a duration such as 90d, 12h or 30m, got "-1h"`},
		},
		{
			name: "inline secret",
			old:  "admin_dsn: {env: PG_DSN}", new: "admin_dsn: postgres://admin:hunter2@db/app",
			want: []string{`policies.yaml:9:20: secrets[0].rotator.postgres.admin_dsn: secrets are not written inline: use {env: NAME} or {file: PATH}`},
		},
		{
			name: "ref with both env and file",
			old:  "admin_dsn: {env: PG_DSN}", new: "admin_dsn: {env: PG_DSN, file: dsn.txt}",
			want: []string{`policies.yaml:9:20: secrets[0].rotator.postgres.admin_dsn: set one of env and file, not both`},
		},
		{
			name: "missing required role",
			old:  "        role: app\n", new: "",
			want: []string{`policies.yaml:8:7: secrets[0].rotator.postgres.role: required: the group role (blue_green) or login role (single_role), such as app`},
		},
		{
			name: "missing required admin_dsn",
			old:  "        admin_dsn: {env: PG_DSN}\n", new: "",
			want: []string{`policies.yaml:8:7: secrets[0].rotator.postgres.admin_dsn: required: {env: NAME} or {file: PATH} holding a DSN of a role that may ALTER ROLE`},
		},
		{
			name: "bad enum",
			old:  "role: app\n", new: "role: app\n        mode: blue\n",
			want: []string{`policies.yaml:11:15: secrets[0].rotator.postgres.mode: must be "blue_green" or "single_role", got "blue"`},
		},
		{
			name: "bad role name",
			old:  "role: app", new: "role: App-1",
			want: []string{`policies.yaml:10:15: secrets[0].rotator.postgres.role: expected a Postgres role name of lowercase letters, digits and _, not starting with a digit, at most 51 characters (so that App-1_green fits in 63 bytes), got "App-1"`},
		},
		{
			name: "unknown class",
			old:  "class: database", new: "class: db",
			want: []string{`policies.yaml:6:12: secrets[0].class: unknown class "db"; the classes are admin_token, api_key, database (add one under classes)`},
		},
		{
			name: "unknown store",
			old:  "{store: local,", new: "{store: vault,",
			want: []string{`policies.yaml:12:17: secrets[0].publish[0].store: unknown store "vault"; the stores are local`},
		},
		{
			name: "duplicate publish",
			old:  "      - {store: local, path: db/postgres.json}\n", new: "      - {store: local, path: db/postgres.json}\n      - {store: local, path: db/postgres.json}\n",
			want: []string{`policies.yaml:13:9: secrets[0].publish[1]: store "local", path "db/postgres.json" is already published to at policies.yaml:12:9 (secrets[0].publish[0]): two publish entries may not write to one place`},
		},
		{
			name: "publish path escapes",
			old:  "path: db/postgres.json", new: "path: ../etc/passwd",
			want: []string{`policies.yaml:12:30: secrets[0].publish[0].path: must not contain .., got "../etc/passwd"`},
		},
		{
			name: "duplicate id",
			old:  "    publish:\n      - {store: local, path: db/postgres.json}\n",
			new:  "    publish:\n      - {store: local, path: db/postgres.json}\n  - id: db/postgres\n    class: database\n    rotator: {postgres: {admin_dsn: {env: PG_DSN}, role: other}}\n    publish: [{store: local, path: other.json}]\n",
			want: []string{`policies.yaml:13:9: secrets[1].id: id "db/postgres" is already used at policies.yaml:5:9`},
		},
		{
			name: "bad id",
			old:  "id: db/postgres", new: "id: /DB",
			want: []string{`policies.yaml:5:9: secrets[0].id: expected a path-like id of lowercase letters, digits, ., _ and - separated by / (such as db/postgres), got "/DB"`},
		},
		{
			name: "bad cron",
			old:  "class: database\n", new: "class: database\n    cron: \"61 * * * *\"\n",
			want: []string{`policies.yaml:7:11: secrets[0].cron: invalid cron schedule "61 * * * *": end of range (61) above maximum (59): 61; expected 5 fields (minute hour day-of-month month day-of-week) or a descriptor such as @weekly`},
		},
		{
			name: "cron too often",
			old:  "class: database\n", new: "class: database\n    cron: \"*/10 * * * *\"\n",
			want: []string{`policies.yaml:7:11: secrets[0].cron: schedule "*/10 * * * *" runs 10m apart: rotations are at most hourly`},
		},
		{
			name: "bad window",
			old:  "class: database\n", new: "class: database\n    window:\n      days: [mon, funday]\n      hours: \"25:00-04:00\"\n      time_zone: Mars/Olympus\n      blackouts: [\"2026-12-31..2026-12-24\"]\n",
			want: []string{
				`policies.yaml:8:19: secrets[0].window.days[1]: must be one of mon, tue, wed, thu, fri, sat, sun, got "funday"`,
				`policies.yaml:9:14: secrets[0].window.hours: expected "HH:MM-HH:MM" on a 24-hour clock, such as "02:00-05:00" or "22:00-04:00", got "25:00-04:00"`,
				`policies.yaml:10:18: secrets[0].window.time_zone: unknown time zone "Mars/Olympus": expected an IANA name such as UTC or Europe/Berlin`,
				`policies.yaml:11:19: secrets[0].window.blackouts[0]: the range ends (2026-12-24) before it starts (2026-12-31)`,
			},
		},
		{
			name: "window start equals end",
			old:  "class: database\n", new: "class: database\n    window: {hours: \"02:00-02:00\"}\n",
			want: []string{`policies.yaml:7:21: secrets[0].window.hours: start and end are the same (02:00-02:00): leave hours out to allow the whole day`},
		},
		{
			name: "interval under 1h",
			old:  "stores:\n", new: "classes:\n  fast:\n    interval: 30m\nstores:\n",
			want: []string{`policies.yaml:3:15: classes.fast.interval: must be at least 1h (rotations at most hourly), got 30m`},
		},
		{
			name: "new class without interval",
			old:  "stores:\n", new: "classes:\n  fast:\n    grace: 1m\nstores:\n",
			want: []string{`policies.yaml:2:3: classes.fast.interval: required: every class needs an interval such as 30d`},
		},
		{
			name: "bad class name",
			old:  "stores:\n", new: "classes:\n  Fast:\n    interval: 1d\nstores:\n",
			want: []string{`policies.yaml:2:3: classes.Fast: class names are lowercase letters, digits and _, starting with a letter`},
		},
		{
			name: "version",
			old:  "stores:\n", new: "version: 2\nstores:\n",
			want: []string{`policies.yaml:1:10: version: must be 1 (the only version of this format), got 2`},
		},
		{
			name: "store with two kinds",
			old:  "    files: {dir: out}\n", new: "    files: {dir: out}\n    awssm: {region: eu-west-1}\n",
			want: []string{`policies.yaml:2:5: stores[0]: must set exactly one kind of store: files, vault or awssm`},
		},
		{
			name: "vault approle without secret_id",
			old:  "    files: {dir: out}\n", new: "    vault:\n      auth:\n        approle: {role_id: {env: ROLE_ID}}\n",
			want: []string{`policies.yaml:5:9: stores[0].vault.auth.approle.secret_id: required: {env: NAME} or {file: PATH} holding the AppRole secret id`},
		},
		{
			name: "password alphabet",
			old:  "role: app\n", new: "role: app\n        password: {length: 12, alphabet: \"abc@def\"}\n",
			want: []string{
				`policies.yaml:11:28: secrets[0].rotator.postgres.password.length: must be between 16 and 128, got 12`,
				`policies.yaml:11:42: secrets[0].rotator.postgres.password.alphabet: may hold only characters safe in a connection URL without escaping (letters, digits and - . _ ~)`,
			},
		},
		{
			name: "retry bounds",
			old:  "class: database\n", new: "class: database\n    retry: {attempts: 0, initial: 1m, max: 10s}\n    on_timeout: wait\n",
			want: []string{
				`policies.yaml:7:23: secrets[0].retry.attempts: must be between 1 and 20 (tries of a step, the first included), got 0`,
				`policies.yaml:7:44: secrets[0].retry.max: must be at least initial (1m), got 10s`,
				`policies.yaml:8:17: secrets[0].on_timeout: must be "hold" or "proceed", got "wait"`,
			},
		},
		{
			name: "slack token without channel and bad event",
			old:  "stores:\n", new: "notify:\n  slack:\n    token: {env: SLACK_TOKEN}\n    events: [rotation_failed, explosion]\nstores:\n",
			want: []string{
				`policies.yaml:2:3: notify.slack.channel: required with token: the channel to post to, such as #ops`,
				`policies.yaml:4:31: notify.slack.events[1]: must be "rotation_failed", "rollback", "quarantined", "overdue", "credential_broken", "drift", "needs_attention", "rotation_succeeded", "upcoming" or "resolved", got "explosion"`,
			},
		},
		{
			name: "webhook without secret, bad url",
			old:  "stores:\n", new: "notify:\n  webhooks:\n    - name: pager\n      url: ftp://x\nstores:\n",
			want: []string{
				`policies.yaml:3:7: notify.webhooks[0].secret: required: {env: NAME} or {file: PATH} holding the HMAC-SHA256 key`,
				`policies.yaml:4:12: notify.webhooks[0].url: expected an http:// or https:// URL, got "ftp://x"`,
			},
		},
		{
			name: "duplicate key",
			old:  "class: database\n", new: "class: database\n    class: api_key\n",
			want: []string{`policies.yaml:7:5: secrets[0].class: appears twice in this mapping: keep one`},
		},
		{
			name: "no secrets",
			new:  "stores: []\n",
			want: []string{`policies.yaml:1:1: secrets: required: at least one secret to manage (see the reference policies.yaml)`},
		},
		{
			name: "yaml syntax",
			new:  "secrets: [a, b\n",
			want: []string{`policies.yaml:1: YAML syntax: did not find expected ',' or ']'`},
		},
		{
			name: "not a mapping",
			new:  "- a\n- b\n",
			want: []string{`policies.yaml:1:1: expected a mapping with version, defaults, classes, stores, secrets and notify, got a list`},
		},
		{
			name: "several errors sorted by position",
			old:  "class: database", new: "class: nope\n    grace: soon",
			want: []string{
				`policies.yaml:6:12: secrets[0].class: unknown class "nope"; the classes are admin_token, api_key, database (add one under classes)`,
				`policies.yaml:7:12: secrets[0].grace: expected a duration such as 90d, 12h or 30m, got "soon"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := tt.new
			if tt.old != "" {
				data = edit(t, tt.old, tt.new)
			}
			f, err := Parse("policies.yaml", []byte(data))
			require.Error(t, err, "file:\n%s", data)
			require.Nil(t, f)
			var list ErrorList
			require.ErrorAs(t, err, &list)
			require.Equal(t, tt.want, strings.Split(err.Error(), "\n"), "file:\n%s", data)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", "\n", "# only a comment\n", "~\n"} {
		_, err := Parse("p.yaml", []byte(data))
		require.Error(t, err)
		require.True(t, strings.HasPrefix(err.Error(), "p.yaml: the file is empty; a minimal policies file is:\n"), err.Error())
		require.Contains(t, err.Error(), "admin_dsn: {env: ROTATOR_PG_ADMIN_DSN}")
	}
}

func TestErrorListAs(t *testing.T) {
	t.Parallel()
	_, err := Parse("p.yaml", []byte(edit(t, "class: database", "class: nope\n    grace: soon")))
	var list ErrorList
	require.ErrorAs(t, err, &list)
	require.Len(t, list, 2)
	var first *Error
	require.ErrorAs(t, err, &first)
	require.Equal(t, Position{File: "p.yaml", Line: 6, Column: 12}, first.Pos)
	require.Equal(t, "secrets[0].class", first.Field)

	e := Errorf(Position{File: "p.yaml", Line: 3, Column: 5}, "stores[0].vault.mount", "mount %q is not KV v2", "kv")
	require.Equal(t, `p.yaml:3:5: stores[0].vault.mount: mount "kv" is not KV v2`, e.Error())
	require.True(t, errors.As(error(e), &first))
}

func TestParseAnchorsAndPositions(t *testing.T) {
	t.Parallel()
	data := "defaults:\n  retry: &r {attempts: 5}\nclasses:\n  database: {retry: *r}\n" + base
	f, err := Parse("p.yaml", []byte(data))
	require.NoError(t, err)
	require.Equal(t, 5, f.Classes["database"].Retry.Attempts, "aliases are followed")
	require.Equal(t, Position{File: "p.yaml", Line: 6, Column: 5}, f.Stores[0].Pos)
	require.Equal(t, Position{File: "p.yaml", Line: 9, Column: 5}, f.Secrets[0].Pos)
	require.Equal(t, Position{File: "p.yaml", Line: 16, Column: 9}, f.Secrets[0].Publish[0].Pos)

	_, err = Parse("p.yaml", []byte("defaults: &d {grace: 1m}\nclasses:\n  database: {<<: *d}\n"+base))
	require.ErrorContains(t, err, "p.yaml:3:14: classes.database: merge keys (<<) are not supported: write the fields out")

	// A class that fails to decode is reported once, not again as unknown.
	_, err = Parse("p.yaml", []byte("classes:\n  fast: [1h]\n"+strings.Replace(base, "class: database", "class: fast", 1)))
	require.EqualError(t, err, "p.yaml:2:9: classes.fast: expected a mapping, got a list")
}

// TestErrorListShowsTheFirstHundred: a mistake every secret of a large
// file shares is shown for the first MaxShown secrets, and the rest are
// counted; the list keeps them all.
func TestErrorListShowsTheFirstHundred(t *testing.T) {
	var b strings.Builder
	b.WriteString("stores:\n  - name: local\n    files: {dir: out}\nsecrets:\n")
	for i := range 250 {
		fmt.Fprintf(&b, "  - {id: tok/t%03d, class: admin_token, rotator: {token: {}}, publish: [{store: locl, path: t%03d}]}\n", i, i)
	}
	_, err := Parse("policies.yaml", []byte(b.String()))
	var list ErrorList
	require.ErrorAs(t, err, &list)
	require.Len(t, list, 250, "the list keeps every error")
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, MaxShown+1)
	require.Equal(t, `policies.yaml:5:80: secrets[0].publish[0].store: unknown store "locl"; the stores are local`, lines[0])
	require.Contains(t, lines[MaxShown-1], "secrets[99].publish[0].store")
	require.Equal(t, "... and 150 more problems (250 in all; the first 100 are shown): when many secrets fail alike, "+
		"look for one mistake they share (a store, a class, defaults), fix it and run rotator validate again", lines[MaxShown])
	require.True(t, strings.HasPrefix(list[:MaxShown+1].Error()[strings.LastIndex(list[:MaxShown+1].Error(), "\n")+1:], "... and 1 more problem (101 in all"),
		"one more: singular")
}
