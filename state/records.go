package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Meta identifies a credential without its secret.
type Meta struct {
	Username string `json:"username,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
}

// Secret is a managed secret's durable state.
type Secret struct {
	ID                  string       `json:"id"`
	Class               string       `json:"class"`
	Status              SecretStatus `json:"status"`
	CurrentVersion      int64        `json:"current_version"`
	CurrentRunID        string       `json:"current_run_id,omitempty"`
	Current             Meta         `json:"current"`
	PreviousVersion     int64        `json:"previous_version"`
	PreviousRunID       string       `json:"previous_run_id,omitempty"`
	Previous            Meta         `json:"previous"`
	LastSuccessAt       *time.Time   `json:"last_success_at,omitempty"`
	LastAttemptAt       *time.Time   `json:"last_attempt_at,omitempty"`
	LastOutcome         RunStatus    `json:"last_outcome,omitempty"`
	LastError           string       `json:"last_error,omitempty"`
	ConsecutiveFailures int          `json:"consecutive_failures"`
	NextDueAt           *time.Time   `json:"next_due_at,omitempty"`
	CreatedAt           time.Time    `json:"created_at"`
	UpdatedAt           time.Time    `json:"updated_at"`
}

// Run is one rotation (or rollback) of a secret.
type Run struct {
	ID             string         `json:"id"`
	SecretID       string         `json:"secret_id"`
	Trigger        Trigger        `json:"trigger"`
	Attempt        int            `json:"attempt"`
	Status         RunStatus      `json:"status"`
	Step           Step           `json:"step"`
	Version        int64          `json:"version"`
	Old            Meta           `json:"old"`
	New            Meta           `json:"new"`
	Sealed         []byte         `json:"-"`
	Holder         string         `json:"holder,omitempty"`
	PublishedAt    *time.Time     `json:"published_at,omitempty"`
	RetiredAt      *time.Time     `json:"retired_at,omitempty"`
	VerifyDeadline *time.Time     `json:"verify_deadline,omitempty"`
	MonitorUntil   *time.Time     `json:"monitor_until,omitempty"`
	WaitUntil      *time.Time     `json:"wait_until,omitempty"`
	Detail         string         `json:"detail,omitempty"`
	Error          string         `json:"error,omitempty"`
	StartedAt      time.Time      `json:"started_at"`
	UpdatedAt      time.Time      `json:"updated_at"`
	FinishedAt     *time.Time     `json:"finished_at,omitempty"`
	Steps          []JournalEntry `json:"steps,omitempty"`
}

// Active reports whether the run is unfinished.
func (r *Run) Active() bool {
	return r.Status == RunRunning || r.Status == RunWaiting || r.Status == RunNeedsAttention
}

// JournalEntry is one step of the journal: written before an external
// action (intent), completed after it (outcome).
type JournalEntry struct {
	ID         int64      `json:"id"`
	RunID      string     `json:"run_id"`
	Step       Step       `json:"step"`
	Attempt    int        `json:"attempt"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Outcome    Outcome    `json:"outcome,omitempty"`
	Error      string     `json:"error,omitempty"`
	Detail     string     `json:"detail,omitempty"`
}

