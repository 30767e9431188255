package awssm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/uuid"

	"github.com/rotator/rotator/rotation"
)

// LabelWrite marks, for the moment between PutSecretValue and the move of
// AWSCURRENT, a version WriteDoc wrote (PutSecretValue without a label
// would make it AWSCURRENT at once, unfenced).
const LabelWrite = "ROTATOR_WRITE"

var _ rotation.DocStore = (*Store)(nil)

// ReadDoc returns the AWSCURRENT version's JSON object and its VersionId
// as the revision (rotation.DocStore); nil and "" when the secret does
// not exist or has no current version.
func (s *Store) ReadDoc(ctx context.Context, path string) (map[string]string, string, error) {
	st, err := s.describe(ctx, "read", path)
	if err != nil || !st.exists {
		return nil, "", err
	}
	if st.deleted != nil {
		return nil, "", s.deletionError("read", path, st.deleted)
	}
	cur := st.holder[LabelCurrent]
	if cur == "" {
		return nil, "", nil
	}
	d, _, err := s.read(ctx, "read", path, cur)
	if errors.Is(err, errNotRotatorData) {
		return nil, "", rotation.Permanent(fmt.Errorf("awssm secret %q: the current value is not a JSON object of strings: a shared secret must be one", path))
	}
	return d, cur, err
}

// WriteDoc writes doc as a new version and makes it AWSCURRENT only if
// AWSCURRENT is still on rev (UpdateSecretVersionStage with
// RemoveFromVersionId = rev, which AWS refuses otherwise): an error
// matching rotation.ErrDocConflict when another writer came between.
func (s *Store) WriteDoc(ctx context.Context, path string, doc map[string]string, rev string) error {
	st, err := s.ensure(ctx, "write", path)
	if err != nil {
		return err
	}
	if st.holder[LabelCurrent] != rev {
		return fmt.Errorf("awssm secret %q: AWSCURRENT is %s, not %s: %w", path, versionName(st.holder[LabelCurrent]), versionName(rev), rotation.ErrDocConflict)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	tok := uuid.NewString()
	if _, err := s.client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: aws.String(path), ClientRequestToken: aws.String(tok), SecretString: aws.String(string(data)),
		VersionStages: []string{LabelWrite},
	}); err != nil {
		return s.fail("write", "PutSecretValue", path, err)
	}
	after, err := s.describe(ctx, "write", path)
	if err != nil {
		return err
	}
	switch cur := after.holder[LabelCurrent]; {
	case cur == tok:
		// The secret's first version: AWS made it current itself.
	case cur != rev:
		return fmt.Errorf("awssm secret %q: AWSCURRENT moved to %s meanwhile: %w", path, versionName(cur), rotation.ErrDocConflict)
	default:
		if err := s.moveLabel(ctx, "write", path, LabelCurrent, tok, rev); err != nil {
			if isCode(err, "InvalidParameterException") {
				return fmt.Errorf("%w: %w", rotation.ErrDocConflict, err)
			}
			return err
		}
	}
	if err := s.moveLabel(ctx, "write", path, LabelWrite, "", tok); err != nil {
		s.log.WarnContext(ctx, "could not remove the write label", "secret", path, "version_id", tok, "err", err)
	}
	s.log.InfoContext(ctx, "wrote shared document", "secret", path, "version_id", tok, "previous_version_id", rev)
	return nil
}

// Where names the document for messages (rotation.DocStore).
func (s *Store) Where(path string) string { return fmt.Sprintf("awssm secret %q", path) }
