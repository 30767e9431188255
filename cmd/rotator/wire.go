package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/apikey"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/files"
	"github.com/rotator/rotator/stores/vault"
)

// loadPolicy loads and validates the policies file, including each
// rotator's and store's own configuration (the factories' Validate).
func (a *app) loadPolicy() (*policy.File, error) {
	f, err := policy.Load(a.policiesPath)
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
	for i, s := range f.Secrets {
		if s.Rotator.Postgres != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.postgres", i), postgres.Validate(s.Rotator.Postgres))
		}
		if s.Rotator.HTTPAPI != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.http_api", i), apikey.Validate(s.Rotator.HTTPAPI))
		}
		if s.Rotator.Token != nil {
			add(s.Rotator.Pos, fmt.Sprintf("secrets[%d].rotator.token", i), apikey.ValidateToken(s.Rotator.Token))
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return errs
	}
	return nil
}

// wiring builds the rotators and stores of one policies file, once each.
type wiring struct {
	file    *policy.File
	logger  *slog.Logger
	stores  map[string]rotation.Store
	closers []func()
	// pgPools shares one admin pool per Postgres server among secrets.
	pgPools *postgres.Pools
}

func newWiring(f *policy.File, logger *slog.Logger) *wiring {
	return &wiring{file: f, logger: logger, stores: map[string]rotation.Store{}}
}

func (w *wiring) Close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
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
		s, err = awssm.New(ctx, awssm.Config{Spec: spec.AWSSM, Logger: w.logger})
	}
	if err != nil {
		return nil, fmt.Errorf("store %q (%s, defined at %s): %w", name, spec.Type(), spec.Pos, err)
	}
	if d := slowDuration(); d > 0 {
		s = slowStore{Store: s, d: d}
	}
	w.stores[name] = s
	return s, nil
}

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
	w.closers = append(w.closers, r.Close)
	return r, nil
}

func (w *wiring) rotator(s *policy.SecretSpec) (rotation.Rotator, error) {
	switch {
	case s.Rotator.Postgres != nil:
		return w.postgres(s)
	case s.Rotator.HTTPAPI != nil:
		return w.apiKey(s)
	case s.Rotator.Token != nil:
		return apikey.NewToken(s.Rotator.Token, apikey.WithTokenLogger(w.logger))
	}
	return nil, fmt.Errorf("secret %s: no rotator configured", s.ID)
}

// baseTarget is the engine's view of one secret from the policy alone: its
// settings, publications and checks, with no rotator and no store built
// (what a dry run needs). target fills in the rest.
func baseTarget(f *policy.File, s *policy.SecretSpec, r rotation.Rotator) (rotation.Target, error) {
	set := f.Settings(s)
	t := rotation.Target{
		ID: s.ID, Class: set.Class, Grace: set.Grace, Monitor: set.Monitor, OnTimeout: set.OnTimeout,
		Retry:   rotation.Retry{Attempts: set.Retry.Attempts, Initial: set.Retry.Initial, Max: set.Retry.Max},
		Channel: set.SlackChannel, Server: serverKey(s), Rotator: r,
	}
	if s.Rotator.Postgres != nil {
		t.Terminate = s.Rotator.Postgres.TerminateSessions
	}
	for _, p := range s.Publish {
		t.Publish = append(t.Publish, rotation.Publication{StoreName: p.Store, Path: p.Path})
	}
	for _, c := range s.Checks {
		ck, err := checkFor(s, c, r)
		if err != nil {
			return t, err
		}
		t.Checks = append(t.Checks, ck)
	}
	return t, nil
}

// target builds the engine's view of one secret, with its rotator and
// stores.
func (w *wiring) target(ctx context.Context, s *policy.SecretSpec) (rotation.Target, error) {
	r, err := w.rotator(s)
	if err != nil {
		return rotation.Target{}, err
	}
	if d := slowDuration(); d > 0 {
		r = slowRotator{Rotator: r, d: d}
	}
	t, err := baseTarget(w.file, s, r)
	if err != nil {
		return t, err
	}
	for i, p := range t.Publish {
		if t.Publish[i].Store, err = w.store(ctx, p.StoreName); err != nil {
			return t, err
		}
	}
	return t, nil
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
	e := &rotation.Engine{DB: db, Key: key, Logger: a.logger, Holder: rotation.DefaultHolder(), Now: time.Now}
	if err := a.applyTestKnobs(e); err != nil {
		db.Close()
		return nil, nil, err
	}
	return e, db, nil
}
