package awssm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/rotator/rotator/internal/awscreds"
	"github.com/rotator/rotator/internal/readagain"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// The staging labels the store uses.
const (
	LabelCurrent  = "AWSCURRENT"
	LabelPrevious = "AWSPREVIOUS"
	LabelPending  = "AWSPENDING"
	// LabelPriorPrevious marks, while a version is newly published, the
	// version that held AWSPREVIOUS before that publish, so a discarding
	// rollback (rotation.RollbackRequest.Discard) can move AWSPREVIOUS
	// back to it: previous always names the last version that was really
	// current, never a discarded one.
	LabelPriorPrevious = "ROTATOR_PRIOR_PREVIOUS"
)

// TagManagedBy is the tag the store puts on the secrets it creates, with
// the value ManagedBy.
const (
	TagManagedBy = "managed-by"
	ManagedBy    = "rotator"
)

var _ rotation.Store = (*Store)(nil)

// Config configures a Store.
type Config struct {
	// Spec is the store's entry in policies.yaml. Required.
	Spec *policy.AWSSMSpec
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// AWS, when not nil, replaces the SDK's default configuration (the
	// credential chain, shared config files, environment). Spec.Region
	// and Spec.Endpoint still override its region and endpoint. Tests use
	// it; production leaves it nil.
	AWS *aws.Config
}

// Store publishes versions to AWS Secrets Manager with staging labels. See
// the package documentation for the label mapping and idempotency.
type Store struct {
	client   *secretsmanager.Client
	creds    aws.CredentialsProvider
	region   string
	endpoint string // for messages
	create   bool
	kmsKeyID string
	tags     []types.Tag
	log      *slog.Logger
	// beforeMove, when set (tests, export_test.go), runs in Publish after
	// the fence's compare, just before AWSCURRENT is moved.
	beforeMove func()
	// metas remembers what meta read (see metaCache).
	metas metaCache
}

// metaCache holds the metadata meta read from versions, by secret name and
// version id. A Secrets Manager version is immutable: its value cannot be
// changed once written (a PutSecretValue with an existing version id and
// other data fails; an edit by hand is a new version), so what a version
// id held when it was read it holds for as long as it exists, and which
// version holds which label is still asked of AWS every time
// (DescribeSecret). It saves reading the same version's value again: the
// Describe before retire reads only the version just published, and a
// store that lives across runs (the daemon) reads each version once. It
// holds no secret (run id, username, number, fingerprint, time), at most
// metaCacheSize entries (cleared when full).
type metaCache struct {
	mu sync.Mutex
	m  map[string]cachedMeta
}

type cachedMeta struct {
	meta rotation.VersionMeta
	ours bool
}

const metaCacheSize = 4096

func (c *metaCache) get(name, id string) (cachedMeta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name+"\x00"+id]
	return v, ok
}

func (c *metaCache) put(name, id string, v cachedMeta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= metaCacheSize {
		c.m = make(map[string]cachedMeta)
	}
	c.m[name+"\x00"+id] = v
}

var regionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)+$`)

// Validate checks a spec without touching AWS: policy validation calls it
// at load time. It reports every problem it finds.
func Validate(spec *policy.AWSSMSpec) error {
	if spec == nil {
		return errors.New("awssm: no store spec")
	}
	var errs []error
	if spec.Region != "" && !regionRE.MatchString(spec.Region) {
		errs = append(errs, fmt.Errorf("region %q is not an AWS region name (like eu-west-1)", spec.Region))
	}
	if spec.Endpoint != "" {
		u, err := url.Parse(spec.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint %q is not an http(s) URL (like https://secretsmanager.eu-west-1.amazonaws.com)", spec.Endpoint))
		}
	}
	if strings.ContainsAny(spec.KMSKeyID, " \t\r\n") || len(spec.KMSKeyID) > 2048 {
		errs = append(errs, fmt.Errorf("kms_key_id %q is not a KMS key id, ARN or alias", spec.KMSKeyID))
	}
	if len(spec.Tags) > 49 {
		errs = append(errs, fmt.Errorf("tags: %d tags, at most 49 (AWS allows 50 and rotator adds %s)", len(spec.Tags), TagManagedBy))
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Tags)) {
		v := spec.Tags[k]
		switch {
		case k == "" || len(k) > 128:
			errs = append(errs, fmt.Errorf("tags: key %q must be 1 to 128 characters", k))
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			errs = append(errs, fmt.Errorf("tags: key %q: the aws: prefix is reserved by AWS", k))
		case k == TagManagedBy:
			errs = append(errs, fmt.Errorf("tags: key %q is set by rotator (%s=%s)", k, TagManagedBy, ManagedBy))
		case len(v) > 256:
			errs = append(errs, fmt.Errorf("tags: value of %q is longer than 256 characters", k))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("awssm: %w", errors.Join(errs...))
	}
	return nil
}

// New builds a Store. Without Config.AWS it loads the SDK's default
// configuration: credentials from the environment, the shared profile,
// IRSA web identity, ECS or the instance role; the region from the spec,
// then AWS_REGION or the profile. It does not call AWS: missing credentials
// show on the first call, as ErrNoCredentials.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := Validate(cfg.Spec); err != nil {
		return nil, err
	}
	spec := cfg.Spec
	var awsCfg aws.Config
	if cfg.AWS != nil {
		awsCfg = cfg.AWS.Copy()
	} else {
		var opts []func(*config.LoadOptions) error
		if spec.Region != "" {
			opts = append(opts, config.WithRegion(spec.Region))
		}
		c, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("awssm: load the AWS configuration (environment, ~/.aws/config): %w", err)
		}
		awsCfg = c
	}
	if spec.Region != "" {
		awsCfg.Region = spec.Region
	}
	if awsCfg.Region == "" {
		return nil, errors.New("awssm: no AWS region: set region in the awssm store of policies.yaml, or AWS_REGION")
	}
	if awsCfg.Credentials == nil {
		awsCfg.Credentials = noCredentials{}
	}
	awsCfg.Credentials = markCredentials{awscreds.Wrap(awsCfg.Credentials)}

	endpoint := "the Secrets Manager endpoint of " + awsCfg.Region + " (https://secretsmanager." + awsCfg.Region +
		".amazonaws.com unless AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL says otherwise)"
	if awsCfg.BaseEndpoint != nil && *awsCfg.BaseEndpoint != "" {
		endpoint = *awsCfg.BaseEndpoint
	}
	if spec.Endpoint != "" {
		endpoint = spec.Endpoint
	}
	client := secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
		if spec.Endpoint != "" {
			o.BaseEndpoint = aws.String(spec.Endpoint)
		}
	})

	tags := []types.Tag{{Key: aws.String(TagManagedBy), Value: aws.String(ManagedBy)}}
	for _, k := range slices.Sorted(maps.Keys(spec.Tags)) {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(spec.Tags[k])})
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{
		client:   client,
		creds:    awsCfg.Credentials,
		region:   awsCfg.Region,
		endpoint: endpoint,
		create:   spec.Create == nil || *spec.Create,
		kmsKeyID: spec.KMSKeyID,
		tags:     tags,
		log:      log.With("store", "awssm", "region", awsCfg.Region),
	}, nil
}

// Credentials is the provider of the store's own AWS credentials, the
// one its client signs with (for the caller's redaction).
func (s *Store) Credentials() aws.CredentialsProvider { return s.creds }

// secretState is what DescribeSecret says about a secret's labels.
type secretState struct {
	exists  bool
	deleted *time.Time
	// labels maps a version id to its staging labels.
	labels map[string][]string
	// holder maps a staging label to the version id that has it.
	holder map[string]string
	// withdrawn are the runs listed in the TagWithdrawn tag.
	withdrawn []string
}

// TagWithdrawn is the tag on a secret listing (space-separated, newest
// first, at most withdrawnKept) the runs whose version a discarding
// rollback withdrew from it: a publish of one is refused (withdraw).
const TagWithdrawn = "rotator-withdrawn-runs"

// withdrawnKept bounds TagWithdrawn (a tag value holds at most 256
// characters: 6 run ids of 36).
const withdrawnKept = 6

func (st secretState) has(id, label string) bool { return slices.Contains(st.labels[id], label) }

// unpublishedFirst reports whether version id looks like a first version
// staged and not published: AWS made it AWSCURRENT because it was the
// secret's first version, and it still has AWSPENDING, and nothing was
// current before it. The caller checks that rotator wrote it.
func (st secretState) unpublishedFirst(id string) bool {
	return st.has(id, LabelCurrent) && st.has(id, LabelPending) && st.holder[LabelPrevious] == ""
}

func (s *Store) describe(ctx context.Context, op, name string) (secretState, error) {
	out, err := readagain.Do(func() (*secretsmanager.DescribeSecretOutput, error) {
		return s.client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	})
	if err != nil {
		if isCode(err, "ResourceNotFoundException") {
			return secretState{}, nil
		}
		return secretState{}, s.fail(op, "DescribeSecret", name, err)
	}
	st := secretState{exists: true, deleted: out.DeletedDate, labels: out.VersionIdsToStages, holder: map[string]string{}}
	if st.labels == nil {
		st.labels = map[string][]string{}
	}
	for id, ls := range st.labels {
		for _, l := range ls {
			st.holder[l] = id
		}
	}
	for _, t := range out.Tags {
		if aws.ToString(t.Key) == TagWithdrawn {
			st.withdrawn = strings.Fields(aws.ToString(t.Value))
		}
	}
	if out.RotationEnabled != nil && *out.RotationEnabled {
		s.log.WarnContext(ctx, "secret also has Secrets Manager rotation enabled: two rotators will fight over it",
			"secret", name)
	}
	return st, nil
}

// ensure describes the secret, creating it when it does not exist and the
// store may. A secret scheduled for deletion is an error.
func (s *Store) ensure(ctx context.Context, op, name string) (secretState, error) {
	st, err := s.describe(ctx, op, name)
	if err != nil {
		return st, err
	}
	if st.deleted != nil {
		return st, s.deletionError(op, name, st.deleted)
	}
	if st.exists {
		return st, nil
	}
	if !s.create {
		return st, rotation.Permanent(fmt.Errorf("%s secret %q: %w in %s: create it (aws secretsmanager create-secret --name %s --region %s) "+
			"or set create: true on the store", op, name, ErrCreateDisabled, s.region, name, s.region))
	}
	in := &secretsmanager.CreateSecretInput{
		Name:        aws.String(name),
		Description: aws.String("Managed by rotator: versions are published by rotation runs."),
		Tags:        s.tags,
	}
	if s.kmsKeyID != "" {
		in.KmsKeyId = aws.String(s.kmsKeyID)
	}
	if _, err := s.client.CreateSecret(ctx, in); err != nil {
		if !isCode(err, "ResourceExistsException") { // created meanwhile: fine
			return st, s.fail(op, "CreateSecret", name, err)
		}
	} else {
		s.log.InfoContext(ctx, "created secret", "secret", name, "kms_key_id", s.kmsKeyID)
	}
	st, err = s.describe(ctx, op, name)
	if err == nil && !st.exists {
		err = fmt.Errorf("%s secret %q: %w: not found right after it was created", op, name, rotation.ErrNotFound)
	}
	return st, err
}

// read fetches one version's stored data.
func (s *Store) read(ctx context.Context, op, name, id string) (map[string]string, time.Time, error) {
	out, err := readagain.Do(func() (*secretsmanager.GetSecretValueOutput, error) {
		return s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name), VersionId: aws.String(id)})
	})
	if err != nil {
		return nil, time.Time{}, s.fail(op, "GetSecretValue", name, err)
	}
	var created time.Time
	if out.CreatedDate != nil {
		created = *out.CreatedDate
	}
	if out.SecretString == nil {
		return nil, created, errNotRotatorData
	}
	d, err := parseValue(*out.SecretString)
	return d, created, err
}

var errNotRotatorData = errors.New("the value is not a JSON object of strings")

// parseValue decodes a JSON object; numbers and booleans (from other tools)
// become their JSON text. The error never quotes the value.
func parseValue(s string) (map[string]string, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, errNotRotatorData
	}
	d := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			d[k] = v
		case json.Number:
			d[k] = v.String()
		case bool:
			d[k] = strconv.FormatBool(v)
		case nil:
		default:
			return nil, errNotRotatorData
		}
	}
	return d, nil
}

// meta returns the metadata of version id, and whether rotator wrote it
// (its data has a run_id). A version of another tool's (not JSON, no
// rotator fields) has metadata with only RotatedAt, its creation date.
func (s *Store) meta(ctx context.Context, op, name, id string) (*rotation.VersionMeta, bool, error) {
	if c, ok := s.metas.get(name, id); ok {
		m := c.meta
		return &m, c.ours, nil
	}
	d, created, err := s.read(ctx, op, name, id)
	if errors.Is(err, errNotRotatorData) {
		s.metas.put(name, id, cachedMeta{meta: rotation.VersionMeta{RotatedAt: created}})
		return &rotation.VersionMeta{RotatedAt: created}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var m rotation.VersionMeta
	if v, perr := rotation.ParseData(d); perr == nil {
		m = v.Meta()
	} else {
		m.RunID = d[rotation.DataRunID]
		m.Username = d[rotation.DataUsername]
		m.Fingerprint = d[rotation.DataFingerprint]
		m.Number, _ = strconv.ParseInt(d[rotation.DataVersion], 10, 64)
		m.RotatedAt, _ = time.Parse(time.RFC3339Nano, d[rotation.DataRotatedAt])
	}
	if m.RotatedAt.IsZero() {
		m.RotatedAt = created
	}
	ours := d[rotation.DataRunID] != ""
	s.metas.put(name, id, cachedMeta{meta: m, ours: ours})
	return &m, ours, nil
}

// target checks a request's path and run id and returns the secret name
// and the run's token.
func target(op, path, runID string) (string, string, error) {
	if path == "" {
		return "", "", rotation.Permanent(fmt.Errorf("%s: empty secret name", op))
	}
	tok, err := Token(runID)
	if err != nil {
		return "", "", rotation.Permanent(fmt.Errorf("%s secret %q: %w", op, path, err))
	}
	return path, tok, nil
}

// Stage writes v as a new version labelled AWSPENDING (creating the secret
// first when it does not exist and create is allowed). See the package
// documentation for the rules about a pending version already there.
func (s *Store) Stage(ctx context.Context, req rotation.StageRequest) error {
	name, tok, err := target("stage", req.Path, req.Version.RunID)
	if err != nil {
		return err
	}
	st, err := s.ensure(ctx, "stage", name)
	if err != nil {
		return err
	}
	_, err = s.stage(ctx, name, tok, req.Version, st)
	return err
}

// stage stages the run's version and returns its labels afterwards.
func (s *Store) stage(ctx context.Context, name, tok string, v rotation.Version, st secretState) ([]string, error) {
	if st.has(tok, LabelPending) || st.has(tok, LabelCurrent) {
		return st.labels[tok], nil // staged, or published, already
	}
	if err := s.checkPending(ctx, name, tok, st); err != nil {
		return nil, err
	}
	log := s.log.With("secret", name, "run_id", v.RunID, "version_id", tok, "number", v.Number)
	if _, ok := st.labels[tok]; ok {
		// The run's version exists without AWSPENDING (an earlier Abort,
		// or a rollback): label it again, if it holds this version.
		if err := s.sameData(ctx, "stage", name, tok, v); err != nil {
			return nil, err
		}
		if err := s.moveLabel(ctx, "stage", name, LabelPending, tok, st.holder[LabelPending]); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "staged existing version again")
		return append(slices.Clone(st.labels[tok]), LabelPending), nil
	}
	data, err := json.Marshal(v.Data())
	if err != nil {
		return nil, fmt.Errorf("stage secret %q: encode version: %w", name, err)
	}
	out, err := s.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(name),
		ClientRequestToken: aws.String(tok),
		SecretString:       aws.String(string(data)),
		VersionStages:      []string{LabelPending},
	})
	if err != nil {
		if isCode(err, "ResourceExistsException") {
			return nil, conflict("stage", name, tok, v.RunID)
		}
		return nil, s.fail("stage", "PutSecretValue", name, err)
	}
	labels := out.VersionStages
	if !slices.Contains(labels, LabelPending) {
		// The version existed unlabelled (AWS lists only labelled versions,
		// and an identical PutSecretValue is a no-op): label it.
		if err := s.moveLabel(ctx, "stage", name, LabelPending, tok, st.holder[LabelPending]); err != nil {
			return nil, err
		}
		labels = append(labels, LabelPending)
	}
	log.InfoContext(ctx, "staged version", "labels", labels)
	return labels, nil
}

func conflict(op, name, tok, runID string) error {
	return rotation.Permanent(fmt.Errorf("%s secret %q: %w: version %s of run %s holds other data than this attempt "+
		"(a retried run must publish exactly the same version)", op, name, ErrVersionConflict, tok, runID))
}

// sameData checks that the existing version tok holds v's data.
func (s *Store) sameData(ctx context.Context, op, name, tok string, v rotation.Version) error {
	d, _, err := s.read(ctx, op, name, tok)
	if errors.Is(err, errNotRotatorData) || err == nil && !maps.Equal(d, v.Data()) {
		return conflict(op, name, tok, v.RunID)
	}
	return err
}

// checkPending refuses to take AWSPENDING from a version rotator did not
// write. A pending label on the current version (a finished rotation that
// left it there) or on a version of an earlier rotator run may be taken.
func (s *Store) checkPending(ctx context.Context, name, tok string, st secretState) error {
	p := st.holder[LabelPending]
	if p == "" || p == tok || st.has(p, LabelCurrent) {
		return nil
	}
	m, ours, err := s.meta(ctx, "stage", name, p)
	if err != nil {
		return err
	}
	if ours {
		s.log.InfoContext(ctx, "replacing the AWSPENDING version of an earlier rotator run",
			"secret", name, "stale_version_id", p, "stale_run_id", m.RunID)
		return nil
	}
	return rotation.Permanent(fmt.Errorf("stage secret %q: %w: version %s has AWSPENDING and rotator did not write it "+
		"(a rotation by another tool, such as a rotation Lambda, is in progress or was left unfinished): finish or cancel "+
		"that rotation, or remove the label with `aws secretsmanager update-secret-version-stage --secret-id %s "+
		"--version-stage AWSPENDING --remove-from-version-id %s --region %s`", name, ErrForeignPending, p, name, p, s.region))
}

