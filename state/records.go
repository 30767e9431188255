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
	ID                  string     `json:"id"`
	Class               string     `json:"class"`
	Status              string     `json:"status"`
	CurrentVersion      int64      `json:"current_version"`
	CurrentRunID        string     `json:"current_run_id,omitempty"`
	Current             Meta       `json:"current"`
	PreviousVersion     int64      `json:"previous_version"`
	PreviousRunID       string     `json:"previous_run_id,omitempty"`
	Previous            Meta       `json:"previous"`
	LastSuccessAt       *time.Time `json:"last_success_at,omitempty"`
	LastAttemptAt       *time.Time `json:"last_attempt_at,omitempty"`
	LastOutcome         string     `json:"last_outcome,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	NextDueAt           *time.Time `json:"next_due_at,omitempty"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

// Run statuses.
const (
	RunRunning    = "running"
	RunWaiting    = "waiting"
	RunSucceeded  = "succeeded"
	RunFailed     = "failed"
	RunRolledBack = "rolled_back"
)

// Run is one rotation (or rollback) of a secret.
type Run struct {
	ID             string     `json:"id"`
	SecretID       string     `json:"secret_id"`
	Trigger        string     `json:"trigger"`
	Attempt        int        `json:"attempt"`
	Status         string     `json:"status"`
	Step           string     `json:"step"`
	Version        int64      `json:"version"`
	Old            Meta       `json:"old"`
	New            Meta       `json:"new"`
	Sealed         []byte     `json:"-"`
	Holder         string     `json:"holder,omitempty"`
	PublishedAt    *time.Time `json:"published_at,omitempty"`
	RetiredAt      *time.Time `json:"retired_at,omitempty"`
	VerifyDeadline *time.Time `json:"verify_deadline,omitempty"`
	MonitorUntil   *time.Time `json:"monitor_until,omitempty"`
	WaitUntil      *time.Time `json:"wait_until,omitempty"`
	Detail         string     `json:"detail,omitempty"`
	Error          string     `json:"error,omitempty"`
	StartedAt      time.Time  `json:"started_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	Steps          []Step     `json:"steps,omitempty"`
}

// Active reports whether the run is unfinished.
func (r *Run) Active() bool { return r.Status == RunRunning || r.Status == RunWaiting }

// Step is one journal entry: written before an external action (intent),
// completed after it (outcome).
type Step struct {
	ID         int64      `json:"id"`
	RunID      string     `json:"run_id"`
	Step       string     `json:"step"`
	Attempt    int        `json:"attempt"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Outcome    string     `json:"outcome,omitempty"`
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
	s, err := scanSecret(db.pool.QueryRow(ctx, `SELECT `+secretCols+` FROM rotator_secrets WHERE id = $1`, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("read secret %s: %w", id, err)
	}
	return s, err
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
	r, err := scanRun(db.pool.QueryRow(ctx, `SELECT `+runCols+` FROM rotator_runs
		WHERE secret_id = $1 AND status IN ('running','waiting')`, secretID))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read active run of %s: %w", secretID, err)
	}
	return r, nil
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
		var s Step
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

// Lease is a secret's lease held by one process; Token fences its writes.
type Lease struct {
	SecretID  string
	Holder    string
	Token     int64
	ExpiresAt time.Time
}

// AcquireLease takes the secret's lease for ttl, when it is free, expired,
// or already this holder's. ErrLeaseHeld otherwise (the returned Lease then
// describes the current holder).
func (db *DB) AcquireLease(ctx context.Context, secretID, holder string, ttl time.Duration) (Lease, error) {
	l := Lease{SecretID: secretID, Holder: holder}
	err := db.pool.QueryRow(ctx, `
		INSERT INTO rotator_leases AS l (secret_id, holder, token, expires_at)
		VALUES ($1, $2, 1, now() + $3::interval)
		ON CONFLICT (secret_id) DO UPDATE SET holder = EXCLUDED.holder, token = l.token + 1, expires_at = EXCLUDED.expires_at
		WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
		RETURNING token, expires_at`, secretID, holder, ttl.String()).Scan(&l.Token, &l.ExpiresAt)
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

// RenewLease extends a held lease; ErrLeaseLost when another took it.
func (db *DB) RenewLease(ctx context.Context, l *Lease, ttl time.Duration) error {
	err := db.pool.QueryRow(ctx, `UPDATE rotator_leases SET expires_at = now() + $3::interval
		WHERE secret_id = $1 AND token = $2 RETURNING expires_at`, l.SecretID, l.Token, ttl.String()).Scan(&l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrLeaseLost
	}
	return err
}

// ReleaseLease gives the lease up (if it is still ours).
func (db *DB) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := db.pool.Exec(ctx, `UPDATE rotator_leases SET expires_at = now() - interval '1 second'
		WHERE secret_id = $1 AND token = $2`, l.SecretID, l.Token)
	return err
}

// Tx is a fenced transaction: it only commits while the lease is still the
// caller's.
type Tx struct {
	tx    pgx.Tx
	lease Lease
	actor string
}

// InTx runs fn in a transaction fenced by lease: the lease row is locked and
// its token compared first, so a process whose lease was taken over cannot
// write. Returns ErrLeaseLost in that case.
func (db *DB) InTx(ctx context.Context, lease Lease, fn func(*Tx) error) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var token int64
		err := tx.QueryRow(ctx, `SELECT token FROM rotator_leases WHERE secret_id = $1 FOR UPDATE`, lease.SecretID).Scan(&token)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && token != lease.Token) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		return fn(&Tx{tx: tx, lease: lease, actor: lease.Holder})
	})
}

