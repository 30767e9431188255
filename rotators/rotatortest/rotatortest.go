// Package rotatortest is the conformance suite every rotation.Rotator must
// pass. An implementation's tests call Run with a Harness that builds a
// fresh rotator against a real target and can log in with a credential:
//
//	func TestConformance(t *testing.T) {
//		rotatortest.Run(t, rotatortest.Harness{New: ..., Login: ..., CanCountClients: true, CanRestore: true})
//	}
//
// The suite drives the rotator through the engine's order of calls
// (generate, retire, restore, discard), each also repeated as a retry
// would, and checks what a client would see after each one.
package rotatortest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
)

// Harness adapts one Rotator implementation to the suite.
type Harness struct {
	// New returns a rotator against a target of its own, in the state a
	// fresh installation starts from (for Postgres: after Init). It
	// registers its own cleanup.
	New func(t *testing.T) rotation.Rotator
	// Login uses the credential the way a client would, independently of
	// the rotator (a new Postgres connection, an API call). Nil means the
	// suite uses Rotator.Test instead.
	Login func(t *testing.T, c rotation.Credential) error
	// CanCountClients: Clients reports counts; otherwise it must return an
	// error wrapping rotation.ErrUnsupported.
	CanCountClients bool
	// CanRestore: Restore makes a retired credential log in again when
	// given the credential as Previous.
	CanRestore bool
	// ReplacesAtGenerate: the target holds one secret per identity, so
	// Generate invalidates the current credential at once (single-role
	// Postgres). The suite then does not expect the current credential to
	// keep working while a new one is pending.
	ReplacesAtGenerate bool
	// StoresOnly: no target holds the credential but the stores (a key
	// ring). Retire, Restore and Discard change nothing a client can see,
	// so the suite checks that they succeed, are idempotent and leave
	// every credential working (a reader may still hold the old one), not
	// that the old or discarded credential stops working. CanRestore must
	// be set: the stores restore it.
	StoresOnly bool
}

// Run runs the suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.New, "Harness.New is required")

	t.Run("GenerateTestLogin", func(t *testing.T) {
		s := newSession(t, h)
		c := s.generate(rotation.CredentialMeta{})
		require.False(t, c.Secret.IsZero(), "Generate returned an empty secret")
		require.NotEqual(t, c.Secret.Reveal(), c.Secret.String(), "secret must not print")
		s.noErr(s.r.Test(s.ctx, rotation.TestRequest{SecretID: s.id, Credential: c}), "Test of a fresh credential")
		s.requireLogin(c, "a fresh credential")
	})

	t.Run("GenerateTwice", func(t *testing.T) {
		s := newSession(t, h)
		cur := s.generate(rotation.CredentialMeta{})
		// A retried generate step: same request again.
		a := s.generate(cur.Meta())
		b := s.generate(cur.Meta())
		require.False(t, a.Secret.Equal(b.Secret), "two generates returned the same secret")
		// The same identity is re-keyed (a provider may issue a new key id).
		require.Equal(t, a.Username, b.Username, "a retried generate must re-key the same login")
		s.requireLogin(b, "the credential of the second generate")
		if !h.ReplacesAtGenerate {
			s.requireLogin(cur, "the current credential while a new one is generated")
		}
	})

	t.Run("FullCycle", func(t *testing.T) {
		s := newSession(t, h)
		old := s.generate(rotation.CredentialMeta{})
		neu := s.generate(old.Meta())
		s.requireLogin(neu, "the new credential")

		resp, err := s.r.Clients(s.ctx, rotation.ClientsRequest{SecretID: s.id, Old: old.Meta()})
		s.checkErr(err)
		if h.CanCountClients {
			require.NoError(t, err, "Clients")
			require.GreaterOrEqual(t, resp.Count, 0)
		} else {
			require.ErrorIs(t, err, rotation.ErrUnsupported, "Clients without CanCountClients")
		}

		retire := rotation.RetireRequest{SecretID: s.id, Old: old.Meta(), New: neu.Meta()}
		s.noErr(s.r.Retire(s.ctx, retire), "Retire")
		s.noErr(s.r.Retire(s.ctx, retire), "Retire again (retry)")
		s.requireLogin(neu, "the new credential after retire")
		if h.StoresOnly {
			s.requireLogin(old, "the old credential after retire (stores only: a reader may still hold it)")
		} else {
			s.requireNoLogin(old, "the old credential after retire")
		}
		s.noErr(s.r.Test(s.ctx, rotation.TestRequest{SecretID: s.id, Credential: neu}), "Test of the new credential after retire")
		s.checkErr(s.r.Test(s.ctx, rotation.TestRequest{SecretID: s.id, Credential: old}))

		restore := rotation.RestoreRequest{SecretID: s.id, Old: old.Meta(), Previous: &old}
		err = s.r.Restore(s.ctx, restore)
		s.checkErr(err)
		if !h.CanRestore {
			require.ErrorIs(t, err, rotation.ErrNotRestorable, "Restore without CanRestore")
			return
		}
		require.NoError(t, err, "Restore")
		s.noErr(s.r.Restore(s.ctx, restore), "Restore again (retry)")
		s.requireLogin(old, "the old credential after restore")
	})

	t.Run("RetireRefusesNew", func(t *testing.T) {
		s := newSession(t, h)
		old := s.generate(rotation.CredentialMeta{})
		neu := s.generate(old.Meta())
		if neu.Meta() == old.Meta() {
			t.Skip("old and new credentials share an identity (single-role): nothing to refuse")
		}
		err := s.r.Retire(s.ctx, rotation.RetireRequest{SecretID: s.id, Old: neu.Meta(), New: neu.Meta()})
		s.checkErr(err)
		require.Error(t, err, "Retire must refuse to disable the new credential")
		s.requireLogin(neu, "the new credential after a refused retire")
	})

	t.Run("Discard", func(t *testing.T) {
		s := newSession(t, h)
		cur := s.generate(rotation.CredentialMeta{})
		pending := s.generate(cur.Meta())
		req := rotation.DiscardRequest{SecretID: s.id, New: pending.Meta(), Current: cur.Meta(), Previous: &cur}
		s.noErr(s.r.Discard(s.ctx, req), "Discard")
		s.noErr(s.r.Discard(s.ctx, req), "Discard again (retry)")
		if !h.StoresOnly {
			// Stores only: a discarded credential is one no store
			// published, so no reader holds it; nothing to disable.
			s.requireNoLogin(pending, "a discarded credential")
		}
		s.requireLogin(cur, "the current credential after a discard")
	})

	// A run whose generate failed before it named a credential: the
	// engine discards with no new credential (and, where a store holds
	// it, the published one as Previous). The current credential keeps
	// working; the call succeeds, so compensation can complete.
	t.Run("DiscardWithoutNew", func(t *testing.T) {
		s := newSession(t, h)
		cur := s.generate(rotation.CredentialMeta{})
		for _, run := range []string{"a-run-that-generated-nothing", "run-" + t.Name()} {
			req := rotation.DiscardRequest{SecretID: s.id, Current: cur.Meta(), Previous: &cur, Fence: rotation.Fence{RunID: run}}
			s.noErr(s.r.Discard(s.ctx, req), "Discard without a new credential (run "+run+")")
			s.requireLogin(cur, "the current credential after a discard without a new credential")
		}
	})

	t.Run("ErrorsHideSecrets", func(t *testing.T) {
		s := newSession(t, h)
		c := s.generate(rotation.CredentialMeta{})
		wrong := c
		wrong.Secret = secret.New(c.Secret.Reveal()[:len(c.Secret.Reveal())/2] + "x-wrong-secret-x")
		s.secrets = append(s.secrets, wrong.Secret.Reveal())
		err := s.r.Test(s.ctx, rotation.TestRequest{SecretID: s.id, Credential: wrong})
		require.Error(t, err, "Test with a wrong secret must fail")
		s.checkErr(err)
	})
}