// moveLabel attaches label to version to (removing it from version from,
// when not empty), or, with to empty, removes it from version from.
func (s *Store) moveLabel(ctx context.Context, op, name, label, to, from string) error {
	in := &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String(name), VersionStage: aws.String(label)}
	if to != "" {
		in.MoveToVersionId = aws.String(to)
	}
	if from != "" {
		in.RemoveFromVersionId = aws.String(from)
	}
	if _, err := s.client.UpdateSecretVersionStage(ctx, in); err != nil {
		if isCode(err, "InvalidParameterException") && s.landed(ctx, op, name, label, to, from) {
			return nil
		}
		return s.fail(op, "UpdateSecretVersionStage", name, err)
	}
	return nil
}

// landed reports whether the secret is as a move of label (to version to,
// or off version from when to is empty) leaves it, after AWS refused the
// move. The SDK's default retryer sends a call again when its answer was
// lost (a connection closed under the response, aws/aws-sdk-go-v2#1825),
// writes included: when the first call had landed, the second names a
// version the label has just left (RemoveFromVersionId) and AWS refuses
// it. The move is done; reporting the refusal would fail a publish that
// succeeded (with an expectation, as a store moved by someone else).
// Nobody else moves a label onto this run's version, so finding it there
// is finding this move.
func (s *Store) landed(ctx context.Context, op, name, label, to, from string) bool {
	st, err := s.describe(ctx, op, name)
	if err != nil || !st.exists {
		return false
	}
	if to != "" {
		return st.holder[label] == to
	}
	return from != "" && !st.has(from, label)
}

