package proof_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/awssm"
)

// outageWorld reaches the target database, the AWS store (moto_server) and
// Slack (slacktest) each through a proxy whose port the test closes.
type outageWorld struct {
	*engineWorld
	pg, aws, slack *proxy
	slackSrv       *slacktest.Server
	notifier       *notify.Notifier
	mu             sync.Mutex
	events         []notify.Event
	posted         []string // texts of chat.postMessage calls Slack received
}

func newOutageWorld(t *testing.T) *outageWorld {
	t.Helper()
	tg := newTarget(t, "outage")
	u := hostPort(tg.dsn)
	pg := newProxy(t, u)
	adminDSN := strings.Replace(tg.dsn, u, pg.addr, 1)
	w := &outageWorld{engineWorld: newEngineWorld(t, tg, adminDSN, policy.ModeBlueGreen), pg: pg}

	moto := mototest.New(t)
	w.aws = newProxy(t, strings.TrimPrefix(moto.URL, "http://"))
	cfg := mototest.Config("http://" + w.aws.addr)
	st, err := awssm.New(context.Background(), awssm.Config{Spec: &policy.AWSSMSpec{Region: mototest.Region, Endpoint: "http://" + w.aws.addr}, AWS: &cfg})
	require.NoError(t, err)
	w.target.Publish = append(w.target.Publish, rotation.Publication{StoreName: "aws", Path: "proof/outage", Store: st})

	w.slackSrv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", func(rw http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			w.mu.Lock()
			w.posted = append(w.posted, r.Form.Get("text"))
			w.mu.Unlock()
			rw.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(rw, `{"ok":true,"channel":%q,"ts":"%d.000100"}`, r.Form.Get("channel"), time.Now().Unix())
		})
	})
	w.slackSrv.Start()
	t.Cleanup(w.slackSrv.Stop)
	w.slack = newProxy(t, w.slackSrv.ServerAddr)
	bot, err := notify.NewSlackBot(secret.New("xoxb-proof"), "#alerts", "http://"+w.slack.addr+"/", notify.SlackOptions{})
	require.NoError(t, err)
	w.notifier, err = notify.New(notify.Config{Retry: notify.RetryPolicy{Attempts: 20, Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond, Timeout: 2 * time.Second}}, bot)
	require.NoError(t, err)
	w.engine.Events = func(e notify.Event) {
		w.mu.Lock()
		w.events = append(w.events, e)
		w.mu.Unlock()
		w.notifier.Notify(notify.Event{Kind: e.Kind, SecretID: e.SecretID, Class: e.Class, RunID: e.RunID, Step: e.Step,
			Error: e.Error, Attempt: e.Attempt, MaxAttempts: e.MaxAttempts, NextAttempt: e.NextAttempt, Channel: e.Channel,
			Commands: e.Commands, At: e.At, Detail: e.Detail})
	}
	return w
}

func hostPort(dsn string) string {
	s := dsn[strings.Index(dsn, "@")+1:]
	return s[:strings.Index(s, "/")]
}

// alerts returns the Slack messages about failures that arrived.
func (w *outageWorld) alerts() []string {
	var out []string
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.posted {
		if strings.Contains(m, "Rotation failed") {
			out = append(out, m)
		}
	}
	return out
}

// flush waits for the notifier to deliver what it has queued.
func (w *outageWorld) flush() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(w.t, w.notifier.Close(ctx))
}

