package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/internal/derive"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
	"github.com/rotator/rotator/rotators/awsiam"
	"github.com/rotator/rotator/rotators/keyring"
	"github.com/rotator/rotator/rotators/mysql"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/rotators/redis"
	"github.com/rotator/rotator/schedule"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/vault"
)

// loadPolicy loads and validates the policies file, including each
// rotator's and store's own configuration (the factories' Validate).
//
// A large file (largeFile and up) is loaded with the collector at
// daemon.ReloadGCPercent, as the daemon's reload is: loading allocates
// ~25 times what it keeps (100,000 secrets: ~1.3 GB for a 51 MB File),
// and at the default GOGC of 100 the heap grows to twice what is live
// before a collection. A command's peak RSS is its load's, so this is
// what a CronJob's memory limit must allow for (docs/performance.md,
// "the first tick after a change"). A GOGC the process was started with
// that is lower, or off, is left as it is.
func (a *app) loadPolicy() (*policy.File, error) {
	if st, err := os.Stat(a.policiesPath); err == nil && st.Size() >= largeFile {
		defer daemon.HoldGC()()
	}
	return a.reloadPolicy(nil)
}

// largeFile is the size of a policies file from which loadPolicy holds
// the collector at daemon.ReloadGCPercent (the size from which the
// loader works in pieces).
const largeFile = 1 << 20

// reloadPolicy is loadPolicy reusing what has not changed since prev, the
// File in force (policy.LoadReusing), or nil.
func (a *app) reloadPolicy(prev *policy.File) (*policy.File, error) {
	f, err := policy.LoadReusing(a.policiesPath, prev)
	if err != nil {
		return nil, err
	}
	if err := validateFactories(f); err != nil {
		return nil, err
	}
	return f, nil
}

// validateFactories asks each implementation to validate its part of the
// file, at load time, so a bad setting fails before anything runs.
func validateFactories(f *policy.File) error {
	var errs policy.ErrorList
	add := func(pos policy.Position, field string, err error) {
		if err == nil {
			return
		}
		var pe *policy.Error
		var pl policy.ErrorList
		switch {
		case errors.As(err, &pl):
			errs = append(errs, pl...)
		case errors.As(err, &pe):
			errs = append(errs, pe)
		default:
			errs = append(errs, policy.Errorf(pos, field, "%v", err))
		}
	}
	for i, st := range f.Stores {
		field := fmt.Sprintf("stores[%d].%s", i, st.Type())
		switch {
		case st.Files != nil:
			add(st.Pos, field, files.Validate(st.Files))
		case st.Vault != nil:
			add(st.Pos, field, vault.Validate(st.Vault))
		case st.AWSSM != nil:
			add(st.Pos, field, awssm.Validate(st.AWSSM))
		}
	}
	filesStores := map[string]bool{}
	for _, st := range f.Stores {
		if st.Files != nil {
			filesStores[st.Name] = true
		}
	}
	for i, s := range f.Secrets {
		for j, p := range s.Publish {
			if filesStores[p.Store] {
				add(p.Pos, fmt.Sprintf("secrets[%d].publish[%d].path", i, j), files.ValidatePath(p.Path))
			}
		}
		if s.Rotator.Postgres != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.postgres", i), postgres.Validate(s.Rotator.Postgres))
		}
		if s.Rotator.HTTPAPI != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.http_api", i), apikey.Validate(s.Rotator.HTTPAPI))
		}
		if s.Rotator.Token != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.token", i), apikey.ValidateToken(s.Rotator.Token))
		}
		if s.Rotator.MySQL != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.mysql", i), mysql.Validate(s.Rotator.MySQL))
		}
		if s.Rotator.Redis != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.redis", i), redis.Validate(s.Rotator.Redis))
		}
		if s.Rotator.Keyring != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.keyring", i), keyring.Validate(s.Rotator.Keyring))
		}
		if s.Rotator.AWSIAM != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.awsiam", i), awsiam.Validate(s.Rotator.AWSIAM))
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return errs
	}
	return nil
}

