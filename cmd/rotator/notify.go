package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// eventSink receives engine events (notify, when configured).
type eventSink interface {
	Send(notify.Event)
	Close(ctx context.Context) error
}

// notifierSink adapts the engine's events to a notify.Notifier.
type notifierSink struct{ n *notify.Notifier }

func (s notifierSink) Send(e notify.Event) { s.n.Notify(e) }

func (s notifierSink) Close(ctx context.Context) error { return s.n.Close(ctx) }

// stateEpisodes keeps notification episodes in the state database, so a
// failure is announced once and resolved once across processes (CronJob
// ticks, daemon restarts).
type stateEpisodes struct{ db *state.DB }

var _ notify.EpisodeStore = stateEpisodes{}

func (s stateEpisodes) Lookup(ctx context.Context, k notify.EpisodeKey) (notify.Episode, bool, error) {
	var ep notify.Episode
	data, ok, err := s.db.Episode(ctx, k.SecretID, k.Sink)
	if err != nil || !ok {
		return ep, false, err
	}
	if err := json.Unmarshal(data, &ep); err != nil {
		return ep, false, fmt.Errorf("notification episode of %s at %s is corrupt: %w", k.SecretID, k.Sink, err)
	}
	return ep, true, nil
}

func (s stateEpisodes) Save(ctx context.Context, k notify.EpisodeKey, ep notify.Episode) error {
	data, err := json.Marshal(ep)
	if err != nil {
		return err
	}
	return s.db.SaveEpisode(ctx, k.SecretID, k.Sink, data)
}

func (s stateEpisodes) End(ctx context.Context, k notify.EpisodeKey) error {
	return s.db.EndEpisode(ctx, k.SecretID, k.Sink)
}

// notifier builds the notification sinks of the policies file; nil when
// none are configured. With a state database, episodes are kept there.
func (a *app) notifier(f *policy.File, db *state.DB, reg prometheus.Registerer) (eventSink, error) {
	n, err := a.buildNotifier(f, db, reg)
	if err != nil || n == nil {
		return nil, err
	}
	return notifierSink{n}, nil
}

func (a *app) buildNotifier(f *policy.File, db *state.DB, reg prometheus.Registerer) (*notify.Notifier, error) {
	if f.Notify.Slack == nil && len(f.Notify.Webhooks) == 0 {
		return nil, nil
	}
	sinks, err := notify.FromPolicy(f.Notify, policy.Ref.Resolve, notify.PolicyOptions{})
	if err != nil {
		return nil, err
	}
	// Every resolved reference of the file, not only the credential:
	// an admin DSN's password, management keys, webhook keys.
	cfg := notify.Config{Logger: a.logger, Registerer: reg, Redactor: notify.NewRedactor(fileSecrets(f)...)}
	if db != nil {
		cfg.Episodes = stateEpisodes{db}
	}
	return notify.New(cfg, sinks...)
}

// notifyFlushTimeout bounds how long a one-shot command waits, after its
// work is done, for notifications still being delivered.
const notifyFlushTimeout = 10 * time.Second

// withNotifier wires notifications into a one-shot command's engine and
// returns the function that flushes them before exit.
func (a *app) withNotifier(ctx context.Context, e *rotation.Engine, f *policy.File) (func(), error) {
	n, err := a.notifier(f, e.DB, nil)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return func() {}, nil
	}
	e.Events = n.Send
	// The run is journaled before this flush; a destination that does not
	// answer may hold the exit for at most this long, never the run.
	return func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyFlushTimeout)
		defer cancel()
		if err := n.Close(fctx); err != nil {
			a.logger.Warn("some notifications were not delivered", "err", err.Error())
		}
	}, nil
}

// oneShot builds the engine of a one-shot command (run, rollback) with its
// notifications; done flushes them and closes the state database. Without
// needKey a missing or bad state key is tolerated (work that seals nothing).
func (a *app) oneShot(ctx context.Context, f *policy.File, needKey bool) (*rotation.Engine, func(), error) {
	get := a.engine
	if !needKey {
		get = a.engineKeyOptional
	}
	e, db, err := get(ctx)
	if err != nil {
		return nil, nil, err
	}
	flush, err := a.withNotifier(ctx, e, f)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return e, func() { flush(); db.Close() }, nil
}

func (a *app) notifyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "notify",
		Short:   "Notification tools",
		Example: `  rotator notify test`,
	}
	c.AddCommand(&cobra.Command{
		Use:   "test",
		Short: "Send a test message to every configured sink and report what each answered",
		Long: `notify test sends one test message to every sink in the notify: section of the
policies file (Slack and webhooks), at once, and prints what each destination
answered. It exits 1 if any sink failed.`,
		Example: `  rotator notify test`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := a.loadPolicy()
			if err != nil {
				return err
			}
			n, err := a.buildNotifier(f, nil, nil)
			if err != nil {
				return err
			}
			if n == nil {
				return fmt.Errorf("%s configures no notifications (notify.slack or notify.webhooks)", f.Path)
			}
			defer n.Close(context.WithoutCancel(cmd.Context()))
			failed := 0
			for _, r := range n.Test(cmd.Context()) {
				if r.Err != nil {
					failed++
					fmt.Fprintf(a.stdout, "%s: FAILED: %v\n", r.Sink, r.Err)
					continue
				}
				fmt.Fprintf(a.stdout, "%s: ok: %s\n", r.Sink, r.Receipt)
			}
			if failed > 0 {
				return fmt.Errorf("%d sink(s) failed", failed)
			}
			return nil
		},
	})
	return c
}