// TestOutages makes the target database, a store, and Slack unreachable in
// the middle of a run (their port closed) and checks that the old
// credential stays valid and published, the run retries and fails
// cleanly, one alert reaches Slack, and the next run after the outage
// completes.
func TestOutages(t *testing.T) {
	t.Parallel()
	type outage struct {
		name  string
		step  state.Step         // the outage begins when this step's intent is journaled
		down  func(*outageWorld) // what goes away
		up    func(*outageWorld)
		slack bool // Slack is down too: the alert is delivered once it is back
	}
	outages := []outage{
		{name: "target database", step: state.StepGenerate,
			down: func(w *outageWorld) { w.pg.Down() }, up: func(w *outageWorld) { w.pg.Up(w.t) }},
		{name: "store", step: state.StepPublish,
			down: func(w *outageWorld) { w.aws.Down() }, up: func(w *outageWorld) { w.aws.Up(w.t) }},
		{name: "slack and store", step: state.StepPublish, slack: true,
			down: func(w *outageWorld) { w.aws.Down(); w.slack.Down() }, up: func(w *outageWorld) { w.aws.Up(w.t) }},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			w := newOutageWorld(t)
			// A first rotation, so that a previous version exists.
			require.Equal(t, state.RunSucceeded, w.run().Status)
			before := w.publishedLogsIn("before the outage")

			var once sync.Once
			w.engine.Hooks.Before = func(_ string, step state.Step) error {
				if step == o.step {
					once.Do(func() { o.down(w) })
				}
				return nil
			}
			res := w.run()
			w.engine.Hooks.Before = nil
			storeDown := o.step == state.StepPublish
			if storeDown {
				// The store that went away cannot be put back (nor asked
				// whether it took the version): the run needs attention
				// and the new credential stays valid meanwhile.
				require.Equal(t, state.RunNeedsAttention, res.Status, "%+v", res)
				require.Contains(t, res.Detail, "needs attention")
			} else {
				require.Equal(t, state.RunFailed, res.Status, "%+v", res)
				require.Contains(t, res.Detail, "is still valid and published")
			}
			t.Logf("failed cleanly: %v", res.Err)

			// The old credential is valid and the files store publishes it.
			after := w.publishedLogsIn("during the outage")
			require.Equal(t, before.RunID, after.RunID, "the files store publishes the old version again")
			if storeDown {
				require.Contains(t, w.tg.loginRoles(), before.User, "the published role can log in")
			} else {
				require.Equal(t, []string{before.User}, w.tg.loginRoles(), "only the published role can log in")
			}
			steps := w.attempts(res.RunID, o.step)
			require.Equal(t, 3, steps, "the failing action was tried Retry.Attempts times")

			o.up(w)
			if o.slack {
				require.Empty(t, w.alerts(), "Slack is down: nothing arrived yet")
				time.Sleep(300 * time.Millisecond)
				w.slack.Up(t)
			}
			if storeDown {
				// The next run completes the compensation: the run fails,
				// and only then is the new credential disabled.
				res1 := w.run()
				require.Equal(t, state.RunFailed, res1.Status, "%+v", res1)
				require.Equal(t, []string{before.User}, w.tg.loginRoles(), "only the published role can log in")
			}
			// The next run after the outage completes.
			res2 := w.run()
			require.Equal(t, state.RunSucceeded, res2.Status, "%+v", res2)
			now := w.publishedLogsIn("after the outage")
			require.NotEqual(t, before.User, now.User)
			require.Equal(t, []string{now.User}, w.tg.loginRoles())
			w.flush()
			require.Len(t, w.alerts(), 1, "one alert: %q", w.posted)
			w.mu.Lock()
			var failed int
			for _, e := range w.events {
				if e.Kind == policy.EventRotationFailed {
					failed++
				}
			}
			w.mu.Unlock()
			require.Equal(t, 1, failed)
		})
	}
}

// attempts counts the journaled tries of step in run.
func (w *outageWorld) attempts(runID string, step state.Step) int {
	w.t.Helper()
	runs, err := w.db.Runs(context.Background(), "db/postgres", 5)
	require.NoError(w.t, err)
	n := 0
	for _, r := range runs {
		if r.ID != runID {
			continue
		}
		for _, s := range r.Steps {
			if s.Step == step && s.Outcome == state.OutcomeFailed {
				n++
			}
		}
	}
	return n
}