// InsertRun records a new run. ErrRunActive when the secret already has an
// unfinished one.
func (t *Tx) InsertRun(ctx context.Context, r *Run) error {
	err := t.tx.QueryRow(ctx, `INSERT INTO rotator_runs (id, secret_id, trigger, attempt, status, step, version,
		old_meta, new_meta, holder, started_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10, now(), now())
		RETURNING started_at, updated_at`,
		r.ID, r.SecretID, r.Trigger, r.Attempt, r.Status, r.Step, r.Version, r.Old, r.New, t.actor).Scan(&r.StartedAt, &r.UpdatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return ErrRunActive
	}
	if err != nil {
		return fmt.Errorf("insert run: %w", err)
	}
	_, err = t.tx.Exec(ctx, `UPDATE rotator_secrets SET last_attempt_at = now(), updated_at = now() WHERE id = $1`, r.SecretID)
	return err
}

// UpdateRun writes every mutable field of r.
func (t *Tx) UpdateRun(ctx context.Context, r *Run) error {
	tag, err := t.tx.Exec(ctx, `UPDATE rotator_runs SET status=$2, step=$3, old_meta=$4, new_meta=$5, sealed=$6,
		holder=$7, published_at=$8, retired_at=$9, verify_deadline=$10, monitor_until=$11, wait_until=$12,
		detail=$13, error=$14, finished_at=$15, attempt=$16, updated_at=now() WHERE id=$1`,
		r.ID, r.Status, r.Step, r.Old, r.New, r.Sealed, t.actor, r.PublishedAt, r.RetiredAt, r.VerifyDeadline,
		r.MonitorUntil, r.WaitUntil, nullIfEmpty(r.Detail), nullIfEmpty(r.Error), r.FinishedAt, r.Attempt)
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("update run %s: %w", r.ID, ErrNotFound)
	}
	return nil
}

// StartStep writes a step's intent and returns its id.
func (t *Tx) StartStep(ctx context.Context, runID, step string, attempt int) (int64, error) {
	var id int64
	err := t.tx.QueryRow(ctx, `INSERT INTO rotator_steps (run_id, step, attempt, started_at) VALUES ($1,$2,$3, now()) RETURNING id`,
		runID, step, attempt).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("journal step %s: %w", step, err)
	}
	return id, nil
}