// Publish makes the run's version AWSCURRENT (staging it first when it is
// not there), which moves AWSPREVIOUS to the version that was current, and
// then takes AWSPENDING off it. When the run's version is already current
// only a leftover AWSPENDING is removed.
func (s *Store) Publish(ctx context.Context, req rotation.PublishRequest) error {
	name, tok, err := target("publish", req.Path, req.Version.RunID)
	if err != nil {
		return err
	}
	st, err := s.ensure(ctx, "publish", name)
	if err != nil {
		return err
	}
	if slices.Contains(st.withdrawn, req.Version.RunID) && !req.RollForward {
		return rotation.Withdrawn(fmt.Sprintf("awssm secret %q", name), req.Version.RunID)
	}
	labels, ok := st.labels[tok]
	if e := req.Expect; e != nil && !slices.Contains(labels, LabelCurrent) {
		// The fence, before anything is written (not even AWSPENDING).
		if err := s.expect(ctx, name, e, st.holder[LabelCurrent], st); err != nil {
			return err
		}
	}
	switch {
	case !ok:
		if labels, err = s.stage(ctx, name, tok, req.Version, st); err != nil {
			return err
		}
	case !slices.Contains(labels, LabelCurrent):
		// Staged, or published before and no longer current: make sure it
		// is this version before making it current.
		if err := s.sameData(ctx, "publish", name, tok, req.Version); err != nil {
			return err
		}
	}
	log := s.log.With("secret", name, "run_id", req.Version.RunID, "version_id", tok, "number", req.Version.Number)
	if !slices.Contains(labels, LabelCurrent) {
		old := st.holder[LabelCurrent]
		// Remember which version is previous now, for a discarding
		// rollback of this publish.
		if pp, rec := st.holder[LabelPrevious], st.holder[LabelPriorPrevious]; pp != rec {
			if err := s.moveLabel(ctx, "publish", name, LabelPriorPrevious, pp, rec); err != nil {
				return err
			}
		}
		if s.beforeMove != nil {
			s.beforeMove()
		}
		// RemoveFromVersionId = the version compared above: AWS refuses
		// the move when AWSCURRENT is no longer there, so a writer in
		// between is not overwritten.
		if err := s.moveLabel(ctx, "publish", name, LabelCurrent, tok, old); err != nil {
			return s.moved(ctx, name, req.Expect, old, err)
		}
		log.InfoContext(ctx, "published version", "previous_version_id", old)
	}
	if slices.Contains(labels, LabelPending) {
		if err := s.moveLabel(ctx, "publish", name, LabelPending, "", tok); err != nil {
			return err
		}
	}
	return nil
}

