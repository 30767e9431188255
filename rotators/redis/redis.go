package redis

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/sharedpool"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

var _ rotation.Rotator = (*Rotator)(nil)

// Defaults of the generated password.
const (
	DefaultLength   = 32
	DefaultAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// KeyIDPrefix starts every key id this rotator gives a password.
const KeyIDPrefix = "sha256:"

// keyIDHex is how many hex digits of the SHA-256 a key id keeps (64 bits:
// enough to tell a user's few passwords apart, too few to be the hash).
const keyIDHex = 16

// FenceKeyPrefix starts the marker key of each user (FenceKeyPrefix+user).
const FenceKeyPrefix = "rotator:fence:"

// Rotator rotates the password of one Redis ACL user by adding and removing
// passwords by their SHA-256 (see the package doc).
type Rotator struct {
	admin    *goredis.Client
	opts     *goredis.Options // admin options: address, TLS, db
	user     string
	length   int
	alphabet string
	extra    map[string]string
	rnd      io.Reader
	logger   *slog.Logger
	hooks    []goredis.Hook
	pools    *Pools                             // shared admin clients (WithPools); nil: a client of its own
	shared   *sharedpool.Entry[*goredis.Client] // admin is this shared client, which Close releases
	closing  sync.Once
}

// Option configures a Rotator.
type Option func(*Rotator)

// WithRand sets the random source of passwords (default crypto/rand).
func WithRand(r io.Reader) Option { return func(x *Rotator) { x.rnd = r } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(x *Rotator) { x.logger = l } }

// WithHook adds a go-redis hook to the admin client (tests capture the
// commands sent with it).
func WithHook(h goredis.Hook) Option { return func(x *Rotator) { x.hooks = append(x.hooks, h) } }

// Validate checks a redis rotator spec at load time.
func Validate(spec *policy.RedisSpec) error {
	if spec == nil {
		return errors.New("no redis spec")
	}
	var errs []error
	if spec.User == "" {
		errs = append(errs, errors.New("user is required"))
	}
	if strings.ContainsAny(spec.User, " \t\r\n") {
		errs = append(errs, fmt.Errorf("user %q contains white space", spec.User))
	}
	if spec.User == "default" {
		errs = append(errs, errors.New(`user "default" cannot be rotated: clients that send no user name use it, and a rotation needs them to name the user`))
	}
	if spec.AdminURL.IsZero() {
		errs = append(errs, errors.New("admin_url is required (env or file)"))
	}
	l, a := passwordShape(spec)
	if l < 16 || l > 128 {
		errs = append(errs, fmt.Errorf("password.length must be 16..128, got %d", l))
	}
	if n := len(secret.DistinctBytes(a)); n < 2 {
		errs = append(errs, fmt.Errorf("password.alphabet must hold at least 2 distinct characters, got %d", n))
	}
	return errors.Join(errs...)
}

func passwordShape(spec *policy.RedisSpec) (int, string) {
	l, a := spec.Password.Length, spec.Password.Alphabet
	if l == 0 {
		l = DefaultLength
	}
	if a == "" {
		a = DefaultAlphabet
	}
	return l, a
}

// New builds a rotator for spec that connects as the rotator's own user
// with adminURL (redis://user:password@host:port/db, rediss:// for TLS).
// It does not connect until the first call.
func New(spec *policy.RedisSpec, adminURL secret.Value, opts ...Option) (*Rotator, error) {
	if err := Validate(spec); err != nil {
		return nil, rotation.Permanent(err)
	}
	o, err := goredis.ParseURL(adminURL.Reveal())
	if err != nil {
		// ParseURL's errors may quote the URL, which holds a password.
		return nil, rotation.Permanent(errors.New("admin_url is not a redis:// or rediss:// URL (redis://user:password@host:6379/0)"))
	}
	o.Protocol = 2
	o.DisableIdentity = true
	o.MaxRetries = -1
	l, a := passwordShape(spec)
	r := &Rotator{opts: o, user: spec.User, length: l, alphabet: a, rnd: rand.Reader, logger: slog.Default(), extra: map[string]string{}}
	for k, v := range spec.Connection {
		r.extra[k] = v
	}
	for _, f := range opts {
		f(r)
	}
	if r.pools != nil && len(r.hooks) == 0 {
		c, err := r.pools.get(sharedpool.Key(adminURL.Reveal()), o)
		if err != nil {
			return nil, fmt.Errorf("redis user %q at %s: %w", r.user, o.Addr, err)
		}
		r.admin, r.shared = c.Pool, c
		return r, nil
	}
	r.admin = goredis.NewClient(o)
	for _, h := range r.hooks {
		r.admin.AddHook(h)
	}
	return r, nil
}

// Close closes the admin connections of a client of its own; a shared
// client (WithPools) stays open for the other secrets, unless its admin
// URL was superseded and this was its last rotator (see Pools).
func (r *Rotator) Close() {
	r.closing.Do(func() {
		if r.shared != nil {
			r.pools.set.Release(r.shared)
			return
		}
		_ = r.admin.Close()
	})
}

// Addr is the server's address (never the admin URL, which holds a password).
func (r *Rotator) Addr() string { return r.opts.Addr }

// User is the rotated user.
func (r *Rotator) User() string { return r.user }

// FenceKey is the key that holds the user's marker.
func (r *Rotator) FenceKey() string { return FenceKeyPrefix + r.user }

// hashOf returns the hex SHA-256 of a password: what ACL SETUSER takes
// after # and !, and what ACL GETUSER lists.
func hashOf(v secret.Value) string {
	s := sha256.Sum256([]byte(v.Reveal()))
	return hex.EncodeToString(s[:])
}

// KeyID returns the key id of a password: its SHA-256's first 16 hex digits.
func KeyID(v secret.Value) string { return keyIDOf(hashOf(v)) }

func keyIDOf(hash string) string { return KeyIDPrefix + hash[:keyIDHex] }

// userState is what ACL GETUSER says about the user.
type userState struct {
	exists    bool
	nopass    bool
	on        bool
	passwords []string // hex SHA-256
}

// find returns the full hash of the password with key id id ("" if none).
func (u userState) find(id string) string {
	if !strings.HasPrefix(id, KeyIDPrefix) {
		return ""
	}
	for _, h := range u.passwords {
		if len(h) == 64 && keyIDOf(h) == id {
			return h
		}
	}
	return ""
}

func (r *Rotator) getUser(ctx context.Context, c *goredis.Client) (userState, error) {
	v, err := c.Do(ctx, "ACL", "GETUSER", r.user).Result()
	if errors.Is(err, goredis.Nil) {
		return userState{}, nil
	}
	if err != nil {
		return userState{}, r.cmdError("ACL GETUSER", err)
	}
	st := userState{exists: true}
	list, ok := v.([]interface{})
	if !ok {
		return st, fmt.Errorf("ACL GETUSER %s at %s: unexpected answer %T", r.user, r.opts.Addr, v)
	}
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		vals, _ := list[i+1].([]interface{})
		switch k {
		case "flags":
			for _, f := range vals {
				switch f {
				case "nopass":
					st.nopass = true
				case "on":
					st.on = true
				}
			}
		case "passwords":
			for _, p := range vals {
				if s, ok := p.(string); ok {
					st.passwords = append(st.passwords, s)
				}
			}
		}
	}
	return st, nil
}