// session is one subtest's rotator and what it has generated.
type session struct {
	t       *testing.T
	h       Harness
	r       rotation.Rotator
	ctx     context.Context
	id      string
	secrets []string
	// made holds the first credential generated per identity (what a
	// store would publish for a Successor).
	made map[rotation.CredentialMeta]rotation.Credential
}

func newSession(t *testing.T, h Harness) *session {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &session{t: t, h: h, r: h.New(t), ctx: ctx, id: "conformance/" + t.Name()}
}

// generate asks for a new credential. A rotation.Successor is given what
// a store would publish: the credential last generated with current's
// identity in this session (nil on a first generate).
func (s *session) generate(current rotation.CredentialMeta) rotation.Credential {
	s.t.Helper()
	req := rotation.GenerateRequest{SecretID: s.id, RunID: "run-" + s.t.Name(), Current: current}
	if _, ok := s.r.(rotation.Successor); ok && !current.IsZero() {
		pub, ok := s.made[current]
		require.True(s.t, ok, "the suite generates on a credential it made")
		req.Published = &pub
	}
	resp, err := s.r.Generate(s.ctx, req)
	s.noErr(err, "Generate")
	c := resp.Credential
	require.False(s.t, c.Secret.IsZero(), "Generate returned an empty secret")
	s.secrets = append(s.secrets, c.Secret.Reveal())
	if s.made == nil {
		s.made = map[rotation.CredentialMeta]rotation.Credential{}
	}
	if _, seen := s.made[c.Meta()]; !seen {
		s.made[c.Meta()] = c
	}
	return c
}

// checkErr fails when err's message contains any secret seen so far.
func (s *session) checkErr(err error) {
	s.t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, sec := range s.secrets {
		if strings.Contains(msg, sec) {
			s.t.Fatalf("an error message contains a generated secret: %s", strings.ReplaceAll(msg, sec, "<SECRET>"))
		}
	}
}

func (s *session) noErr(err error, what string) {
	s.t.Helper()
	s.checkErr(err)
	require.NoError(s.t, err, what)
}

func (s *session) login(c rotation.Credential) error {
	if s.h.Login != nil {
		return s.h.Login(s.t, c)
	}
	return s.r.Test(s.ctx, rotation.TestRequest{SecretID: s.id, Credential: c})
}

func (s *session) requireLogin(c rotation.Credential, what string) {
	s.t.Helper()
	err := s.login(c)
	s.checkErr(err)
	require.NoError(s.t, err, "%s (%s) must work", what, c.Meta())
}

func (s *session) requireNoLogin(c rotation.Credential, what string) {
	s.t.Helper()
	err := s.login(c)
	s.checkErr(err)
	require.Error(s.t, err, "%s (%s) must no longer work", what, c.Meta())
	require.False(s.t, errors.Is(err, context.DeadlineExceeded), "login timed out instead of being refused: %v", err)
}
