package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotators/awsiam"
)

// awsIAM builds the awsiam rotator of s. Its own AWS credentials come
// from the SDK's default chain (IRSA, AWS_* variables, profile).
func (w *wiring) awsIAM(ctx context.Context, s *policy.SecretSpec) (*awsiam.Rotator, error) {
	r, err := awsiam.New(ctx, awsiam.Config{Spec: s.Rotator.AWSIAM, Logger: w.logger})
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", s.ID, err)
	}
	w.noteAWSCredentials(r.Credentials())
	return r, nil
}

// awsCredentialsTimeout bounds the one retrieval of rotator's own AWS
// credentials for redaction (awsRedact).
const awsCredentialsTimeout = 5 * time.Second

// noteAWSCredentials keeps the credentials provider of the first AWS
// client the wiring builds (w.mu held): every AWS client of one process
// resolves the same default chain (environment, AWS_PROFILE, the shared
// files, credential_process, IRSA, the instance role).
func (w *wiring) noteAWSCredentials(p aws.CredentialsProvider) {
	if w.awsCreds == nil && p != nil {
		w.awsCreds = p
	}
}

// awsRedact returns rotator's own AWS secrets for the engine's redaction
// (rotation.Target.Redact), as the environment's are (awsIAMSecrets):
// the secret access key and session token the default chain resolved,
// wherever they came from (a shared credentials file, a profile,
// credential_process). They are retrieved once per wiring, the first
// time a target has an AWS client; credentials that cannot be retrieved
// give nothing (the client reports them when it calls AWS, as before).
// Credentials that rotate (IRSA, an instance role) are registered as
// first retrieved (docs/decisions.md).
func (w *wiring) awsRedact(ctx context.Context) []secret.Value {
	w.mu.Lock()
	p := w.awsCreds
	w.mu.Unlock()
	if p == nil {
		return nil
	}
	w.awsMu.Lock()
	defer w.awsMu.Unlock()
	if !w.awsDone {
		w.awsDone = true
		w.awsSecrets = awsCredentialSecrets(ctx, p)
	}
	return w.awsSecrets
}

// awsCredentialSecrets retrieves the credentials of p (within
// awsCredentialsTimeout) and returns their secret access key and session
// token in every form redaction replaces; nothing if they cannot be
// retrieved. Retrieving through the client's own provider fills its
// cache: the client's first call does not retrieve them again.
func awsCredentialSecrets(ctx context.Context, p aws.CredentialsProvider) []secret.Value {
	ctx, cancel := context.WithTimeout(ctx, awsCredentialsTimeout)
	defer cancel()
	c, err := p.Retrieve(ctx)
	if err != nil {
		return nil
	}
	var out []secret.Value
	for _, v := range []string{c.SecretAccessKey, c.SessionToken} {
		if len(v) >= 8 {
			out = append(out, forms(secret.New(v))...)
		}
	}
	return out
}

// awsIAMSecrets are the rotator's own AWS secrets the engine redacts: a
// static secret access key (or session token) from the environment.
func awsIAMSecrets(s *policy.SecretSpec) []secret.Value {
	if s.Rotator.AWSIAM == nil {
		return nil
	}
	var out []secret.Value
	for _, k := range []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		if v := os.Getenv(k); len(v) >= 8 {
			// Also %-escaped and JSON-escaped, as the management keys
			// (a secret access key may hold / and +).
			out = append(out, forms(secret.New(v))...)
		}
	}
	return out
}
