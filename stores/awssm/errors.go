package awssm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rotator/rotator/rotation"
)

// Errors the store returns, for errors.Is. Each is wrapped with the secret,
// the action and what to do; none carries a secret value.
var (
	// ErrNoCredentials: the SDK's credential chain found nothing usable.
	ErrNoCredentials = errors.New("no AWS credentials found")
	// ErrAccessDenied: IAM (or a resource policy) refused an action.
	ErrAccessDenied = errors.New("access denied")
	// ErrScheduledForDeletion: the secret exists but is scheduled for
	// deletion, so it cannot be read or written until it is restored.
	ErrScheduledForDeletion = errors.New("secret is scheduled for deletion")
	// ErrCreateDisabled: the secret does not exist and the store may not
	// create it.
	ErrCreateDisabled = errors.New("secret does not exist and create is disabled")
	// ErrForeignPending: AWSPENDING is on a version rotator did not write.
	ErrForeignPending = errors.New("AWSPENDING is held by another tool's version")
	// ErrVersionConflict: the run's version id already exists with other
	// content.
	ErrVersionConflict = errors.New("the run's version already exists with other content")
	// ErrUnreachable: no connection to the Secrets Manager endpoint.
	ErrUnreachable = errors.New("cannot reach AWS Secrets Manager")
)

// credentialsError marks a failure of the credential chain, so that it can
// be told apart from the API's own errors without matching strings.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// markCredentials wraps the configured provider and marks its errors.
type markCredentials struct{ p aws.CredentialsProvider }

func (m markCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.p.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return c, &credentialsError{err}
	}
	return c, err
}

// noCredentials is the provider of an aws.Config that has none.
type noCredentials struct{}

func (noCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("the AWS configuration has no credentials provider")
}

// fail maps an SDK error of AWS action (DescribeSecret, PutSecretValue...)
// during step op (stage, publish...) on secret name to the store's errors:
// the one place where AWS error codes are looked at.
func (s *Store) fail(op, action, name string, err error) error {
	where := fmt.Sprintf("%s secret %q: %s", op, name, action)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", where, err)
	}
	var ce *credentialsError
	if errors.As(err, &ce) {
		return rotation.Permanent(fmt.Errorf("%s: %w: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "+
			"a profile (AWS_PROFILE and ~/.aws/config), IRSA (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), "+
			"or an instance role: %w", where, ErrNoCredentials, ce.err))
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ResourceNotFoundException":
			return fmt.Errorf("%s: %w: %s", where, rotation.ErrNotFound, ae.ErrorMessage())
		case "AccessDeniedException":
			return rotation.Permanent(fmt.Errorf("%s secret %q: %w: secretsmanager:%s on the secret in %s was refused: "+
				"grant it to the identity rotator runs as (the awssm package doc lists the IAM actions): %s",
				op, name, ErrAccessDenied, action, s.region, ae.ErrorMessage()))
		case "InvalidRequestException":
			if isDeletionMessage(ae.ErrorMessage()) {
				return s.deletionError(op, name, nil)
			}
		case "DecryptionFailure", "EncryptionFailure", "KMSAccessDeniedException", "KMSDisabledException",
			"KMSInvalidStateException", "KMSNotFoundException":
			return rotation.Permanent(fmt.Errorf("%s: the secret's KMS key refused (%s): grant kms:Decrypt "+
				"and kms:GenerateDataKey on the key to the identity rotator runs as, and check the key is enabled: %w",
				where, ae.ErrorCode(), err))
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w at %s (check the endpoint, the network and any proxy): %w",
			where, ErrUnreachable, s.endpoint, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func isDeletionMessage(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "deletion") || strings.Contains(m, "marked deleted") || strings.Contains(m, "marked for delet")
}

// deletionError says the secret is scheduled for deletion and how to
// restore it. Retrying does not help.
func (s *Store) deletionError(op, name string, when *time.Time) error {
	at := ""
	if when != nil {
		at = " (deletion date " + when.UTC().Format(time.RFC3339) + ")"
	}
	return rotation.Permanent(fmt.Errorf("%s secret %q: %w%s: restore it with `aws secretsmanager restore-secret "+
		"--secret-id %s --region %s`, or publish to another path", op, name, ErrScheduledForDeletion, at, name, s.region))
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}