// expect compares the AWSCURRENT version (old) with what the caller
// observed: a refusal names both run ids and the version id found.
func (s *Store) expect(ctx context.Context, name string, e *rotation.Expect, old string, st secretState) error {
	found := ""
	if old != "" {
		if e.RunID != "" {
			if want, err := Token(e.RunID); err == nil && want == old {
				return nil
			}
		}
		m, ours, err := s.meta(ctx, "publish", name, old)
		if err != nil {
			return err
		}
		// A first version staged and never published is not current.
		if !(ours && st.unpublishedFirst(old)) {
			found = m.RunID
		}
	}
	if found != e.RunID {
		return rotation.StoreMoved(fmt.Sprintf("awssm secret %q", name), e.RunID, found, versionName(old))
	}
	return nil
}

func versionName(id string) string {
	if id == "" {
		return ""
	}
	return "VersionId " + id
}

// moved explains a label move that AWS refused because AWSCURRENT had
// moved since it was read (a publish with an expectation): a refusal, not
// a retryable error.
func (s *Store) moved(ctx context.Context, name string, e *rotation.Expect, old string, err error) error {
	if e == nil || !isCode(err, "InvalidParameterException") {
		return err
	}
	st, derr := s.describe(ctx, "publish", name)
	if derr != nil || st.holder[LabelCurrent] == old {
		return err
	}
	found := ""
	if cur := st.holder[LabelCurrent]; cur != "" {
		if m, _, merr := s.meta(ctx, "publish", name, cur); merr == nil {
			found = m.RunID
		}
	}
	return rotation.StoreMoved(fmt.Sprintf("awssm secret %q", name), e.RunID, found, versionName(st.holder[LabelCurrent]))
}

