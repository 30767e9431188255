package storetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/mototest"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/storetest"
	"github.com/rotator/rotator/stores/vault"
)

// personBetween is a DocStore through which one secret writes; before
// each of that secret's writes, a person writes the document's
// telegram_token with the store's own API (as they would by hand), so the
// secret's compare-and-set write meets a document changed since its read.
type personBetween struct {
	rotation.DocStore
	person    func(value string)
	writes    atomic.Int64
	conflicts atomic.Int64
	mu        sync.Mutex
	last      string
	// wrote, when not nil, is closed after the next person write.
	wrote chan struct{}
}

func (p *personBetween) WriteDoc(ctx context.Context, path string, doc map[string]string, rev string) error {
	n := p.writes.Add(1)
	if n%2 == 1 { // every other try: the first try of each publish
		p.mu.Lock()
		p.last = fmt.Sprintf("telegram-%d-%s", n, secret.New(fmt.Sprint(n)).Fingerprint())
		p.person(p.last)
		if p.wrote != nil {
			close(p.wrote)
			p.wrote = nil
		}
		p.mu.Unlock()
	}
	err := p.DocStore.WriteDoc(ctx, path, doc, rev)
	if errors.Is(err, rotation.ErrDocConflict) {
		p.conflicts.Add(1)
	}
	return err
}

