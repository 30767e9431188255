// Package policy loads and validates policies.yaml: the classes, stores and
// secrets rotator manages.
//
// # Contract
//
//   - Load(path) / Parse(name, data) return a *File or an ErrorList listing
//     every problem, each as file:line:column, the field path
//     (secrets[0].rotator.postgres.role) and what is expected. Unknown
//     fields, kind mismatches ("expected a mapping, got a list"), null
//     values and duplicate keys are errors. A *File that comes back is
//     valid: the packages that build stores, rotators and schedules from it
//     need not check it again, only what they alone can know (and report
//     that with Errorf, so their messages read like the loader's).
//   - Built-in classes admin_token (30d), database (90d) and api_key (180d)
//     are merged under the file's own: a class the file writes overrides
//     the fields it sets. File.Classes holds the merged set.
//   - (*File).Settings(s) gives a secret's effective settings (secret, then
//     class, then defaults, then built-in defaults).
//   - Secret material is never inline: a Ref names an environment variable
//     or a file, resolved by Ref.Resolve when it is needed (so validate and
//     plan need none of it). A plain string where a Ref is expected is an
//     error, and no error ever quotes what was written there.
//
// # Reading the file
//
// The YAML is parsed into go.yaml.in/yaml/v3 nodes and walked by a small reflective
// decoder into the structs of types.go: fields by their yaml tag, Pos
// fields set to where the mapping starts, Ref.Dir set to the directory of
// the policies file. Every error is collected; validation then runs on what
// decoded, skipping fields that already failed so one mistake is reported
// once. Errors point at the value concerned, or, for a missing field, at
// the key of the mapping that lacks it. YAML syntax errors carry the line
// the YAML parser reports; a tab in the indentation and a byte that is not
// UTF-8 are located by the loader itself (line, column, and for the byte
// its offset).
//
// Anchors and aliases are followed; merge keys (<<) are refused. Every
// decoded value and mapping entry counts against Budget (MaxNodes plus the
// file's size in bytes), each use of an alias counting its whole anchored
// value again, so a small file of nested aliases cannot make the loader
// expand billions of values: past the budget it stops with one error at the
// alias. A file without aliases never reaches it.
//
// Durations are written 90d, 12h, 30m, 45s or combinations in that order
// (1d12h, 1h30m); a day is 24 hours. Bare numbers, fractions and negative
// durations are rejected; Duration.String and MarshalJSON print the same
// compact form.
//
// # Defaults
//
// Where neither the secret, its class nor the file's defaults set a value:
//
//	grace       10m     how long checks may take after publish
//	monitor     5m      how long the new credential is watched after retire
//	on_timeout  hold    keep both credentials and alert when grace ends
//	retry       3 attempts, initial 2s, max 1m (merged field by field)
//	jitter      30m     deterministic spread derived from the secret's id
//	time_zone   UTC     for windows and `rotator plan`
//	window      none    (taken whole from the first level that sets one)
//
// The loader also writes these defaults into the specs, so consumers read
// them as set: version 1; files format json; vault mount "secret", approle
// mount "approle", kubernetes mount "kubernetes" and jwt_file the
// service-account token path; awssm create true; postgres mode blue_green,
// password length 32 and alphabet A-Z a-z 0-9; Slack and webhook events
// rotation_failed, rollback, quarantined, overdue, credential_broken and
// resolved.
// Relative paths (files dir, tls ca_file, Ref files) are kept as written
// and are relative to File.Dir; File.ResolvePath applies that rule.
//
// # Limits the loader enforces
//
// Intervals and cron schedules at least 1h apart; retry attempts 1..20
// with initial and max above zero and max ≥ initial (also once merged);
// Postgres role names of at most 51 characters so that role_green fits
// Postgres's 63 bytes; passwords of 16..128 characters from an alphabet of
// at least 16 distinct characters that need no escaping in a URL; publish
// paths relative and without "..". A check's delay may be 0s.
//
// # The schema
//
// policies.schema.json (JSON Schema 2020-12) describes the same structure
// for editors and CI. Tests keep the two in step: every yaml field of
// types.go is a schema property and the reverse; testdata/good passes
// both, testdata/bad fails both, and testdata/semantic lists what only the
// loader can find (references between parts of the file, duplicates, cron
// syntax, time zones, minimum intervals, distinct characters).
package policy