// cmdError wraps a command's error with the command, user and address.
// Permission and authentication errors are Permanent: retrying will not
// grant them. Each says what to fix: the admin's ACL rights (NOPERM), or
// the credentials in the admin URL (WRONGPASS, NOAUTH: its password was
// changed, or its user disabled, when a new admin connection logs in).
func (r *Rotator) cmdError(what string, err error) error {
	e := fmt.Errorf("redis %s for user %q at %s: %w", what, r.user, r.opts.Addr, err)
	switch s := err.Error(); {
	case strings.HasPrefix(s, "NOPERM"):
		return rotation.Permanent(fmt.Errorf("%w (grant the rotator's own user the ACL of deploy/redis/rotator.acl)", e))
	case strings.HasPrefix(s, "WRONGPASS") || strings.HasPrefix(s, "NOAUTH"):
		return rotation.Permanent(fmt.Errorf("%w (the server refuses the admin URL's user %q and password: check the admin URL and that user's password and on/off state)", e, r.opts.Username))
	}
	return e
}

// usable checks that the user exists and has passwords to rotate.
func (r *Rotator) usable(st userState) error {
	if !st.exists {
		return rotation.Permanent(fmt.Errorf("redis user %q does not exist at %s: create it with its current password (ACL SETUSER %s on >…) before rotating",
			r.user, r.opts.Addr, r.user))
	}
	if st.nopass {
		return rotation.Permanent(fmt.Errorf("redis user %q at %s is nopass: adding a password would lock out the clients that send none; "+
			"give it a password first (ACL SETUSER %s resetpass >…) and publish it", r.user, r.opts.Addr, r.user))
	}
	return nil
}