// Describe reads the versions labelled AWSCURRENT, AWSPREVIOUS and
// AWSPENDING and returns their metadata.
func (s *Store) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	var resp rotation.DescribeResponse
	name := req.Path
	st, err := s.describe(ctx, "describe", name)
	if err != nil || !st.exists {
		return resp, err
	}
	if st.deleted != nil {
		return resp, s.deletionError("describe", name, st.deleted)
	}
	cur, prev, pend := st.holder[LabelCurrent], st.holder[LabelPrevious], st.holder[LabelPending]
	if cur != "" {
		m, ours, err := s.meta(ctx, "describe", name, cur)
		if err != nil {
			return resp, err
		}
		if ours && st.unpublishedFirst(cur) {
			resp.Pending = m
		} else {
			resp.Current = m
		}
	}
	if prev != "" && prev != cur {
		if resp.Previous, _, err = s.meta(ctx, "describe", name, prev); err != nil {
			return resp, err
		}
	}
	if pend != "" && pend != cur {
		if resp.Pending, _, err = s.meta(ctx, "describe", name, pend); err != nil {
			return resp, err
		}
	}
	return resp, nil
}

// Read returns the version labelled AWSCURRENT (or AWSPREVIOUS).
func (s *Store) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	name := req.Path
	label := LabelCurrent
	if req.Which == rotation.Previous {
		label = LabelPrevious
	}
	st, err := s.describe(ctx, "read", name)
	if err != nil {
		return rotation.Version{}, err
	}
	if !st.exists {
		return rotation.Version{}, fmt.Errorf("read secret %q: %w: no such secret in %s", name, rotation.ErrNotFound, s.region)
	}
	if st.deleted != nil {
		return rotation.Version{}, s.deletionError("read", name, st.deleted)
	}
	id := st.holder[label]
	if id == "" {
		return rotation.Version{}, fmt.Errorf("read secret %q: %w: no %s version", name, rotation.ErrNotFound, label)
	}
	d, _, err := s.read(ctx, "read", name, id)
	if err != nil {
		return rotation.Version{}, fmt.Errorf("read %s version %s of secret %q: %w", label, id, name, err)
	}
	if label == LabelCurrent && st.unpublishedFirst(id) && d[rotation.DataRunID] != "" {
		return rotation.Version{}, fmt.Errorf("read secret %q: %w: the only version (run %s) is staged, not published",
			name, rotation.ErrNotFound, d[rotation.DataRunID])
	}
	v, err := rotation.ParseData(d)
	if err != nil {
		return rotation.Version{}, fmt.Errorf("read %s version %s of secret %q: %w", label, id, name, err)
	}
	return v, nil
}

