package awsiam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/rotator/rotator/internal/awscreds"
	"github.com/rotator/rotator/internal/readagain"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

var (
	_ rotation.Rotator          = (*Rotator)(nil)
	_ rotation.LastUsedReporter = (*Rotator)(nil)
)

// Tags rotator keeps on the rotated user (see the package doc).
const (
	// TagFence holds "token=<lease token> run=<run id> action=<action>"
	// of the last lease holder that acted on the user.
	TagFence = "rotator:fence"
	// TagPending holds "run=<run id> at=<unix seconds> key=<access key
	// id>": the key a generate created (key= is empty between the intent
	// and the create's answer).
	TagPending = "rotator:pending"
)

// LastUsedLag is how long AWS may take to record a key's use (AWS
// documents up to 4 hours): a key younger than this that IAM reports as
// never used is reported as used now, so the last_used check waits.
const LastUsedLag = 4 * time.Hour

// strayMargin is how much earlier than the intent a key may be created
// and still be taken for the one the intent announced (clock skew
// between rotator and AWS).
const strayMargin = time.Minute

// Config configures a Rotator.
type Config struct {
	// Spec is the secret's awsiam entry in policies.yaml. Required.
	Spec *policy.AWSIAMSpec
	// Logger receives the rotator's logs; nil discards them.
	Logger *slog.Logger
	// AWS, when not nil, replaces the SDK's default configuration (the
	// credential chain, shared config files, environment). Spec.Region
	// and Spec.Endpoint still override it. Tests use it.
	AWS *aws.Config
	// Now is the clock (default time.Now).
	Now func() time.Time
	// LastUsedLag replaces LastUsedLag (tests against a server that
	// records uses at once); zero keeps it.
	LastUsedLag time.Duration
	// Retry is the pause between two tries of a key AWS refuses while it
	// propagates (default 2s).
	Retry time.Duration
}

// Rotator rotates the access keys of one IAM user (see the package doc).
type Rotator struct {
	iam      *iam.Client
	aws      aws.Config // for the STS clients that test a key
	endpoint string     // for messages
	user     string
	wait     time.Duration
	retry    time.Duration
	lag      time.Duration
	extra    map[string]string
	log      *slog.Logger
	now      func() time.Time
}

// Validate checks a spec at load time, without calling AWS.
func Validate(spec *policy.AWSIAMSpec) error {
	if spec == nil {
		return errors.New("no awsiam spec")
	}
	var errs []error
	if spec.User == "" {
		errs = append(errs, errors.New("user is required"))
	}
	if spec.Endpoint != "" {
		if u, err := url.Parse(spec.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint %q is not an http(s) URL", spec.Endpoint))
		}
	}
	if spec.NewKeyWait != nil && spec.NewKeyWait.D() <= 0 {
		errs = append(errs, errors.New("new_key_wait must be longer than 0s"))
	}
	return errors.Join(errs...)
}

