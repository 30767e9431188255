// Command pgpool is an example application that keeps a pgx connection
// pool on the current credential of a blue/green Postgres secret that
// rotator publishes to its files store.
//
// It reads the store's JSON document (username, password, host, port,
// database, version, fingerprint) with the appsecret package, which
// re-reads it in the background. When rotator publishes a new version, the
// OnChange callback builds a new pool with the new login role, swaps it in
// for new queries, and closes the old pool gracefully: Close waits for the
// connections that are in use to be released. rotator keeps the old role
// valid until its checks pass, and its http check asks this program which
// version it uses at /secret-version.
//
//	ROTATOR_SECRET_FILE=.rotator/secrets/db/postgres.json go run ./examples/pgpool
//
// Then list http://127.0.0.1:8080/secret-version in the secret's checks:
//
//	checks:
//	  - http: {urls: ["http://127.0.0.1:8080/secret-version"]}
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rotator/rotator/appsecret"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("pgpool", "err", err)
		os.Exit(1)
	}
}

// dsn builds a connection string from a version of the secret.
func dsn(v appsecret.Version) string {
	host, port := v.Fields["host"], v.Fields["port"]
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(v.Username, v.Reveal()), Host: net.JoinHostPort(host, port),
		Path: "/" + v.Fields["database"]}
	if m := v.Fields["sslmode"]; m != "" {
		u.RawQuery = "sslmode=" + url.QueryEscape(m)
	}
	return u.String()
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	file := os.Getenv("ROTATOR_SECRET_FILE")
	if file == "" {
		file = ".rotator/secrets/db/postgres.json"
	}
	var pool atomic.Pointer[pgxpool.Pool]
	sec, err := appsecret.Open(ctx, appsecret.Options{
		Name:     "db/postgres",
		File:     file,
		Required: true,
		Refresh:  5 * time.Second,
		Logger:   log,
		OnChange: func(old, cur appsecret.Version) {
			next, err := pgxpool.New(ctx, dsn(cur))
			if err != nil {
				// The old pool stays: its role is valid until rotator
				// retires it, and the next change tries again.
				log.Error("new pool", "version", cur, "err", err)
				return
			}
			prev := pool.Swap(next)
			log.Info("switched pool", "from", old, "to", cur, "user", cur.Username)
			if prev != nil {
				go prev.Close() // waits for connections in use to be released
			}
		},
	})
	if err != nil {
		return err
	}
	first, err := pgxpool.New(ctx, dsn(sec.Current()))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	pool.Store(first)
	defer func() { pool.Load().Close() }()
	sec.Start(ctx)
	defer sec.Close()

	mux := http.NewServeMux()
	mux.Handle("/secret-version", sec)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		var one int
		if err := pool.Load().QueryRow(r.Context(), "SELECT 1").Scan(&one); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok (%s)\n", sec.Current())
	})
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving", "addr", addr, "secret", sec.Current())
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
