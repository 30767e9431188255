// Package awssm publishes secret versions to AWS Secrets Manager, one
// secret per rotation.Store path, using Secrets Manager's staging labels.
//
// # Configuration
//
// The store comes from an awssm entry in policies.yaml (policy.AWSSMSpec):
// region, endpoint (a VPC endpoint, or a test server), kms_key_id and tags
// for secrets it creates, and create (default true). Validate checks a spec
// at load time without calling AWS; New builds the client. Credentials come
// from the SDK's default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a
// shared profile (AWS_PROFILE), IRSA web identity (AWS_ROLE_ARN and
// AWS_WEB_IDENTITY_TOKEN_FILE), the ECS task role or the EC2 instance role.
// The region is the spec's, else AWS_REGION or the profile's; AWS's own
// AWS_ENDPOINT_URL_SECRETS_MANAGER is honoured when the spec sets no
// endpoint.
//
// # What is stored
//
// The path is the secret's name. Each version's value is the JSON object of
// rotation.Version.Data: the secret under its field name ("password",
// "api_key"...), username, key_id, the extra fields (host, port...) and
// the metadata version, run_id, rotated_at and fingerprint. Secrets the
// store creates get the spec's KMS key and tags plus managed-by=rotator.
//
// # Label mapping
//
//	rotation.Store    Secrets Manager
//	Stage             PutSecretValue(ClientRequestToken=token, VersionStages=[AWSPENDING])
//	Publish           UpdateSecretVersionStage(AWSCURRENT, MoveTo=token, RemoveFrom=old current),
//	                  which moves AWSPREVIOUS to the old current; then AWSPENDING is removed
//	Describe          DescribeSecret.VersionIdsToStages, then GetSecretValue(VersionId) of the
//	                  AWSCURRENT, AWSPREVIOUS and AWSPENDING versions for their metadata
//	Read              the version labelled AWSCURRENT or AWSPREVIOUS, by VersionId
//	                  (before that, ROTATOR_PRIOR_PREVIOUS moves to the version that holds
//	                  AWSPREVIOUS, for a discarding rollback)
//	Rollback(run)     if AWSCURRENT is the run's version: AWSCURRENT back to the AWSPREVIOUS
//	                  version (AWS then labels the run's version AWSPREVIOUS); with Discard,
//	                  AWSPREVIOUS then moves from the run's version back to the
//	                  ROTATOR_PRIOR_PREVIOUS one (or comes off when there is none)
//	Abort(run)        AWSPENDING removed from the run's version; the unlabelled version is
//	                  left for AWS to delete
//
// Publish stages the version first when it is not there. Clients that read
// AWSCURRENT (GetSecretValue without a stage does) never see a staged
// version, with one exception below.
//
// # Idempotency
//
// The run id is the idempotency token: the version id (ClientRequestToken)
// of a run's version is Token(run id), the run id itself when it is a UUID
// (the engine's are), else a UUIDv5 of it in a fixed namespace; 36
// characters either way, within the 32-64 AWS accepts. So every retry of a
// run addresses the same version:
//
//   - Stage of a run already staged or current does nothing; of a run whose
//     version exists without a label (aborted before) labels it again.
//   - Publish of the run whose version is AWSCURRENT does nothing but clear
//     a leftover AWSPENDING: a retried publish adds no version.
//   - Before an existing version is labelled again or made current, its
//     data is compared with the request's; a retry that carries other data
//     (a regenerated credential) fails with ErrVersionConflict, as
//     PutSecretValue itself does (ResourceExistsException).
//   - Rollback and Abort of a run that is not current or not staged do
//     nothing.
//
// # The fence
//
// Publish with an expectation (rotation.PublishRequest.Expect: the run id
// the engine observed as current) compares it with the AWSCURRENT version
// (its VersionId is Token(run id), or its data's run_id) and moves
// AWSCURRENT with RemoveFromVersionId = that version: a different version
// current is refused at once, and one that becomes current between the
// compare and the move makes AWS refuse the move (InvalidParameterException);
// both are rotation.ErrStoreMoved, naming the secret, both run ids and the
// VersionId found. Rollback is fenced the same way by its run id
// (RemoveFromVersionId = the run's version).
//
// # Discard
//
// AWS moves AWSPREVIOUS to the old current whenever AWSCURRENT moves, so
// after a failed run's publish is put back AWSPREVIOUS would name the
// discarded version. Publish therefore first records which version holds
// AWSPREVIOUS in the custom staging label ROTATOR_PRIOR_PREVIOUS, and a
// discarding rollback moves AWSPREVIOUS back there; a discard interrupted
// between its two moves is finished by the next one. The label keeps one
// extra version from being deprecated; it needs no permission beyond
// UpdateSecretVersionStage.
//
// # A pending version already there
//
// AWSPENDING can be on one version only. When Stage (or Publish) finds it on
// another version:
//
//   - on the AWSCURRENT version (a finished rotation that left it there), it
//     is taken;
//   - on a version rotator wrote (its JSON has a run_id: an earlier run that
//     was never published or aborted), it is taken, and logged;
//   - on any other version (a rotation Lambda or another tool is mid-way or
//     gave up), the store stops with ErrForeignPending (Permanent), naming
//     the version and the command that clears the label:
//     aws secretsmanager update-secret-version-stage --secret-id NAME
//     --version-stage AWSPENDING --remove-from-version-id VERSION.
//
// A secret with Secrets Manager's own rotation enabled is logged as a
// warning: two rotators would fight over it.
//
// # The first version of a secret
//
// AWS makes the first version stored in a secret AWSCURRENT whatever labels
// the request names. A version that rotator wrote and that carries both
// AWSCURRENT and AWSPENDING while no version is AWSPREVIOUS is therefore
// treated as staged, not published: Describe reports it as Pending and
// Read(Current) returns ErrNotFound until Publish removes AWSPENDING. A
// client reading the new secret directly in that window does see it.
// Abort cannot take it back: it stays labelled (and reported) as pending
// until a later run stages and publishes over it, and it then becomes that
// run's previous version.
//
// # Errors
//
// Every error names the step, the secret and the AWS action, and never a
// secret value. Permanent (rotation.IsPermanent) are: ErrNoCredentials,
// ErrAccessDenied (which action on which secret), ErrScheduledForDeletion
// (with the restore-secret command), ErrCreateDisabled, ErrForeignPending,
// ErrVersionConflict, KMS refusals, and a Rollback with no previous version
// (wrapping rotation.ErrNotRestorable). ErrUnreachable (names the endpoint)
// and throttling are worth a retry. A missing secret is rotation.ErrNotFound
// for Read and an empty response for Describe.
//
// # Required IAM actions
//
// On the secrets (arn:aws:secretsmanager:REGION:ACCOUNT:secret:PATH-*):
//
//	secretsmanager:DescribeSecret
//	secretsmanager:GetSecretValue
//	secretsmanager:PutSecretValue
//	secretsmanager:UpdateSecretVersionStage
//	secretsmanager:CreateSecret     (create: true)
//	secretsmanager:TagResource      (CreateSecret with tags needs it; and a failed run's
//	                                 compensation tags the secret with the run it
//	                                 withdrew, rotator-withdrawn-runs, which a later
//	                                 publish of that run is refused by)
//
// and, with a customer-managed KMS key, kms:GenerateDataKey and kms:Decrypt
// on the key.
//
// # Tests
//
// The tests run against moto_server (internal/mototest). With
// ROTATOR_TEST_AWS_REAL=1 they run against the AWS account of the default
// credential chain instead (region from AWS_REGION or
// ROTATOR_TEST_AWS_REGION; ROTATOR_TEST_AWS_KMS_KEY for the KMS check),
// under secret names rotator-test/RANDOM/..., force-deleted at cleanup.
package awssm