// New builds a rotator. Without Config.AWS it loads the SDK's default
// configuration (environment, shared profile, IRSA web identity, ECS or
// the instance role). It does not call AWS.
func New(ctx context.Context, cfg Config) (*Rotator, error) {
	if err := Validate(cfg.Spec); err != nil {
		return nil, rotation.Permanent(fmt.Errorf("awsiam: %w", err))
	}
	spec := cfg.Spec
	var ac aws.Config
	if cfg.AWS != nil {
		ac = cfg.AWS.Copy()
	} else {
		var opts []func(*config.LoadOptions) error
		if spec.Region != "" {
			opts = append(opts, config.WithRegion(spec.Region))
		}
		c, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("awsiam: load the AWS configuration (environment, ~/.aws/config): %w", err)
		}
		ac = c
	}
	// A credential process's unparsable output stays out of every error.
	ac.Credentials = awscreds.Wrap(ac.Credentials)
	if spec.Region != "" {
		ac.Region = spec.Region
	}
	if ac.Region == "" {
		return nil, rotation.Permanent(errors.New("awsiam: no AWS region for the STS endpoint new keys are tested against: set region in the awsiam rotator of policies.yaml, or AWS_REGION"))
	}
	endpoint := "IAM (https://iam.amazonaws.com) and STS of " + ac.Region
	if ac.BaseEndpoint != nil && *ac.BaseEndpoint != "" {
		endpoint = *ac.BaseEndpoint
	}
	if spec.Endpoint != "" {
		ac.BaseEndpoint = aws.String(spec.Endpoint)
		endpoint = spec.Endpoint
	}
	r := &Rotator{
		iam: iam.NewFromConfig(ac), aws: ac, endpoint: endpoint, user: spec.User,
		wait: policy.DefaultAWSIAMNewKeyWait, retry: 2 * time.Second, lag: LastUsedLag,
		extra: map[string]string{}, log: cfg.Logger, now: cfg.Now,
	}
	if spec.NewKeyWait != nil {
		r.wait = spec.NewKeyWait.D()
	}
	if cfg.Retry > 0 {
		r.retry = cfg.Retry
	}
	if cfg.LastUsedLag > 0 {
		r.lag = cfg.LastUsedLag
	}
	for k, v := range spec.Connection {
		r.extra[k] = v
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// User is the rotated IAM user.
func (r *Rotator) User() string { return r.user }

// Credentials is the provider of the rotator's own AWS credentials, the
// one its IAM and STS clients sign with (for the caller's redaction).
func (r *Rotator) Credentials() aws.CredentialsProvider { return r.aws.Credentials }

// key is one access key of the user, as ListAccessKeys lists it.
type key struct {
	id      string
	active  bool
	created time.Time
}

// userState is what IAM says about the user: its keys and rotator's tags.
type userState struct {
	keys []key
	tags map[string]string
}

func (u userState) find(id string) (key, bool) {
	for _, k := range u.keys {
		if id != "" && k.id == id {
			return k, true
		}
	}
	return key{}, false
}

func (u userState) ids() string {
	var s []string
	for _, k := range u.keys {
		st := "Active"
		if !k.active {
			st = "Inactive"
		}
		s = append(s, k.id+" ("+st+")")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// observe reads the user's keys and tags.
func (r *Rotator) observe(ctx context.Context) (userState, error) {
	// Both reads are sent once more when the connection was closed under
	// the answer (internal/readagain).
	out, err := readagain.Do(func() (*iam.ListAccessKeysOutput, error) {
		return r.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(r.user)})
	})
	if err != nil {
		return userState{}, r.awsError("ListAccessKeys", err)
	}
	st := userState{tags: map[string]string{}}
	for _, m := range out.AccessKeyMetadata {
		st.keys = append(st.keys, key{id: aws.ToString(m.AccessKeyId), active: m.Status == types.StatusTypeActive, created: aws.ToTime(m.CreateDate)})
	}
	tags, err := readagain.Do(func() (*iam.ListUserTagsOutput, error) {
		return r.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: aws.String(r.user)})
	})
	if err != nil {
		return userState{}, r.awsError("ListUserTags", err)
	}
	for _, t := range tags.Tags {
		st.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return st, nil
}

// awsError wraps an IAM error with the call, user and endpoint. A user
// that does not exist and a call AWS does not allow are Permanent.
func (r *Rotator) awsError(call string, err error) error {
	e := fmt.Errorf("iam %s of user %q at %s: %w", call, r.user, r.endpoint, err)
	var nse *types.NoSuchEntityException
	var ae smithy.APIError
	switch {
	case errors.As(err, &nse) && (call == "ListAccessKeys" || call == "ListUserTags"):
		return rotation.Permanent(fmt.Errorf("%w: the IAM user %q does not exist: create it (aws iam create-user --user-name %s) or correct user in policies.yaml",
			e, r.user, r.user))
	case errors.As(err, &ae) && (ae.ErrorCode() == "AccessDenied" || ae.ErrorCode() == "AccessDeniedException" ||
		ae.ErrorCode() == "InvalidClientTokenId" || ae.ErrorCode() == "SignatureDoesNotMatch"):
		return rotation.Permanent(fmt.Errorf("%w (rotator's own AWS credentials need the policy of deploy/aws/rotator-awsiam-policy.json on this user)", e))
	}
	return e
}

// fence is observe-before-act for IAM, which has no conditional writes:
// it refuses (ErrFenced) when the user's fence tag names a newer lease
// token than f's, and records f's token before the action. It narrows,
// and cannot close, the window in which a stale process acts: see the
// package doc. A zero token neither checks nor records.
func (r *Rotator) fence(ctx context.Context, st userState, f rotation.Fence, action string) error {
	if f.Token == 0 {
		return nil
	}
	m := parseTag(st.tags[TagFence])
	tok, _ := strconv.ParseInt(m["token"], 10, 64)
	if tok > f.Token {
		return rotation.Permanent(fmt.Errorf("%s of IAM user %q refused: its tag %s names lease token %d (run %s), newer than this process's %d: %w",
			action, r.user, TagFence, tok, m["run"], f.Token, rotation.ErrFenced))
	}
	if tok == f.Token && m["run"] == f.RunID {
		return nil
	}
	return r.tag(ctx, TagFence, fmt.Sprintf("token=%d run=%s action=%s", f.Token, f.RunID, action))
}

