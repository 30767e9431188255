// Package awscreds keeps rotator's own AWS credentials out of the errors
// their provider returns.
//
// The SDK's credential_process provider quotes the whole output of a
// process it cannot parse in its error ("parse failed of process output:
// {... "SecretAccessKey": ...}"), and that error reaches every call the
// client makes. The engine redacts the keys it knows, but a key whose
// first retrieval is the one that fails was never known. Provider takes
// the output out of that error at its source.
package awscreds

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
)

// ErrProcessOutput replaces a credential_process error that quotes the
// process's output.
var ErrProcessOutput = errors.New("rotator's AWS credential_process answered output the AWS SDK cannot parse " +
	"(the SDK's error is withheld: it quotes the output, which may hold a key); run the process by hand " +
	"and check it prints the JSON of https://docs.aws.amazon.com/sdkref/latest/guide/feature-process-credentials.html")

// Withhold returns err, or ErrProcessOutput when err is a credential
// process failure that quotes the process's output.
func Withhold(err error) error {
	var pe *processcreds.ProviderError
	if err != nil && errors.As(err, &pe) && strings.Contains(pe.Error(), "process output:") {
		return ErrProcessOutput
	}
	return err
}

// Provider wraps a credentials provider so that its errors go through
// Withhold.
type Provider struct{ aws.CredentialsProvider }

// Retrieve retrieves the credentials of the wrapped provider.
func (p Provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.CredentialsProvider.Retrieve(ctx)
	return c, Withhold(err)
}

// Wrap returns p wrapped in Provider (nil stays nil).
func Wrap(p aws.CredentialsProvider) aws.CredentialsProvider {
	if p == nil {
		return nil
	}
	if _, ok := p.(Provider); ok {
		return p
	}
	return Provider{p}
}