// Rollback moves AWSCURRENT back to the AWSPREVIOUS version when the
// current version is the run's (AWS then labels the run's version
// AWSPREVIOUS). Without a previous version it fails with ErrNotRestorable
// and changes nothing.
func (s *Store) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	name, tok, err := target("rollback", req.Path, req.RunID)
	if err != nil {
		return err
	}
	st, err := s.describe(ctx, "rollback", name)
	if err != nil || !st.exists {
		return err
	}
	if st.deleted != nil {
		return s.deletionError("rollback", name, st.deleted)
	}
	if req.Discard {
		if err := s.withdraw(ctx, name, req.RunID, st); err != nil {
			// The put back matters more than the record: without
			// secretsmanager:TagResource (policies written when it was
			// needed only with create: true), or with the store failing,
			// the rollback goes on, without the guard against a delayed
			// publish of the run (a failing store fails the rest too, and
			// the compensation is tried again).
			s.log.WarnContext(ctx, "could not record the withdrawn run on the secret (it needs secretsmanager:TagResource): "+
				"putting it back anyway, without the guard against a delayed publish of the run",
				"secret", name, "run_id", req.RunID, "err", err.Error())
		}
	}
	if st.holder[LabelCurrent] != tok {
		if req.Discard && st.holder[LabelPrevious] == tok {
			// Rolled back already, but AWSPREVIOUS still names the
			// discarded version (the second move did not happen).
			return s.restorePrevious(ctx, name, tok, st)
		}
		return nil // never published, or rolled back already
	}
	prev := st.holder[LabelPrevious]
	if prev == "" || prev == tok {
		return rotation.Permanent(fmt.Errorf("rollback run %s at secret %q: no AWSPREVIOUS version to make current: %w",
			req.RunID, name, rotation.ErrNotRestorable))
	}
	if e := req.Expect; e != nil && e.RunID != "" {
		if want, err := Token(e.RunID); err != nil || want != prev {
			m, _, err := s.meta(ctx, "rollback", name, prev)
			if err != nil {
				return err
			}
			if m.RunID != e.RunID {
				return rotation.PreviousMoved(fmt.Sprintf("awssm secret %q (AWSPREVIOUS)", name), e.RunID, m.RunID, versionName(prev))
			}
		}
	}
	// RemoveFromVersionId = the run's version: AWS refuses if another
	// writer moved AWSCURRENT since it was read.
	if err := s.moveLabel(ctx, "rollback", name, LabelCurrent, prev, tok); err != nil {
		return err
	}
	if st.has(tok, LabelPending) {
		if err := s.moveLabel(ctx, "rollback", name, LabelPending, "", tok); err != nil {
			return err
		}
	}
	s.log.InfoContext(ctx, "rolled back", "secret", name, "run_id", req.RunID, "version_id", tok, "current_version_id", prev)
	if req.Discard {
		// AWS moved AWSPREVIOUS to the run's version; it never was really
		// current, so AWSPREVIOUS goes back where it was before.
		st.labels[tok] = append(slices.DeleteFunc(slices.Clone(st.labels[tok]), func(l string) bool { return l == LabelCurrent }), LabelPrevious)
		st.holder[LabelPrevious] = tok
		return s.restorePrevious(ctx, name, tok, st)
	}
	return nil
}