func (r *Rotator) tag(ctx context.Context, k, v string) error {
	_, err := r.iam.TagUser(ctx, &iam.TagUserInput{UserName: aws.String(r.user), Tags: []types.Tag{{Key: aws.String(k), Value: aws.String(v)}}})
	if err != nil {
		return r.awsError("TagUser "+k, err)
	}
	return nil
}

// parseTag reads "a=1 b=2" into a map.
func parseTag(v string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(v) {
		if k, x, ok := strings.Cut(f, "="); ok {
			m[k] = x
		}
	}
	return m
}

// pending is what TagPending says: the key a generate of run created.
type pending struct {
	run string
	at  time.Time
	key string
}

func parsePending(v string) pending {
	m := parseTag(v)
	p := pending{run: m["run"], key: m["key"]}
	if s, err := strconv.ParseInt(m["at"], 10, 64); err == nil {
		p.at = time.Unix(s, 0)
	}
	return p
}

func (p pending) String() string {
	return strings.TrimSpace(fmt.Sprintf("run=%s at=%d key=%s", p.run, p.at.Unix(), p.key))
}

// stray returns the key an earlier try of run created and never
// returned: the one TagPending names for run, or, when the try ended
// between the intent and the record, the one key that is neither current
// nor older than the intent. "" when there is none.
func (st userState) stray(run, current string) string {
	p := parsePending(st.tags[TagPending])
	if p.run == "" || p.run != run {
		return ""
	}
	if p.key != "" {
		if p.key != current {
			if _, ok := st.find(p.key); ok {
				return p.key
			}
		}
		return ""
	}
	var found []string
	for _, k := range st.keys {
		if k.id != current && !k.created.Before(p.at.Add(-strayMargin)) {
			found = append(found, k.id)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return ""
}

// Generate creates a new access key beside the current one and calls
// sts:GetCallerIdentity with it (see the package doc for the slot rules).
func (r *Rotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	st, err := r.observe(ctx)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	cur := req.Current.KeyID
	stray := st.stray(req.RunID, cur)
	replaces := req.Current
	if cur != "" {
		k, ok := st.find(cur)
		switch {
		case !ok && len(st.keys) == 2:
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"IAM user %q has two access keys, %s, and neither is %s, which the stores publish as current: they were changed outside rotator; "+
					"rotator deletes neither (either may be in use): check what the stores publish and which key clients use, delete the other by hand, then run `rotator adopt`",
				r.user, st.ids(), cur))
		case !ok:
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"IAM user %q has no access key %s, which the stores publish as current (its keys: %s): it was deleted or replaced outside rotator; "+
					"check what the stores publish and run `rotator adopt`", r.user, cur, st.ids()))
		case !k.active:
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"IAM user %q: access key %s, which the stores publish as current, is Inactive, so AWS refuses it: re-activate it "+
					"(aws iam update-access-key --user-name %s --access-key-id %s --status Active) or roll back, then run again", r.user, cur, r.user, cur))
		}
	} else {
		var active []string
		for _, k := range st.keys {
			if k.active && k.id != stray {
				active = append(active, k.id)
			}
		}
		if len(active) > 1 {
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"IAM user %q has two active access keys, %s, and rotator does not know which one clients use: "+
					"deactivate the one no client uses (aws iam update-access-key --user-name %s --access-key-id … --status Inactive) before the first rotation",
				r.user, strings.Join(active, " and "), r.user))
		}
		replaces = rotation.CredentialMeta{}
		if len(active) == 1 {
			replaces = rotation.CredentialMeta{Username: r.user, KeyID: active[0]}
		}
	}
	// The other key, beside the current one: it must go to free the slot.
	var remove []string
	if stray != "" {
		remove = append(remove, stray)
	}
	for _, k := range st.keys {
		if k.id == replaces.KeyID || k.id == stray {
			continue
		}
		if k.active {
			last := r.lastUsedText(ctx, k.id)
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"IAM user %q has two access keys: %s, which the stores publish as current, and %s, active, which they do not publish as current (last used: %s): "+
					"rotator never deletes a key that may be in use (a rollback leaves the key it rolled away from active for the clients that still hold it). "+
					"When no client uses %s, deactivate it (aws iam update-access-key --user-name %s --access-key-id %s --status Inactive); the next run deletes it",
				r.user, replaces.KeyID, k.id, last, k.id, r.user, k.id))
		}
		remove = append(remove, k.id) // Inactive: AWS refuses it, no client can use it
	}
	if err := r.fence(ctx, st, req.Fence, "generate"); err != nil {
		return rotation.GenerateResponse{}, err
	}
	for _, id := range remove {
		if err := r.deleteKey(ctx, id); err != nil {
			return rotation.GenerateResponse{}, err
		}
		r.log.InfoContext(ctx, "iam access key deleted to free its slot", "secret_id", req.SecretID, "run_id", req.RunID,
			"user", r.user, "key_id", id, "stray_of_this_run", id == stray)
	}
	// Intent, then the key, then its id: a try that ends in between
	// leaves a key the next try of the run finds (stray).
	p := pending{run: req.RunID, at: r.now().Truncate(time.Second)}
	if err := r.tag(ctx, TagPending, p.String()); err != nil {
		return rotation.GenerateResponse{}, err
	}
	// Sent again only when IAM throttled it: a call whose answer was lost
	// may have made a key, and a second one would make another
	// (throttledOnly). The next try of the run deletes such a key (stray).
	out, err := r.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(r.user)}, func(o *iam.Options) {
		o.Retryer = throttledOnly{o.Retryer}
	})
	if err != nil {
		var le *types.LimitExceededException
		if errors.As(err, &le) {
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf(
				"IAM user %q already has two access keys (one was created since rotator looked, outside rotator?): %w", r.user, r.awsError("CreateAccessKey", err)))
		}
		return rotation.GenerateResponse{}, r.awsError("CreateAccessKey", err)
	}
	id := aws.ToString(out.AccessKey.AccessKeyId)
	c := rotation.Credential{Username: r.user, KeyID: id, Field: policy.AWSIAMSecretField,
		Secret: secret.New(aws.ToString(out.AccessKey.SecretAccessKey)), Extra: r.extraWith(id)}
	p.key = id
	if err := r.tag(ctx, TagPending, p.String()); err != nil {
		return rotation.GenerateResponse{}, err
	}
	if err := r.testUntil(ctx, c); err != nil {
		if derr := r.deleteKey(ctx, id); derr != nil {
			r.log.WarnContext(ctx, "iam: could not delete a new key that does not work", "user", r.user, "key_id", id, "err", derr.Error())
		}
		return rotation.GenerateResponse{}, fmt.Errorf("test the new access key %s of IAM user %q (deleted again): %w", id, r.user, err)
	}
	r.log.InfoContext(ctx, "iam access key created", "secret_id", req.SecretID, "run_id", req.RunID, "user", r.user, "key_id", id)
	return rotation.GenerateResponse{Credential: c, Replaces: replaces}, nil
}