// fenced runs one ACL SETUSER of the user (rules are its arguments after
// the user name: #hash, !hash) inside MULTI/EXEC under WATCH on the
// user's marker key: EXEC runs it only when the marker names no newer
// lease token than f's and nobody wrote the marker since it was read, and
// moves the marker to f in the same transaction (with fields, the pending
// record). A zero f.Token sends the rules without checking or moving the
// token.
func (r *Rotator) fenced(ctx context.Context, f rotation.Fence, action string, fields map[string]string, rules ...string) error {
	key := r.FenceKey()
	args := make([]interface{}, 0, 3+len(rules))
	args = append(args, "ACL", "SETUSER", r.user)
	for _, x := range rules {
		args = append(args, x)
	}
	tx := func(tx *goredis.Tx) error {
		if f.Token != 0 {
			tok, err := tx.HGet(ctx, key, "token").Int64()
			if err != nil && !errors.Is(err, goredis.Nil) {
				return r.cmdError("HGET "+key, err)
			}
			if tok > f.Token {
				run, _ := tx.HGet(ctx, key, "run").Result()
				return rotation.Permanent(fmt.Errorf("%s of redis user %q at %s refused: its marker %s names lease token %d (run %s), newer than this process's %d: %w",
					action, r.user, r.opts.Addr, key, tok, run, f.Token, rotation.ErrFenced))
			}
		}
		_, err := tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Do(ctx, args...)
			m := map[string]interface{}{}
			if f.Token != 0 {
				m["token"] = f.Token
				m["run"] = f.RunID
				m["action"] = action
			}
			for k, v := range fields {
				m[k] = v
			}
			if len(m) > 0 {
				p.HSet(ctx, key, m)
			}
			return nil
		})
		return err
	}
	for i := 0; ; i++ {
		err := r.admin.Watch(ctx, tx, key)
		if errors.Is(err, goredis.TxFailedErr) && i < 5 {
			continue // the marker moved between WATCH and EXEC: look again
		}
		if errors.Is(err, goredis.TxFailedErr) {
			return fmt.Errorf("%s of redis user %q: the marker %s kept changing: %w", action, r.user, key, err)
		}
		if err != nil && !errors.Is(err, rotation.ErrFenced) {
			return r.cmdError("ACL SETUSER ("+action+")", err)
		}
		return err
	}
}