// wiring builds the targets of one policies file (daemon.Builder). What
// secrets share is built once and closed by Close: the stores, and one
// admin pool per Postgres, MariaDB and Redis server. A target's rotator is built at each
// Target and closed by the release it returns (or by Close, if never
// released): the daemon builds a target for a check or a tick and frees
// it after, so it holds no rotator per secret.
type wiring struct {
	file   *policy.File
	logger *slog.Logger

	// mu guards what follows: targets are built from several goroutines
	// (the daemon's checks and ticks). Building does no I/O but a store's
	// first construction.
	mu     sync.Mutex
	stores map[string]rotation.Store
	// closers close the shared pieces, in reverse order.
	closers []func()
	// owned are the closers of built rotators not released yet, by serial.
	owned  map[uint64]func()
	serial uint64
	// pgPools, myPools and redisPools share one admin pool per server
	// (per admin DSN or URL) among secrets.
	pgPools    *postgres.Pools
	myPools    *mysql.Pools
	redisPools *redis.Pools
	// awsCreds is the credentials provider of the first AWS client built
	// (an awsiam rotator or an awssm store), for awsRedact.
	awsCreds aws.CredentialsProvider

	// awsMu guards what follows, apart from mu: retrieving credentials
	// may call a process or AWS.
	awsMu sync.Mutex
	// awsDone: awsSecrets holds rotator's own AWS secrets, retrieved once.
	awsDone    bool
	awsSecrets []secret.Value
}

func newWiring(f *policy.File, logger *slog.Logger) *wiring {
	return &wiring{file: f, logger: logger, stores: map[string]rotation.Store{}, owned: map[uint64]func(){}}
}

