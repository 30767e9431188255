package main

import (
	"context"
	"fmt"
	"os"

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
	return r, nil
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