// FinishStep records a step's outcome.
func (t *Tx) FinishStep(ctx context.Context, id int64, outcome, errText, detail string) error {
	_, err := t.tx.Exec(ctx, `UPDATE rotator_steps SET finished_at = now(), outcome = $2, error = $3, detail = $4 WHERE id = $1`,
		id, outcome, nullIfEmpty(errText), nullIfEmpty(detail))
	if err != nil {
		return fmt.Errorf("journal step outcome: %w", err)
	}
	return nil
}

// SetCurrent records that the stores now hold version/runID/meta as current
// (after a publish or a rollback).
func (t *Tx) SetCurrent(ctx context.Context, secretID string, version int64, runID string, cur Meta, prevVersion int64, prevRunID string, prev Meta) error {
	_, err := t.tx.Exec(ctx, `UPDATE rotator_secrets SET current_version=$2, current_run_id=$3, current_meta=$4,
		previous_version=$5, previous_run_id=$6, previous_meta=$7, updated_at=now() WHERE id=$1`,
		secretID, version, nullIfEmpty(runID), cur, prevVersion, nullIfEmpty(prevRunID), prev)
	if err != nil {
		return fmt.Errorf("record current version of %s: %w", secretID, err)
	}
	return nil
}

// RecordOutcome records how a run ended on the secret: success resets the
// failure count and sets last_success_at; failure counts up.
func (t *Tx) RecordOutcome(ctx context.Context, secretID, outcome, errText string, nextDue *time.Time) error {
	var err error
	if outcome == RunSucceeded {
		// A success (a person's manual run included) also lifts a
		// quarantine: whatever caused the failures is fixed.
		_, err = t.tx.Exec(ctx, `UPDATE rotator_secrets SET last_success_at = now(), last_outcome = $2, last_error = NULL,
			consecutive_failures = 0, next_due_at = $3, status = 'active', updated_at = now() WHERE id = $1`, secretID, outcome, nextDue)
	} else {
		_, err = t.tx.Exec(ctx, `UPDATE rotator_secrets SET last_outcome = $2, last_error = $3,
			consecutive_failures = consecutive_failures + CASE WHEN $2 = 'failed' THEN 1 ELSE 0 END,
			next_due_at = coalesce($4, next_due_at), updated_at = now() WHERE id = $1`, secretID, outcome, nullIfEmpty(errText), nextDue)
	}
	if err != nil {
		return fmt.Errorf("record outcome of %s: %w", secretID, err)
	}
	return nil
}