func (r *Rotator) extraWith(id string) map[string]string {
	m := make(map[string]string, len(r.extra)+1)
	for k, v := range r.extra {
		m[k] = v
	}
	m[policy.AWSIAMKeyIDField] = id
	return m
}

// deleteKey deletes a key; one already gone is done.
func (r *Rotator) deleteKey(ctx context.Context, id string) error {
	_, err := r.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(r.user), AccessKeyId: aws.String(id)})
	var nse *types.NoSuchEntityException
	if err != nil && !errors.As(err, &nse) {
		return r.awsError("DeleteAccessKey "+id, err)
	}
	return nil
}

func (r *Rotator) setStatus(ctx context.Context, id string, s types.StatusType) error {
	_, err := r.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(r.user), AccessKeyId: aws.String(id), Status: s})
	if err != nil {
		return r.awsError("UpdateAccessKey "+id+" "+string(s), err)
	}
	return nil
}

// testUntil tests a key until it works or the new-key wait is over: AWS
// may refuse a key for seconds after it is created or re-activated.
func (r *Rotator) testUntil(ctx context.Context, c rotation.Credential) error {
	deadline := r.now().Add(r.wait)
	for {
		err := r.test(ctx, c)
		if err == nil || ctx.Err() != nil || !r.now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(r.retry):
		}
	}
}