// Close closes the rotators not released yet, then the shared pieces.
func (w *wiring) Close() {
	w.mu.Lock()
	owned, closers := w.owned, w.closers
	w.owned, w.closers = map[uint64]func(){}, nil
	w.mu.Unlock()
	for _, c := range owned {
		c()
	}
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// own records the closer of a built rotator (w.mu held) and returns its
// release, which closes it once; Close closes it if release never runs.
func (w *wiring) own(c func()) func() {
	if c == nil {
		return func() {}
	}
	w.serial++
	id := w.serial
	w.owned[id] = c
	return func() {
		w.mu.Lock()
		c, ok := w.owned[id]
		delete(w.owned, id)
		w.mu.Unlock()
		if ok {
			c()
		}
	}
}

func (w *wiring) store(ctx context.Context, name string) (rotation.Store, error) {
	if s, ok := w.stores[name]; ok {
		return s, nil
	}
	spec, ok := w.file.Store(name)
	if !ok {
		return nil, fmt.Errorf("store %q is not defined in %s", name, w.file.Path)
	}
	var s rotation.Store
	var err error
	switch {
	case spec.Files != nil:
		s, err = files.New(spec.Files, w.file.Dir())
	case spec.Vault != nil:
		var v *vault.Store
		v, err = vault.New(ctx, vault.Config{Spec: spec.Vault, Logger: w.logger})
		if err == nil {
			w.closers = append(w.closers, v.Close)
			s = v
		}
	case spec.AWSSM != nil:
		var a *awssm.Store
		a, err = awssm.New(ctx, awssm.Config{Spec: spec.AWSSM, Logger: w.logger})
		if err == nil {
			w.noteAWSCredentials(a.Credentials())
			s = a
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store %q (%s, defined at %s): %w", name, spec.Type(), spec.Pos, err)
	}
	s = slowedStore(s)
	w.stores[name] = s
	return s, nil
}

// postgres builds the postgres rotator of s on the wiring's shared admin
// pools (w.mu held, or the wiring used by one goroutine); the caller closes
// it.
func (w *wiring) postgres(s *policy.SecretSpec) (*postgres.Rotator, error) {
	spec := s.Rotator.Postgres
	dsn, err := spec.AdminDSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("secret %s: admin_dsn: %w", s.ID, err)
	}
	if w.pgPools == nil {
		w.pgPools = postgres.NewPools()
		w.closers = append(w.closers, w.pgPools.Close)
	}
	r, err := postgres.New(spec, dsn, postgres.WithLogger(w.logger), postgres.WithPools(w.pgPools))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	return r, nil
}

// rotator builds the rotator of s and says how to close it (nil: nothing
// to close).
func (w *wiring) rotator(s *policy.SecretSpec) (rotation.Rotator, func(), error) {
	switch {
	case s.Rotator.Postgres != nil:
		r, err := w.postgres(s)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Close, nil
	case s.Rotator.HTTPAPI != nil:
		r, err := w.apiKey(s)
		return r, nil, err
	case s.Rotator.Token != nil:
		r, err := apikey.NewToken(s.Rotator.Token, apikey.WithTokenLogger(w.logger))
		return r, nil, err
	case s.Rotator.MySQL != nil:
		r, err := w.mysql(s)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Close, nil
	case s.Rotator.Redis != nil:
		r, err := w.redis(s)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Close, nil
	case s.Rotator.Keyring != nil:
		r, err := w.keyring(s)
		return r, nil, err
	case s.Rotator.AWSIAM != nil:
		r, err := w.awsIAM(context.Background(), s)
		return r, nil, err
	}
	return nil, nil, fmt.Errorf("secret %s: no rotator configured", s.ID)
}

// baseTarget is the engine's view of one secret from the policy alone: its
// settings, publications and checks, with no rotator and no store built
// (what a dry run needs). target fills in the rest.
func baseTarget(f *policy.File, s *policy.SecretSpec, r rotation.Rotator) (rotation.Target, error) {
	set := f.Settings(s)
	t := rotation.Target{
		ID: s.ID, Class: set.Class, Grace: set.Grace, Monitor: set.Monitor, OnTimeout: set.OnTimeout,
		Retry:   rotation.Retry{Attempts: set.Retry.Attempts, Initial: set.Retry.Initial, Max: set.Retry.Max},
		Channel: set.SlackChannel, Server: schedule.ServerKey(s), Rotator: r,
	}
	if s.Rotator.Postgres != nil {
		t.Terminate = s.Rotator.Postgres.TerminateSessions
		t.ClientsInterval = s.SessionsInterval()
	}
	if s.Rotator.MySQL != nil {
		t.Terminate = s.Rotator.MySQL.TerminateSessions
		t.ClientsInterval = s.SessionsInterval()
	}
	for _, p := range s.Publish {
		t.Publish = append(t.Publish, rotation.Publication{StoreName: p.Store, Path: p.Path})
	}
	for _, c := range s.Checks {
		if c.Sessions != nil {
			continue // paces Rotator.Clients (ClientsInterval): no check of its own
		}
		ck, err := checkFor(s, c, r)
		if err != nil {
			return t, err
		}
		t.Checks = append(t.Checks, ck)
	}
	return t, nil
}

var _ daemon.Builder = (*wiring)(nil)

// Target builds the engine's view of one secret, with a rotator of its
// own and the shared stores; release closes the rotator (daemon.Builder).
func (w *wiring) Target(ctx context.Context, s *policy.SecretSpec) (rotation.Target, func(), error) {
	w.mu.Lock()
	r, closeR, err := w.rotator(s)
	if err != nil {
		w.mu.Unlock()
		return rotation.Target{}, nil, err
	}
	release := w.own(closeR)
	t, err := w.target(ctx, s, slowed(r))
	w.mu.Unlock()
	if err != nil {
		release()
		return t, nil, err
	}
	t.Redact = append(t.Redact, w.awsRedact(ctx)...)
	return t, release, nil
}

// target completes the engine's view of s around its rotator r (w.mu
// held).
func (w *wiring) target(ctx context.Context, s *policy.SecretSpec, r rotation.Rotator) (rotation.Target, error) {
	t, err := baseTarget(w.file, s, r)
	if err != nil {
		return t, err
	}
	t.Redact = resolvedSecrets(s)
	for i := range t.Publish {
		if t.Publish[i].Store, err = w.publication(ctx, s, s.Publish[i]); err != nil {
			return t, err
		}
	}
	return t, nil
}

// publication returns the store one publish entry of s writes through:
// its store, as the fields it owns of a shared document (fields:), with
// its derived fields (derive:). w.mu is held.
func (w *wiring) publication(ctx context.Context, s *policy.SecretSpec, p *policy.PublishSpec) (rotation.Store, error) {
	st, err := w.store(ctx, p.Store)
	if err != nil {
		return nil, err
	}
	if len(p.Fields) > 0 {
		doc, ok := docStore(st)
		if !ok {
			return nil, fmt.Errorf("%s: store %q cannot hold a shared document (fields:)", p.Pos, p.Store)
		}
		st = slowedStore(rotation.SharedFields(doc, rotation.SharedMetaField(s.ID), p.Fields))
	}
	fields, err := derivedFields(p)
	if err != nil {
		return nil, err
	}
	return rotation.DeriveFields(st, fields), nil
}

// docStore finds the rotation.DocStore under the wrappers of a store.
func docStore(s rotation.Store) (rotation.DocStore, bool) {
	for {
		if d, ok := s.(rotation.DocStore); ok {
			return d, true
		}
		u, ok := s.(interface{ Unwrap() rotation.Store })
		if !ok {
			return nil, false
		}
		s = u.Unwrap()
	}
}

// derivedFields parses the derive templates of a publish entry (the
// loader validated them), in name order.
func derivedFields(p *policy.PublishSpec) ([]rotation.DerivedField, error) {
	names := make([]string, 0, len(p.Derive))
	for n := range p.Derive {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]rotation.DerivedField, 0, len(names))
	for _, n := range names {
		t, err := derive.Parse(p.Derive[n])
		if err != nil {
			return nil, fmt.Errorf("%s: derive.%s: %w", p.Pos, n, err)
		}
		out = append(out, rotation.DerivedField{Name: n, Template: t})
	}
	return out, nil
}