// Audit appends to the audit log.
func (t *Tx) Audit(ctx context.Context, secretID, runID, action, detail string) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO rotator_audit (secret_id, run_id, actor, action, detail) VALUES ($1,$2,$3,$4,$5)`,
		secretID, nullIfEmpty(runID), t.actor, action, nullIfEmpty(detail))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
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
// still the caller's, exactly as InTx does, so a process whose lease was
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
	startStepSQL  = `INSERT INTO rotator_steps (run_id, step, attempt, started_at) VALUES ($1,$2,$3, now()) RETURNING id`
	finishStepSQL = `UPDATE rotator_steps SET finished_at = now(), outcome = $2, error = $3, detail = $4 WHERE id = $1`
	setCurrentSQL = `UPDATE rotator_secrets SET current_version=$2, current_run_id=$3, current_meta=$4,
		previous_version=$5, previous_run_id=$6, previous_meta=$7, updated_at=now() WHERE id=$1`
	successSQL = `UPDATE rotator_secrets SET last_success_at = now(), last_outcome = $2, last_error = NULL,
		consecutive_failures = 0, next_due_at = $3, updated_at = now() WHERE id = $1`
	auditSQL = `INSERT INTO rotator_audit (secret_id, run_id, actor, action, detail) VALUES ($1,$2,$3,$4,$5)`
)

// InsertRun queues Tx.InsertRun.
func (b *Batch) InsertRun(r *Run) {
	b.b.Queue(insertRunSQL, r.ID, r.SecretID, r.Trigger, r.Attempt, r.Status, r.Step, r.Version, r.Old, r.New, b.actor).
		QueryRow(func(row pgx.Row) error { return row.Scan(&r.StartedAt, &r.UpdatedAt) })
	b.b.Queue(touchAttemptSQL, r.SecretID)
}

// UpdateRun queues Tx.UpdateRun.
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

// StartStep queues Tx.StartStep; *id is set when the batch has run.
func (b *Batch) StartStep(runID, step string, attempt int, id *int64) {
	b.b.Queue(startStepSQL, runID, step, attempt).QueryRow(func(row pgx.Row) error { return row.Scan(id) })
}

// FinishStep queues Tx.FinishStep.
func (b *Batch) FinishStep(id int64, outcome, errText, detail string) {
	b.b.Queue(finishStepSQL, id, outcome, nullIfEmpty(errText), nullIfEmpty(detail))
}

// SetCurrent queues Tx.SetCurrent.
func (b *Batch) SetCurrent(secretID string, version int64, runID string, cur Meta, prevVersion int64, prevRunID string, prev Meta) {
	b.b.Queue(setCurrentSQL, secretID, version, nullIfEmpty(runID), cur, prevVersion, nullIfEmpty(prevRunID), prev)
}

// RecordSuccess queues Tx.RecordOutcome for a run that succeeded.
func (b *Batch) RecordSuccess(secretID string, nextDue *time.Time) {
	b.b.Queue(successSQL, secretID, RunSucceeded, nextDue)
}

// Audit queues Tx.Audit.
func (b *Batch) Audit(secretID, runID, action, detail string) {
	b.b.Queue(auditSQL, secretID, nullIfEmpty(runID), b.actor, action, nullIfEmpty(detail))
}

// SecretAndActiveRun reads the secret and its unfinished run (nil when
// none) in one round trip. ErrNotFound when the secret has no row.
func (db *DB) SecretAndActiveRun(ctx context.Context, id string) (Secret, *Run, error) {
	var (
		s          Secret
		run        *Run
		serr, rerr error
		b          pgx.Batch
	)
	b.Queue(`SELECT `+secretCols+` FROM rotator_secrets WHERE id = $1`, id).QueryRow(func(row pgx.Row) error {
		s, serr = scanSecret(row)
		return nil
	})
	b.Queue(`SELECT `+runCols+` FROM rotator_runs WHERE secret_id = $1 AND status IN ('running','waiting')`, id).
		QueryRow(func(row pgx.Row) error {
			run, rerr = scanRun(row)
			return nil
		})
	if err := db.pool.SendBatch(ctx, &b).Close(); err != nil {
		return s, nil, fmt.Errorf("read secret %s: %w", id, err)
	}
	if serr != nil {
		if !errors.Is(serr, ErrNotFound) {
			serr = fmt.Errorf("read secret %s: %w", id, serr)
		}
		return s, nil, serr
	}
	if errors.Is(rerr, ErrNotFound) {
		return s, nil, nil
	}
	if rerr != nil {
		return s, nil, fmt.Errorf("read active run of %s: %w", id, rerr)
	}
	return s, run, nil
}

// JournalStep queues a step that has no external action of its own (a
// verify decision): its intent and outcome in one row.
func (b *Batch) JournalStep(runID, step string, attempt int, outcome, errText, detail string) {
	b.b.Queue(`INSERT INTO rotator_steps (run_id, step, attempt, started_at, finished_at, outcome, error, detail)
		VALUES ($1,$2,$3, now(), now(), $4, $5, $6)`, runID, step, attempt, outcome, nullIfEmpty(errText), nullIfEmpty(detail))
}