// test calls sts:GetCallerIdentity signed with the credential (it needs
// no permission), checks that AWS names the user, and that IAM lists the
// key as Active (AWS refuses an Inactive key; moto does not, see the
// package doc).
func (r *Rotator) test(ctx context.Context, c rotation.Credential) error {
	cfg := r.aws.Copy()
	id, sec := c.KeyID, c.Secret.Reveal()
	cfg.Credentials = aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: sec, Source: "rotator awsiam test"}, nil
	}))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && (re.HTTPStatusCode() == 403 || re.HTTPStatusCode() == 401) {
			return fmt.Errorf("AWS refused access key %s of IAM user %q (sts:GetCallerIdentity at %s): %w", c.KeyID, r.user, r.endpoint, err)
		}
		return fmt.Errorf("call sts:GetCallerIdentity with access key %s of IAM user %q at %s: %w", c.KeyID, r.user, r.endpoint, err)
	}
	arn := aws.ToString(out.Arn)
	if !strings.HasSuffix(arn, ":user/"+r.user) && !strings.HasSuffix(arn, "/"+r.user) {
		return fmt.Errorf("access key %s works but belongs to %s, not IAM user %q", c.KeyID, arn, r.user)
	}
	st, err := r.observe(ctx)
	if err != nil {
		return err
	}
	k, ok := st.find(c.KeyID)
	switch {
	case !ok:
		return fmt.Errorf("access key %s is not a key of IAM user %q (its keys: %s)", c.KeyID, r.user, st.ids())
	case !k.active:
		return fmt.Errorf("access key %s of IAM user %q is Inactive: AWS refuses it", c.KeyID, r.user)
	}
	return nil
}

// Test calls sts:GetCallerIdentity with the credential and checks that
// the key is Active.
func (r *Rotator) Test(ctx context.Context, req rotation.TestRequest) error {
	return r.test(ctx, req.Credential)
}

// ErrNoClientCount says why Clients cannot answer.
var ErrNoClientCount = fmt.Errorf("IAM cannot say which or how many clients use an access key, only when it was last used "+
	"(GetAccessKeyLastUsed, recorded by AWS with a delay of up to hours): verify with the last_used, delay and http checks (%w)", rotation.ErrUnsupported)

// Clients returns ErrUnsupported: see ErrNoClientCount.
func (r *Rotator) Clients(context.Context, rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	return rotation.ClientsResponse{}, ErrNoClientCount
}

// LastUsed asks IAM when the key was last used (GetAccessKeyLastUsed). A
// key younger than the recording lag that IAM reports as never used is
// reported as used now: AWS may not have recorded its uses yet.
func (r *Rotator) LastUsed(ctx context.Context, req rotation.LastUsedRequest) (rotation.LastUsedResponse, error) {
	id := req.Credential.KeyID
	if id == "" {
		return rotation.LastUsedResponse{}, fmt.Errorf("no access key id to ask about: %w", rotation.ErrNotFound)
	}
	out, err := r.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(id)})
	var nse *types.NoSuchEntityException
	if errors.As(err, &nse) {
		return rotation.LastUsedResponse{}, fmt.Errorf("access key %s of IAM user %q: %w", id, r.user, rotation.ErrNotFound)
	}
	if err != nil {
		return rotation.LastUsedResponse{}, r.awsError("GetAccessKeyLastUsed "+id, err)
	}
	if out.AccessKeyLastUsed != nil && out.AccessKeyLastUsed.LastUsedDate != nil {
		return rotation.LastUsedResponse{LastUsed: *out.AccessKeyLastUsed.LastUsedDate}, nil
	}
	now := req.Now
	if now.IsZero() {
		now = r.now()
	}
	st, err := r.observe(ctx)
	if err != nil {
		return rotation.LastUsedResponse{}, err
	}
	k, ok := st.find(id)
	if !ok {
		return rotation.LastUsedResponse{}, fmt.Errorf("access key %s of IAM user %q: %w", id, r.user, rotation.ErrNotFound)
	}
	if now.Sub(k.created) < r.lag {
		return rotation.LastUsedResponse{LastUsed: now}, nil
	}
	return rotation.LastUsedResponse{Never: true}, nil
}

// lastUsedText says when a key was last used, for messages.
func (r *Rotator) lastUsedText(ctx context.Context, id string) string {
	out, err := r.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(id)})
	switch {
	case err != nil:
		return "unknown"
	case out.AccessKeyLastUsed == nil || out.AccessKeyLastUsed.LastUsedDate == nil:
		return "never, as far as IAM has recorded"
	}
	u := out.AccessKeyLastUsed
	return fmt.Sprintf("%s, %s in %s, as far as IAM has recorded", u.LastUsedDate.UTC().Format(time.RFC3339), aws.ToString(u.ServiceName), aws.ToString(u.Region))
}

