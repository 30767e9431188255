package main

import (
	"context"
	"fmt"
	"io"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/mysql"
)

// mysql builds the mysql rotator of s on the wiring's shared admin pools
// (w.mu held, or the wiring used by one goroutine); the caller closes it.
func (w *wiring) mysql(s *policy.SecretSpec) (*mysql.Rotator, error) {
	dsn, err := s.Rotator.MySQL.AdminDSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("secret %s: admin_dsn: %w", s.ID, err)
	}
	if w.myPools == nil {
		w.myPools = mysql.NewPools()
		w.closers = append(w.closers, w.myPools.Close)
	}
	r, err := mysql.New(s.Rotator.MySQL, dsn, mysql.WithLogger(w.logger), mysql.WithPools(w.myPools))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	return r, nil
}

// initMySQL is `rotator init` for a mysql secret.
func (w *wiring) initMySQL(ctx context.Context, out io.Writer, s *policy.SecretSpec) error {
	r, err := w.mysql(s)
	if err != nil {
		return err
	}
	defer r.Close()
	rep, err := r.Init(ctx)
	if err != nil {
		// A server that is not a supported MariaDB is refused here, by
		// Init's first use of the admin connection, before it changes
		// anything.
		return fmt.Errorf("secret %s: init: %w", s.ID, err)
	}
	fmt.Fprintf(out, "%s: %s\n", s.ID, rep)
	return nil
}

// mysqlSecrets are the forms of a mysql secret's admin password the
// engine redacts: the DSN and the password in it.
func mysqlSecrets(s *policy.SecretSpec) []secret.Value {
	m := s.Rotator.MySQL
	if m == nil || m.AdminDSN.IsZero() {
		return nil
	}
	v, err := m.AdminDSN.Resolve()
	if err != nil {
		return nil
	}
	out := []secret.Value{v}
	if pw := mysql.DSNPassword(v); !pw.IsZero() {
		out = append(out, forms(pw)...)
	}
	return out
}