// AdoptedAge reads when the version the stores hold was made (first store
// that knows), for adopt_age. Zero when none knows: due at once.
func (w *wiring) AdoptedAge(ctx context.Context, s *policy.SecretSpec) time.Time {
	for _, p := range s.Publish {
		w.mu.Lock()
		st, err := w.publication(ctx, s, p)
		w.mu.Unlock()
		if err != nil {
			continue
		}
		d, err := st.Describe(ctx, rotation.DescribeRequest{Path: p.Path})
		if err == nil && d.Current != nil && !d.Current.RotatedAt.IsZero() {
			return d.Current.RotatedAt
		}
	}
	return time.Time{}
}

// secretSpec finds a secret by id, with a helpful error.
func secretSpec(f *policy.File, id string) (*policy.SecretSpec, error) {
	if id == "" {
		return nil, withCode(exitUsage, errors.New("--secret is required (e.g. --secret db/postgres)"))
	}
	if s, ok := f.Secret(id); ok {
		return s, nil
	}
	var ids []string
	for _, s := range f.Secrets {
		ids = append(ids, s.ID)
	}
	sort.Strings(ids)
	return nil, fmt.Errorf("secret %q is not in %s; it has: %s", id, f.Path, strings.Join(ids, ", "))
}

// openState opens and checks the state database.
func (a *app) openState(ctx context.Context) (*state.DB, error) {
	db, err := state.Open(ctx, a.databaseURL)
	if err != nil {
		return nil, err
	}
	if err := db.CheckSchema(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// engine builds the engine; it needs the state key.
func (a *app) engine(ctx context.Context) (*rotation.Engine, *state.DB, error) {
	key, err := seal.FromEnv()
	if err != nil {
		return nil, nil, err
	}
	return a.engineWith(ctx, key)
}

// engineKeyOptional builds an engine for work that seals nothing
// (rollback): the key is used when it is there and valid.
func (a *app) engineKeyOptional(ctx context.Context) (*rotation.Engine, *state.DB, error) {
	key, err := seal.FromEnv()
	if err != nil {
		a.logger.Warn("no usable state key; continuing without it", "err", err.Error())
		key = nil
	}
	return a.engineWith(ctx, key)
}

func (a *app) engineWith(ctx context.Context, key *seal.Key) (*rotation.Engine, *state.DB, error) {
	db, err := a.openState(ctx)
	if err != nil {
		return nil, nil, err
	}
	e := &rotation.Engine{DB: db, Key: key, Logger: a.logger, Holder: rotation.DefaultHolder(), Now: time.Now, LeaseTTL: a.leaseTTL}
	if err := applyTestKnobs(e); err != nil {
		db.Close()
		return nil, nil, err
	}
	return e, db, nil
}