// Retire deactivates the old key (UpdateAccessKey Inactive). The new key
// must be an Active key of the user; an old key already Inactive or gone
// is done. Terminate is ignored: there are no sessions to end (STS
// sessions made with the key outlive it; see the package doc).
func (r *Rotator) Retire(ctx context.Context, req rotation.RetireRequest) error {
	if req.Old.KeyID == "" || req.Old.KeyID == req.New.KeyID {
		return rotation.Permanent(fmt.Errorf("retire of IAM user %q refused: the old access key id %q is empty or the new one's", r.user, req.Old.KeyID))
	}
	st, err := r.observe(ctx)
	if err != nil {
		return err
	}
	if req.New.KeyID != "" {
		if k, ok := st.find(req.New.KeyID); !ok || !k.active {
			return rotation.Permanent(fmt.Errorf("retire of access key %s of IAM user %q refused: the new key %s is not an active key of the user (its keys: %s), "+
				"so the user would be left without the key the stores publish", req.Old.KeyID, r.user, req.New.KeyID, st.ids()))
		}
	}
	k, ok := st.find(req.Old.KeyID)
	if !ok || !k.active {
		return nil
	}
	if err := r.fence(ctx, st, req.Fence, "retire"); err != nil {
		return err
	}
	if err := r.setStatus(ctx, k.id, types.StatusTypeInactive); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "iam access key deactivated", "secret_id", req.SecretID, "user", r.user, "key_id", k.id, "new_key_id", req.New.KeyID)
	return nil
}

// Restore re-activates the old key; a deleted key cannot be restored.
// With the old credential (Previous), it is tested.
func (r *Rotator) Restore(ctx context.Context, req rotation.RestoreRequest) error {
	st, err := r.observe(ctx)
	if err != nil {
		return err
	}
	k, ok := st.find(req.Old.KeyID)
	if !ok {
		return fmt.Errorf("IAM user %q: access key %s was deleted (IAM cannot bring a deleted key back): %w", r.user, req.Old.KeyID, rotation.ErrNotRestorable)
	}
	if !k.active {
		if err := r.fence(ctx, st, req.Fence, "restore"); err != nil {
			return err
		}
		if err := r.setStatus(ctx, k.id, types.StatusTypeActive); err != nil {
			return err
		}
		r.log.InfoContext(ctx, "iam access key re-activated", "secret_id", req.SecretID, "user", r.user, "key_id", k.id)
	}
	if p := req.Previous; p != nil && p.KeyID == k.id && !p.Secret.IsZero() {
		return r.testUntil(ctx, *p)
	}
	return nil
}

// Discard deletes the unpublished new key; one already gone is done.
// With no new key named (generate failed), it deletes the key a generate
// of the fence's run created and never returned (TagPending), if any.
func (r *Rotator) Discard(ctx context.Context, req rotation.DiscardRequest) error {
	if req.New.KeyID != "" && req.New.KeyID == req.Current.KeyID {
		return rotation.Permanent(fmt.Errorf("discard of IAM user %q refused: the new access key id %q is the current one's", r.user, req.New.KeyID))
	}
	st, err := r.observe(ctx)
	if err != nil {
		return err
	}
	if req.New.KeyID == "" {
		if req.Fence.RunID == "" {
			return nil
		}
		req.New.KeyID = st.stray(req.Fence.RunID, req.Current.KeyID)
		if req.New.KeyID == "" {
			return nil
		}
	}
	if _, ok := st.find(req.New.KeyID); !ok {
		return nil
	}
	if err := r.fence(ctx, st, req.Fence, "discard"); err != nil {
		return err
	}
	if err := r.deleteKey(ctx, req.New.KeyID); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "iam access key discarded (deleted)", "secret_id", req.SecretID, "user", r.user, "key_id", req.New.KeyID)
	return nil
}

// throttledOnly is the retryer of CreateAccessKey, which has no
// idempotency token: the SDK's default retryer sends a call again after a
// connection error, including one that cut the answer of a call IAM
// carried out ("use of closed network connection", "connection reset"),
// or a 5xx IAM may have answered after making the key; a key made twice
// is a key whose secret no one holds, or IAM's two-key limit, refused for
// good. It lets the wrapped retryer retry only a throttled call, which
// made nothing.
type throttledOnly struct{ aws.Retryer }

func (t throttledOnly) IsErrorRetryable(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary && t.Retryer.IsErrorRetryable(err)
}