// withdraw records run in the secret's TagWithdrawn tag before a
// discarding rollback puts the secret back, whether or not the secret
// holds run's version: a publish of run's version that arrives after it
// (a process that lost its lease and whose request was delayed, while
// the process that took over resumed the same run, failed and
// compensated) reads the tag with the secret's labels and is refused,
// instead of making current a credential the target has disabled. The
// fence (Expect) cannot tell: after the put back AWSCURRENT is again on
// the version the delayed request observed, and AWS has no condition on
// a label move that a tag could feed, so a publish already between its
// describe and its move is not covered. A run whose version was
// discarded never publishes again. A secret that does not exist gets no
// tag.
func (s *Store) withdraw(ctx context.Context, name, run string, st secretState) error {
	if slices.Contains(st.withdrawn, run) {
		return nil
	}
	runs := append([]string{run}, st.withdrawn...)
	if len(runs) > withdrawnKept {
		runs = runs[:withdrawnKept]
	}
	if _, err := s.client.TagResource(ctx, &secretsmanager.TagResourceInput{SecretId: aws.String(name),
		Tags: []types.Tag{{Key: aws.String(TagWithdrawn), Value: aws.String(strings.Join(runs, " "))}}}); err != nil {
		return s.fail("rollback", "TagResource", name, err)
	}
	return nil
}

// restorePrevious moves AWSPREVIOUS from the discarded version tok back to
// the version LabelPriorPrevious marks (the one that held it before tok
// was published), or takes it off tok when there was none.
func (s *Store) restorePrevious(ctx context.Context, name, tok string, st secretState) error {
	to := st.holder[LabelPriorPrevious]
	if to == tok || to == st.holder[LabelCurrent] {
		to = ""
	}
	if err := s.moveLabel(ctx, "rollback", name, LabelPrevious, to, tok); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "discarded version is no longer previous", "secret", name, "version_id", tok, "previous_version_id", to)
	return nil
}

// Abort takes AWSPENDING off the run's version when it has it and is not
// current. The unlabelled version is left for AWS to delete.
func (s *Store) Abort(ctx context.Context, req rotation.AbortRequest) error {
	name, tok, err := target("abort", req.Path, req.RunID)
	if err != nil {
		return err
	}
	st, err := s.describe(ctx, "abort", name)
	if err != nil || !st.exists || st.deleted != nil {
		return err
	}
	if !st.has(tok, LabelPending) {
		return nil
	}
	if st.has(tok, LabelCurrent) {
		if st.unpublishedFirst(tok) {
			s.log.WarnContext(ctx, "cannot abort the first version of a secret: AWS made it AWSCURRENT when it was stored; "+
				"it stays labelled AWSPENDING (reported as pending, not current) until a later run publishes",
				"secret", name, "run_id", req.RunID, "version_id", tok)
		}
		return nil // published: nothing to abort
	}
	if err := s.moveLabel(ctx, "abort", name, LabelPending, "", tok); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "aborted staged version", "secret", name, "run_id", req.RunID, "version_id", tok)
	return nil
}