// TestSharedDocumentTwoSecretsAndAPerson: two secrets own fields of one
// Vault path (and, separately, of one AWS secret) and publish
// concurrently, each with the fence of its own last run; a person writes
// an unrelated field between one secret's read and its write every
// round. No update is lost: after every round each owned field holds its
// secret's new version and the person's field the person's last value.
// Each rollback then restores only its own fields.
func TestSharedDocumentTwoSecretsAndAPerson(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	vd := vaultdev.New(t, vaultdev.Options{})
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte(vd.RootToken), 0o600))
	vspec := &policy.VaultSpec{Address: vd.Addr, Mount: "secret"}
	vspec.Auth.Token = &policy.VaultTokenAuth{Token: policy.Ref{File: tok}}
	vs, err := vault.New(ctx, vault.Config{Spec: vspec})
	require.NoError(t, err)
	t.Cleanup(vs.Close)
	kv := vd.Client(t).KVv2("secret")

	moto := mototest.New(t)
	cfg := moto.AWSConfig()
	as, err := awssm.New(ctx, awssm.Config{Spec: &policy.AWSSMSpec{}, AWS: &cfg})
	require.NoError(t, err)
	sm := secretsmanager.NewFromConfig(cfg)

	for _, tc := range []struct {
		name   string
		doc    rotation.DocStore
		path   string
		person func(t *testing.T, path, value string)
		read   func(t *testing.T, path string) map[string]string
	}{
		{"vault", vs, "ai-tg-bot/prod",
			func(t *testing.T, path, value string) {
				_, err := kv.Patch(ctx, path, map[string]any{"telegram_token": value})
				require.NoError(t, err)
			},
			func(t *testing.T, path string) map[string]string {
				s, err := kv.Get(ctx, path)
				require.NoError(t, err)
				out := map[string]string{}
				for k, v := range s.Data {
					out[k] = fmt.Sprint(v)
				}
				return out
			}},
		{"aws", as, "ai-tg-bot/prod",
			func(t *testing.T, path, value string) {
				// What a person does in the console: read, edit, save.
				out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(path), VersionStage: aws.String("AWSCURRENT")})
				require.NoError(t, err)
				var d map[string]string
				require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.SecretString)), &d))
				d["telegram_token"] = value
				b, _ := json.Marshal(d)
				// Saved as a new version made current by moving AWSCURRENT
				// (a plain PutSecretValue would do the same on AWS; moto
				// then leaves AWSCURRENT on two versions, since it tracks
				// the current version apart from the labels that
				// UpdateSecretVersionStage moves).
				po, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(path), SecretString: aws.String(string(b)),
					VersionStages: []string{"PERSON"}})
				require.NoError(t, err)
				_, err = sm.UpdateSecretVersionStage(ctx, &secretsmanager.UpdateSecretVersionStageInput{SecretId: aws.String(path),
					VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: po.VersionId, RemoveFromVersionId: out.VersionId})
				require.NoError(t, err)
			},
			func(t *testing.T, path string) map[string]string {
				out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(path), VersionStage: aws.String("AWSCURRENT")})
				require.NoError(t, err)
				var d map[string]string
				require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.SecretString)), &d))
				return d
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The document as the application team keeps it.
			require.NoError(t, tc.doc.WriteDoc(ctx, tc.path, map[string]string{"telegram_token": "t0", "db_password": "by-hand", "openrouter_key": "sk-by-hand"}, ""))
			pb := &personBetween{DocStore: tc.doc, person: func(v string) { tc.person(t, tc.path, v) }}
			db := rotation.SharedFields(pb, rotation.SharedMetaField("db/postgres"), map[string]string{"password": "db_password", "username": "db_user"})
			api := rotation.SharedFields(tc.doc, rotation.SharedMetaField("api/openrouter"), map[string]string{"api_key": "openrouter_key"})

			var dbV, apiV []rotation.Version
			for round := int64(1); round <= 4; round++ {
				d := storetest.Version(t, round, storetest.RunID())
				a := storetest.Version(t, round, storetest.RunID())
				a.Credential = rotation.Credential{Secret: a.Credential.Secret, Field: "api_key", KeyID: "k" + fmt.Sprint(round)}
				expect := func(vs []rotation.Version) *rotation.Expect {
					if len(vs) == 0 {
						return &rotation.Expect{} // a version put there by hand has no run id
					}
					return &rotation.Expect{RunID: vs[len(vs)-1].RunID}
				}
				// The api secret publishes once the person wrote (AWS has no
				// compare-and-set for a person's read-edit-save, which would
				// otherwise clobber a write landing between the two), racing
				// the db secret, which read before the person wrote.
				wrote := make(chan struct{})
				pb.mu.Lock()
				pb.wrote = wrote
				pb.mu.Unlock()
				var wg sync.WaitGroup
				errs := make([]error, 2)
				wg.Add(2)
				go func() {
					defer wg.Done()
					errs[0] = db.Publish(ctx, rotation.PublishRequest{Path: tc.path, Version: d, Expect: expect(dbV)})
				}()
				go func() {
					defer wg.Done()
					<-wrote
					errs[1] = api.Publish(ctx, rotation.PublishRequest{Path: tc.path, Version: a, Expect: expect(apiV)})
				}()
				wg.Wait()
				require.NoError(t, errs[0], "round %d: db", round)
				require.NoError(t, errs[1], "round %d: api", round)
				dbV, apiV = append(dbV, d), append(apiV, a)

				got := tc.read(t, tc.path)
				require.Equal(t, d.Credential.Secret.Reveal(), got["db_password"], "round %d: db_password is the db secret's new version", round)
				require.Equal(t, d.Credential.Username, got["db_user"], "round %d", round)
				require.Equal(t, a.Credential.Secret.Reveal(), got["openrouter_key"], "round %d: openrouter_key is the api secret's new version", round)
				pb.mu.Lock()
				require.Equal(t, pb.last, got["telegram_token"], "round %d: the person's write is kept", round)
				pb.mu.Unlock()
			}
			require.GreaterOrEqual(t, pb.conflicts.Load(), int64(4), "the person's write came between read and write every round")

			// The first publish kept the values put there by hand as previous.
			first := rotation.SharedFields(tc.doc, rotation.SharedMetaField("db/postgres"), map[string]string{"password": "db_password", "username": "db_user"})
			desc, err := first.Describe(ctx, rotation.DescribeRequest{Path: tc.path})
			require.NoError(t, err)
			require.Equal(t, dbV[3].RunID, desc.Current.RunID)
			require.Equal(t, dbV[2].RunID, desc.Previous.RunID)

			// Each rollback touches only its own fields.
			before := tc.read(t, tc.path)
			require.NoError(t, db.Rollback(ctx, rotation.RollbackRequest{Path: tc.path, RunID: dbV[3].RunID}))
			got := tc.read(t, tc.path)
			require.Equal(t, dbV[2].Credential.Secret.Reveal(), got["db_password"])
			require.Equal(t, dbV[2].Credential.Username, got["db_user"])
			require.Equal(t, before["openrouter_key"], got["openrouter_key"])
			pb.mu.Lock()
			require.Equal(t, pb.last, got["telegram_token"], "the person's write during the rollback is kept")
			pb.mu.Unlock()

			tc.person(t, tc.path, "after-db-rollback")
			require.NoError(t, api.Rollback(ctx, rotation.RollbackRequest{Path: tc.path, RunID: apiV[3].RunID}))
			got = tc.read(t, tc.path)
			require.Equal(t, apiV[2].Credential.Secret.Reveal(), got["openrouter_key"])
			require.Equal(t, dbV[2].Credential.Secret.Reveal(), got["db_password"], "the db rollback stays")
			require.Equal(t, "after-db-rollback", got["telegram_token"])

			// A stale writer of one secret is fenced by its own group only.
			err = api.Publish(ctx, rotation.PublishRequest{Path: tc.path, Version: storetest.Version(t, 9, storetest.RunID()), Expect: &rotation.Expect{RunID: apiV[3].RunID}})
			require.ErrorIs(t, err, rotation.ErrStoreMoved)
		})
	}
}