// Audit is an append-only log entry.
type Audit struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	SecretID string    `json:"secret_id"`
	RunID    string    `json:"run_id,omitempty"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Detail   string    `json:"detail,omitempty"`
}

// SecretDef is what the policy says about a secret.
type SecretDef struct {
	ID    string
	Class string
}

// SyncSecrets makes sure every secret of the policy has a row and the
// class is current. Secrets no longer in the policy are left alone (their
// history stays).
func (db *DB) SyncSecrets(ctx context.Context, defs []SecretDef) error {
	if len(defs) == 0 {
		return nil
	}
	ids := make([]string, len(defs))
	classes := make([]string, len(defs))
	for i, d := range defs {
		ids[i], classes[i] = d.ID, d.Class
	}
	_, err := db.pool.Exec(ctx, `
		INSERT INTO rotator_secrets (id, class)
		SELECT * FROM unnest($1::text[], $2::text[])
		ON CONFLICT (id) DO UPDATE SET class = EXCLUDED.class, updated_at = now()
		WHERE rotator_secrets.class IS DISTINCT FROM EXCLUDED.class`, ids, classes)
	if err != nil {
		return fmt.Errorf("sync secrets: %w", err)
	}
	return nil
}

const secretCols = `id, class, status, current_version, coalesce(current_run_id,''), current_meta,
	previous_version, coalesce(previous_run_id,''), previous_meta, last_success_at, last_attempt_at,
	coalesce(last_outcome,''), coalesce(last_error,''), consecutive_failures, next_due_at, created_at, updated_at`

const secretByIDSQL = `SELECT ` + secretCols + ` FROM rotator_secrets WHERE id = $1`

func scanSecret(row pgx.Row) (Secret, error) {
	var s Secret
	err := row.Scan(&s.ID, &s.Class, &s.Status, &s.CurrentVersion, &s.CurrentRunID, &s.Current,
		&s.PreviousVersion, &s.PreviousRunID, &s.Previous, &s.LastSuccessAt, &s.LastAttemptAt,
		&s.LastOutcome, &s.LastError, &s.ConsecutiveFailures, &s.NextDueAt, &s.CreatedAt, &s.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, ErrNotFound
	}
	return s, err
}

// Secret reads one secret; ErrNotFound when it has no row.
func (db *DB) Secret(ctx context.Context, id string) (Secret, error) {
	s, err := scanSecret(db.pool.QueryRow(ctx, secretByIDSQL, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("read secret %s: %w", id, err)
	}
	return s, err
}

// SecretsByID reads the secrets with the given ids, ordered by id; an id
// with no row is left out. Callers that go over every secret read them in
// batches of ids with it (a schedule sync at 100,000 secrets holds one
// batch at a time, not every row).
func (db *DB) SecretsByID(ctx context.Context, ids []string) ([]Secret, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+secretCols+` FROM rotator_secrets WHERE id = ANY($1::text[]) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	defer rows.Close()
	out := make([]Secret, 0, len(ids))
	for rows.Next() {
		s, err := scanSecret(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// SecretsAfter reads at most limit secrets whose id sorts after after
// ("": from the first), ordered by id: a page of Secrets, so that a scan
// of every secret holds one page at a time (the primary key gives the
// order; no offset to skip).
func (db *DB) SecretsAfter(ctx context.Context, after string, limit int) ([]Secret, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+secretCols+` FROM rotator_secrets WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	out := make([]Secret, 0, min(limit, 1024))
	for rows.Next() {
		s, err := scanSecret(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Secrets reads every secret, ordered by id.
func (db *DB) Secrets(ctx context.Context) ([]Secret, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+secretCols+` FROM rotator_secrets ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []Secret
	for rows.Next() {
		s, err := scanSecret(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

const runCols = `id, secret_id, trigger, attempt, status, step, version, old_meta, new_meta, sealed,
	coalesce(holder,''), published_at, retired_at, verify_deadline, monitor_until, wait_until,
	coalesce(detail,''), coalesce(error,''), started_at, updated_at, finished_at`

const activeRunOfSQL = `SELECT ` + runCols + ` FROM rotator_runs WHERE secret_id = $1 AND ` + activeRunSQL

func scanRun(row pgx.Row) (*Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.SecretID, &r.Trigger, &r.Attempt, &r.Status, &r.Step, &r.Version, &r.Old, &r.New,
		&r.Sealed, &r.Holder, &r.PublishedAt, &r.RetiredAt, &r.VerifyDeadline, &r.MonitorUntil, &r.WaitUntil,
		&r.Detail, &r.Error, &r.StartedAt, &r.UpdatedAt, &r.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ActiveRun returns the secret's unfinished run, or nil.
func (db *DB) ActiveRun(ctx context.Context, secretID string) (*Run, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, activeRunOfSQL, secretID))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read active run of %s: %w", secretID, err)
	}
	return r, nil
}

// ActiveRuns reads the unfinished runs of the secrets ids (at most one
// each: rotator_runs_one_active), by secret id, in one query: what
// ActiveRun reads for each, for a page of secrets at a time.
func (db *DB) ActiveRuns(ctx context.Context, ids []string) (map[string]*Run, error) {
	out := map[string]*Run{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+runCols+` FROM rotator_runs WHERE secret_id = ANY($1::text[]) AND `+activeRunSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("read active runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("read active runs: %w", err)
		}
		out[r.SecretID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read active runs: %w", err)
	}
	return out, nil
}

// Run reads one run.
func (db *DB) Run(ctx context.Context, id string) (*Run, error) {
	r, err := scanRun(db.pool.QueryRow(ctx, `SELECT `+runCols+` FROM rotator_runs WHERE id = $1`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("read run %s: %w", id, err)
	}
	return r, err
}

// Runs returns a secret's runs, newest first, with their steps.
func (db *DB) Runs(ctx context.Context, secretID string, limit int) ([]*Run, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+runCols+` FROM rotator_runs WHERE secret_id = $1
		ORDER BY started_at DESC, id DESC LIMIT $2`, secretID, limit)
	if err != nil {
		return nil, fmt.Errorf("list runs of %s: %w", secretID, err)
	}
	var out []*Run
	byID := map[string]*Run{}
	var ids []string
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, r)
		byID[r.ID] = r
		ids = append(ids, r.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return out, nil
	}
	srows, err := db.pool.Query(ctx, `SELECT id, run_id, step, attempt, started_at, finished_at,
		coalesce(outcome,''), coalesce(error,''), coalesce(detail,'') FROM rotator_steps
		WHERE run_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", err)
	}
	defer srows.Close()
	for srows.Next() {
		var s JournalEntry
		if err := srows.Scan(&s.ID, &s.RunID, &s.Step, &s.Attempt, &s.StartedAt, &s.FinishedAt, &s.Outcome, &s.Error, &s.Detail); err != nil {
			return nil, err
		}
		byID[s.RunID].Steps = append(byID[s.RunID].Steps, s)
	}
	return out, srows.Err()
}

// AuditLog returns a secret's audit entries, oldest first.
func (db *DB) AuditLog(ctx context.Context, secretID string) ([]Audit, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, at, secret_id, coalesce(run_id,''), actor, action, coalesce(detail,'')
		FROM rotator_audit WHERE secret_id = $1 ORDER BY id`, secretID)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []Audit
	for rows.Next() {
		var a Audit
		if err := rows.Scan(&a.ID, &a.At, &a.SecretID, &a.RunID, &a.Actor, &a.Action, &a.Detail); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Lease is a secret's lease held by one holder; Token fences its writes
// and, carried to the target (rotation.Fence), its actions there.
type Lease struct {
	SecretID  string
	Holder    string
	Token     int64
	ExpiresAt time.Time
}

// leaseTokenSQL is a new lease's token: above the row's last token and at
// least the state database's clock in microseconds, so tokens keep growing
// even after the state database is restored from a backup (a target that
// remembers the highest token it saw would otherwise refuse every action).
const leaseTokenSQL = `(extract(epoch from clock_timestamp()) * 1000000)::bigint`

// AcquireLease takes the secret's lease for ttl when it is free or expired.
// A live lease is never re-entered, not even by the same holder (holders
// are unique per run: rotation.Engine names each run's holder). Each
// acquisition gets a larger token. ErrLeaseHeld when the lease is live (the
// returned Lease then describes the current holder).
func (db *DB) AcquireLease(ctx context.Context, secretID, holder string, ttl time.Duration) (Lease, error) {
	l := Lease{SecretID: secretID, Holder: holder}
	err := db.pool.QueryRow(ctx, acquireLeaseSQL, secretID, holder, ttl.String()).Scan(&l.Token, &l.ExpiresAt)
	return db.acquired(ctx, l, err)
}

const acquireLeaseSQL = `
		INSERT INTO rotator_leases AS l (secret_id, holder, token, expires_at)
		VALUES ($1, $2, ` + leaseTokenSQL + `, now() + $3::interval)
		ON CONFLICT (secret_id) DO UPDATE SET holder = EXCLUDED.holder,
			token = greatest(l.token + 1, EXCLUDED.token), expires_at = EXCLUDED.expires_at
		WHERE l.expires_at < now()
		RETURNING token, expires_at`

// Snapshot is what a run starts from: the secret, its unfinished run (nil
// when none) and the highest version its runs recorded.
type Snapshot struct {
	Secret     Secret
	Run        *Run
	MaxVersion int64
}

// AcquireLeaseAndRead is AcquireLease and SecretRunAndMaxVersion in one
// round trip: the reads follow the acquisition in the same implicit
// transaction, so they see the state as of holding the lease (runs are
// only written under it). When the lease is held elsewhere the reads are
// discarded and the error is ErrLeaseHeld, as from AcquireLease; a secret
// not in the state database gives the lease and ErrNotFound.
func (db *DB) AcquireLeaseAndRead(ctx context.Context, secretID, holder string, ttl time.Duration) (Lease, Snapshot, error) {
	l := Lease{SecretID: secretID, Holder: holder}
	var (
		b    pgx.Batch
		lerr error
		snap Snapshot
	)
	b.Queue(acquireLeaseSQL, secretID, holder, ttl.String()).QueryRow(func(row pgx.Row) error {
		lerr = row.Scan(&l.Token, &l.ExpiresAt)
		return nil
	})
	read := queueSecretAndActiveRun(&b, secretID, true, &snap)
	if err := db.pool.SendBatch(ctx, &b).Close(); err != nil {
		// One implicit transaction: nothing of it holds, the lease
		// neither.
		return Lease{SecretID: secretID, Holder: holder}, Snapshot{}, fmt.Errorf("acquire lease on %s: %w", secretID, err)
	}
	l, err := db.acquired(ctx, l, lerr)
	if err != nil {
		return l, Snapshot{}, err
	}
	return l, snap, read()
}

// acquired turns the answer of acquireLeaseSQL into AcquireLease's.
func (db *DB) acquired(ctx context.Context, l Lease, err error) (Lease, error) {
	secretID := l.SecretID
	if errors.Is(err, pgx.ErrNoRows) {
		cur := Lease{SecretID: secretID}
		_ = db.pool.QueryRow(ctx, `SELECT holder, token, expires_at FROM rotator_leases WHERE secret_id = $1`, secretID).
			Scan(&cur.Holder, &cur.Token, &cur.ExpiresAt)
		return cur, ErrLeaseHeld
	}
	if err != nil {
		return l, fmt.Errorf("acquire lease on %s: %w", secretID, err)
	}
	return l, nil
}

// RenewLease extends a held lease by ttl from now; ErrLeaseLost when
// another holder took it, or it expired or was released. The caller bounds it with a deadline (a frozen
// connection must not hold a renewal past the point where the lease would
// have to be given up).
func (db *DB) RenewLease(ctx context.Context, l *Lease, ttl time.Duration) error {
	// An expired (or released) lease is not extended: its holder must
	// have stopped, and another may take it any moment.
	err := db.pool.QueryRow(ctx, `UPDATE rotator_leases SET expires_at = now() + $3::interval
		WHERE secret_id = $1 AND token = $2 AND expires_at > now() RETURNING expires_at`, l.SecretID, l.Token, ttl.String()).Scan(&l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", l.SecretID, err)
	}
	return nil
}

const releaseLeaseSQL = `UPDATE rotator_leases SET expires_at = now() - interval '1 second'
		WHERE secret_id = $1 AND token = $2`

// ReleaseLease gives the lease up (if it is still ours).
func (db *DB) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := db.pool.Exec(ctx, releaseLeaseSQL, l.SecretID, l.Token)
	if err != nil {
		return fmt.Errorf("release lease on %s: %w", l.SecretID, err)
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Batch queues the writes of one fenced transaction and sends them to the
// server in a single round trip (a pgx pipeline ending in one Sync, which
// the server runs as one implicit transaction: all of it commits or none).
// The first statement locks the lease row and fails unless its token is
// still the caller's, so a process whose lease was
// taken over cannot write. Results (ids, timestamps) are filled in when
// InBatch returns.
type Batch struct {
	b     pgx.Batch
	actor string
}

// fenceSQL locks the lease row and divides by zero (SQLSTATE 22012) when
// the caller's token is no longer the lease's, aborting the batch.
const fenceSQL = `SELECT 1 / count(*)::int FROM
	(SELECT 1 FROM rotator_leases WHERE secret_id = $1 AND token = $2 FOR UPDATE) AS fence`

// InBatch runs fn to queue writes and sends them, fenced by lease, in one
// round trip. Returns ErrLeaseLost when the lease is no longer the
// caller's, ErrRunActive when a queued InsertRun met an unfinished run.
func (db *DB) InBatch(ctx context.Context, lease Lease, fn func(*Batch) error) error {
	b := &Batch{actor: lease.Holder}
	b.b.Queue(fenceSQL, lease.SecretID, lease.Token)
	if err := fn(b); err != nil {
		return err
	}
	err := db.pool.SendBatch(ctx, &b.b).Close()
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "22012":
		return ErrLeaseLost
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return ErrRunActive
	}
	return fmt.Errorf("write state of %s: %w", lease.SecretID, err)
}

const (
	insertRunSQL = `INSERT INTO rotator_runs (id, secret_id, trigger, attempt, status, step, version,
		old_meta, new_meta, holder, started_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10, now(), now())
		RETURNING started_at, updated_at`
	touchAttemptSQL = `UPDATE rotator_secrets SET last_attempt_at = now(), updated_at = now() WHERE id = $1`
	updateRunSQL    = `UPDATE rotator_runs SET status=$2, step=$3, old_meta=$4, new_meta=$5, sealed=$6,
		holder=$7, published_at=$8, retired_at=$9, verify_deadline=$10, monitor_until=$11, wait_until=$12,
		detail=$13, error=$14, finished_at=$15, attempt=$16, updated_at=now() WHERE id=$1`
	startStepSQL   = `INSERT INTO rotator_steps (run_id, step, attempt, started_at) VALUES ($1,$2,$3, now()) RETURNING id`
	finishStepSQL  = `UPDATE rotator_steps SET finished_at = now(), outcome = $2, error = $3, detail = $4 WHERE id = $1`
	journalStepSQL = `INSERT INTO rotator_steps (run_id, step, attempt, started_at, finished_at, outcome, error, detail)
		VALUES ($1,$2,$3, now(), now(), $4, $5, $6)`
	setCurrentSQL = `UPDATE rotator_secrets SET current_version=$2, current_run_id=$3, current_meta=$4,
		previous_version=$5, previous_run_id=$6, previous_meta=$7, updated_at=now() WHERE id=$1`
	successSQL = `UPDATE rotator_secrets SET last_success_at = now(), last_outcome = $2, last_error = NULL,
		consecutive_failures = 0, next_due_at = $3, status = $4, updated_at = now() WHERE id = $1`
	failureSQL = `UPDATE rotator_secrets SET last_outcome = $2, last_error = $3,
		consecutive_failures = consecutive_failures + $4, next_due_at = coalesce($5, next_due_at), updated_at = now()
		WHERE id = $1`
	setStatusSQL = `UPDATE rotator_secrets SET status = $2, updated_at = now() WHERE id = $1`
	auditSQL     = `INSERT INTO rotator_audit (secret_id, run_id, actor, action, detail) VALUES ($1,$2,$3,$4,$5)`
)

// InsertRun records a new run and the secret's last attempt time.
// InBatch returns ErrRunActive when the secret already has an unfinished
// run. r.StartedAt and r.UpdatedAt are set when the batch has run.
func (b *Batch) InsertRun(r *Run) {
	b.b.Queue(insertRunSQL, r.ID, r.SecretID, r.Trigger, r.Attempt, r.Status, r.Step, r.Version, r.Old, r.New, b.actor).
		QueryRow(func(row pgx.Row) error { return row.Scan(&r.StartedAt, &r.UpdatedAt) })
	b.b.Queue(touchAttemptSQL, r.SecretID)
}

// UpdateRun writes every mutable field of r; the batch fails with
// ErrNotFound when r has no row.
func (b *Batch) UpdateRun(r *Run) {
	b.b.Queue(updateRunSQL, r.ID, r.Status, r.Step, r.Old, r.New, r.Sealed, b.actor, r.PublishedAt, r.RetiredAt, r.VerifyDeadline,
		r.MonitorUntil, r.WaitUntil, nullIfEmpty(r.Detail), nullIfEmpty(r.Error), r.FinishedAt, r.Attempt).
		Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("update run %s: %w", r.ID, ErrNotFound)
			}
			return nil
		})
}

// StartStep journals a step's intent, before its external action; *id is
// set when the batch has run.
func (b *Batch) StartStep(runID string, step Step, attempt int, id *int64) {
	b.b.Queue(startStepSQL, runID, step, attempt).QueryRow(func(row pgx.Row) error { return row.Scan(id) })
}

// FinishStep journals a step's outcome, after its external action.
func (b *Batch) FinishStep(id int64, outcome Outcome, errText, detail string) {
	b.b.Queue(finishStepSQL, id, outcome, nullIfEmpty(errText), nullIfEmpty(detail))
}

// JournalStep journals a step that has no external action of its own (a
// verify decision): its intent and outcome in one row.
func (b *Batch) JournalStep(runID string, step Step, attempt int, outcome Outcome, errText, detail string) {
	b.b.Queue(journalStepSQL, runID, step, attempt, outcome, nullIfEmpty(errText), nullIfEmpty(detail))
}

// SetCurrent records that the stores now hold version/runID/meta as current
// (after a publish or a rollback).
func (b *Batch) SetCurrent(secretID string, version int64, runID string, cur Meta, prevVersion int64, prevRunID string, prev Meta) {
	b.b.Queue(setCurrentSQL, secretID, version, nullIfEmpty(runID), cur, prevVersion, nullIfEmpty(prevRunID), prev)
}

// RecordSuccess records a run that succeeded on its secret: last success
// now, failure count reset, next due at nextDue (nil: none), and the
// secret active. A success (a person's manual run included) lifts a
// quarantine: whatever caused the failures is fixed.
func (b *Batch) RecordSuccess(secretID string, nextDue *time.Time) {
	b.b.Queue(successSQL, secretID, RunSucceeded, nextDue, SecretActive)
}

// RecordFailure records a run that ended without success on its secret:
// outcome is RunFailed (the failure count goes up) or RunRolledBack (it
// does not: the rotation worked, its credential did not last). retryAt,
// when not nil, is the secret's next due time; nil keeps the one on
// record. The status (active or quarantined) is left alone: Quarantine
// sets it.
func (b *Batch) RecordFailure(secretID string, outcome RunStatus, errText string, retryAt *time.Time) {
	count := 0
	if outcome == RunFailed {
		count = 1
	}
	b.b.Queue(failureSQL, secretID, outcome, nullIfEmpty(errText), count, retryAt)
}

// Quarantine stops automatic attempts for a secret and says why in the
// audit log. A successful run or Resume lifts it.
func (b *Batch) Quarantine(secretID, why string) {
	b.b.Queue(setStatusSQL, secretID, SecretQuarantined)
	b.Audit(secretID, "", "quarantined", why)
}

// ReleaseLease gives the batch's lease up as its last write: the run's
// final write and the release in one round trip. Nothing may be written
// under the lease after it (a renewal no longer extends it).
func (b *Batch) ReleaseLease(l Lease) {
	b.b.Queue(releaseLeaseSQL, l.SecretID, l.Token)
}

// Audit appends to the audit log, as the lease's holder.
func (b *Batch) Audit(secretID, runID, action, detail string) {
	b.b.Queue(auditSQL, secretID, nullIfEmpty(runID), b.actor, action, nullIfEmpty(detail))
}

// SecretAndActiveRun reads the secret and its unfinished run (nil when
// none) in one round trip. ErrNotFound when the secret has no row.
func (db *DB) SecretAndActiveRun(ctx context.Context, id string) (Secret, *Run, error) {
	s, run, _, err := db.secretAndActiveRun(ctx, id, false)
	return s, run, err
}

// SecretRunAndMaxVersion is SecretAndActiveRun with, in the same round
// trip, the highest version number any run of the secret recorded (as
// MaxRunVersion).
func (db *DB) SecretRunAndMaxVersion(ctx context.Context, id string) (Secret, *Run, int64, error) {
	return db.secretAndActiveRun(ctx, id, true)
}

func (db *DB) secretAndActiveRun(ctx context.Context, id string, withMax bool) (Secret, *Run, int64, error) {
	var (
		b    pgx.Batch
		snap Snapshot
	)
	read := queueSecretAndActiveRun(&b, id, withMax, &snap)
	if err := db.pool.SendBatch(ctx, &b).Close(); err != nil {
		return Secret{}, nil, 0, fmt.Errorf("read secret %s: %w", id, err)
	}
	err := read()
	return snap.Secret, snap.Run, snap.MaxVersion, err
}

// queueSecretAndActiveRun queues the reads of the secret, its unfinished
// run and (withMax) the highest version of its runs into snap; once the
// batch is sent, the returned function gives the read's error (ErrNotFound
// for a secret the state database does not have).
func queueSecretAndActiveRun(b *pgx.Batch, id string, withMax bool, snap *Snapshot) func() error {
	var serr, rerr error
	b.Queue(secretByIDSQL, id).QueryRow(func(row pgx.Row) error {
		snap.Secret, serr = scanSecret(row)
		return nil
	})
	b.Queue(activeRunOfSQL, id).QueryRow(func(row pgx.Row) error {
		snap.Run, rerr = scanRun(row)
		return nil
	})
	if withMax {
		b.Queue(maxRunVersionSQL, id).QueryRow(func(row pgx.Row) error { return row.Scan(&snap.MaxVersion) })
	}
	return func() error {
		if serr != nil {
			*snap = Snapshot{}
			if !errors.Is(serr, ErrNotFound) {
				serr = fmt.Errorf("read secret %s: %w", id, serr)
			}
			return serr
		}
		if errors.Is(rerr, ErrNotFound) {
			snap.Run = nil
			return nil
		}
		if rerr != nil {
			snap.Run, snap.MaxVersion = nil, 0
			return fmt.Errorf("read active run of %s: %w", id, rerr)
		}
		return nil
	}
}