// Generate adds a new password to the user by its SHA-256, beside the
// current one, and logs in with it.
func (r *Rotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	st, err := r.getUser(ctx, r.admin)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	if err := r.usable(st); err != nil {
		return rotation.GenerateResponse{}, err
	}
	// A retried generate of the same run finds the password its first try
	// added (the marker's pending record): no store knows it, so it is
	// removed with the new one's addition and not taken for the current.
	stray := ""
	if run, _ := r.admin.HGet(ctx, r.FenceKey(), "pending_run").Result(); run != "" && run == req.RunID {
		id, _ := r.admin.HGet(ctx, r.FenceKey(), "pending_key").Result()
		if id != req.Current.KeyID {
			stray = st.find(id)
		}
	}
	replaces := req.Current
	switch {
	case req.Current.KeyID == "":
		var others []string
		for _, p := range st.passwords {
			if p != stray {
				others = append(others, p)
			}
		}
		if len(others) != 1 {
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"redis user %q at %s has %d passwords and rotator does not know which one clients use: "+
					"leave it the one password clients use (ACL SETUSER %s resetpass >…) before the first rotation",
				r.user, r.opts.Addr, len(others), r.user))
		}
		replaces = rotation.CredentialMeta{Username: r.user, KeyID: keyIDOf(others[0])}
	case st.find(req.Current.KeyID) == "":
		return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
			"redis user %q at %s has no password with key id %s, which the engine names as current: it was changed outside rotator; "+
				"check what the stores publish and run `rotator adopt`", r.user, r.opts.Addr, req.Current.KeyID))
	}
	pw, err := secret.Generate(r.rnd, r.length, r.alphabet)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	h := hashOf(pw)
	rules := []string{"#" + h}
	if stray != "" {
		rules = append([]string{"!" + stray}, rules...)
	}
	id := keyIDOf(h)
	if err := r.fenced(ctx, req.Fence, "generate", map[string]string{"pending_run": req.RunID, "pending_key": id}, rules...); err != nil {
		return rotation.GenerateResponse{}, err
	}
	c := rotation.Credential{Username: r.user, Secret: pw, KeyID: id, Extra: r.extraCopy()}
	if err := r.login(ctx, c); err != nil {
		return rotation.GenerateResponse{}, fmt.Errorf("test the new password of redis user %q (key %s): %w", r.user, id, err)
	}
	r.logger.InfoContext(ctx, "redis password added", "secret_id", req.SecretID, "run_id", req.RunID, "user", r.user, "key_id", id)
	return rotation.GenerateResponse{Credential: c, Replaces: replaces}, nil
}

func (r *Rotator) extraCopy() map[string]string {
	if len(r.extra) == 0 {
		return nil
	}
	m := make(map[string]string, len(r.extra))
	for k, v := range r.extra {
		m[k] = v
	}
	return m
}

// login authenticates a new connection as the credential and pings.
func (r *Rotator) login(ctx context.Context, c rotation.Credential) error {
	o := *r.opts
	o.Username = c.Username
	o.Password = c.Secret.Reveal()
	o.PoolSize = 1
	o.MaxIdleConns = 0
	cl := goredis.NewClient(&o)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// PING after AUTH: a user without +ping gets NOPERM, which still
	// means the password was accepted.
	if err := cl.Ping(ctx).Err(); err != nil && !strings.HasPrefix(err.Error(), "NOPERM") {
		return fmt.Errorf("log in to redis at %s as %q: %w", r.opts.Addr, c.Username, err)
	}
	return nil
}

// Test logs in with the credential on a new connection.
func (r *Rotator) Test(ctx context.Context, req rotation.TestRequest) error {
	return r.login(ctx, req.Credential)
}

// ErrNoClientCount says why Clients cannot answer.
var ErrNoClientCount = fmt.Errorf("redis cannot tell which of a user's passwords a connection authenticated with "+
	"(CLIENT LIST shows the user only): verify with the delay and http checks (%w)", rotation.ErrUnsupported)

// Clients returns ErrUnsupported: see ErrNoClientCount.
func (r *Rotator) Clients(context.Context, rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	return rotation.ClientsResponse{}, ErrNoClientCount
}

// Retire removes the old password by its hash, and every other password
// but the new one (a rolled-away one a rollback left). The new one must be
// on the user; an old one already gone is done.
func (r *Rotator) Retire(ctx context.Context, req rotation.RetireRequest) error {
	if req.Old.KeyID == "" || req.Old.KeyID == req.New.KeyID {
		return rotation.Permanent(fmt.Errorf("retire of redis user %q refused: the old key id %q is empty or the new one's", r.user, req.Old.KeyID))
	}
	st, err := r.getUser(ctx, r.admin)
	if err != nil {
		return err
	}
	if err := r.usable(st); err != nil {
		return err
	}
	if req.New.KeyID != "" && st.find(req.New.KeyID) == "" {
		return rotation.Permanent(fmt.Errorf("retire of redis user %q (key %s) refused: the new password (key %s) is not on the user, "+
			"so the user would be left without the password the stores publish", r.user, req.Old.KeyID, req.New.KeyID))
	}
	// Once clients use the new password (verify passed), every other one
	// goes: the old one, and any a rollback left on the user (the version
	// rolled away from stays valid for the clients that held it until the
	// next rotation, as Postgres leaves that role enabled until it re-keys
	// it). Rotator owns the user's passwords: its first rotation refuses a
	// user with more than one.
	newHash := st.find(req.New.KeyID)
	var rules, removed []string
	for _, h := range st.passwords {
		if len(h) != 64 || (newHash != "" && h == newHash) || (newHash == "" && keyIDOf(h) != req.Old.KeyID) {
			continue
		}
		rules = append(rules, "!"+h)
		removed = append(removed, keyIDOf(h))
	}
	if len(rules) == 0 {
		return nil
	}
	if len(removed) > 1 {
		r.logger.InfoContext(ctx, "redis: retiring passwords a rollback left beside the old one", "user", r.user, "key_ids", strings.Join(removed, ","))
	}
	return r.fenced(ctx, req.Fence, "retire", nil, rules...)
}

// Restore re-adds the old password by its hash when the old secret is
// given (a store still holds it); nothing when it is still on the user.
func (r *Rotator) Restore(ctx context.Context, req rotation.RestoreRequest) error {
	st, err := r.getUser(ctx, r.admin)
	if err != nil {
		return err
	}
	if err := r.usable(st); err != nil {
		return err
	}
	if st.find(req.Old.KeyID) != "" {
		return nil
	}
	if req.Previous == nil || req.Previous.Secret.IsZero() || KeyID(req.Previous.Secret) != req.Old.KeyID {
		return fmt.Errorf("redis user %q: the old password (key %s) was removed and no store gave it back: %w", r.user, req.Old.KeyID, rotation.ErrNotRestorable)
	}
	if err := r.fenced(ctx, req.Fence, "restore", nil, "#"+hashOf(req.Previous.Secret)); err != nil {
		return err
	}
	return r.login(ctx, rotation.Credential{Username: r.user, Secret: req.Previous.Secret})
}

// Discard removes the unpublished new password by its hash. Without a
// new key id (generate failed before it named its credential: the engine
// discards so), it removes the password the marker records as this run's
// pending one (req.Fence.RunID), unless clients use it; else it does
// nothing.
func (r *Rotator) Discard(ctx context.Context, req rotation.DiscardRequest) error {
	if req.New.KeyID == "" {
		return r.discardPending(ctx, req)
	}
	if req.New.KeyID == req.Current.KeyID {
		return rotation.Permanent(fmt.Errorf("discard of redis user %q refused: the new key id %q is empty or the current one's", r.user, req.New.KeyID))
	}
	st, err := r.getUser(ctx, r.admin)
	if err != nil {
		return err
	}
	if !st.exists {
		return nil
	}
	h := st.find(req.New.KeyID)
	if h == "" {
		return nil
	}
	return r.fenced(ctx, req.Fence, "discard", nil, "!"+h)
}

// discardPending removes the password a failed generate of run
// req.Fence.RunID added (the marker's pending_run and pending_key, written
// in the transaction that added it). It leaves the password that the
// request names as current or previous, and a user's only password.
func (r *Rotator) discardPending(ctx context.Context, req rotation.DiscardRequest) error {
	if req.Fence.RunID == "" {
		return nil
	}
	// HGET, not HMGET: deploy/redis/rotator.acl allows HGET and HSET.
	run, err := r.admin.HGet(ctx, r.FenceKey(), "pending_run").Result()
	if errors.Is(err, goredis.Nil) {
		return nil
	}
	if err != nil {
		return r.cmdError("HGET "+r.FenceKey(), err)
	}
	if run != req.Fence.RunID {
		return nil
	}
	id, err := r.admin.HGet(ctx, r.FenceKey(), "pending_key").Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return r.cmdError("HGET "+r.FenceKey(), err)
	}
	if id == "" || id == req.Current.KeyID ||
		(req.Previous != nil && !req.Previous.Secret.IsZero() && KeyID(req.Previous.Secret) == id) {
		return nil
	}
	st, err := r.getUser(ctx, r.admin)
	if err != nil {
		return err
	}
	h := st.find(id)
	if h == "" || len(st.passwords) < 2 {
		return nil
	}
	r.logger.InfoContext(ctx, "removing the password of a failed generate", "secret_id", req.SecretID, "run_id", run, "user", r.user, "key_id", id)
	return r.fenced(ctx, req.Fence, "discard", nil, "!"+h)
}
