// Package awsiam rotates the access keys of an AWS IAM user
// (aws-sdk-go-v2/service/iam).
//
// # The dual key
//
// IAM allows two access keys per user: the current key and the new one.
// The credential is published as access_key_id and secret_access_key
// (Credential.KeyID and Secret, Field "secret_access_key"; Username is the
// IAM user; connection fields beside them). Rotator owns the user's keys:
// give it a user of its own (one per secret).
//
//	generate  list the user's keys and rotator's tags on the user. The
//	          current key is the engine's (what the stores publish); on a
//	          first rotation, the user's one Active key (none: a user
//	          without keys gets its first; two Active: refuse, naming
//	          both: rotator would guess which one clients use). Refuse
//	          when the current key is not on the user (naming the keys
//	          there) or is Inactive. The other key must go to free its
//	          slot: deleted when it is Inactive (the key the previous
//	          rotation retired: AWS refuses it, no client can use it) or
//	          the stray of an earlier try of this run (below); refused,
//	          naming it and when IAM last saw it used, when it is Active
//	          (it may be in use: a rollback leaves the key it rolled away
//	          from active for the clients that still hold it; a person
//	          deactivates it when no client uses it, and the next run
//	          deletes it). Then CreateAccessKey, and sts:GetCallerIdentity
//	          with the new key (needs no permission), retried for up to
//	          new_key_wait (AWS may refuse a new key for seconds); a key
//	          that never works is deleted before the error returns.
//	test      sts:GetCallerIdentity with the key must name the user, and
//	          IAM must list the key as Active.
//	clients   ErrUnsupported: IAM cannot say who uses a key.
//	LastUsed  (rotation.LastUsedReporter, the last_used check)
//	          GetAccessKeyLastUsed. AWS records uses late (it documents
//	          up to 4 hours), so a key younger than LastUsedLag that IAM
//	          reports as never used counts as used now; choose unused_for
//	          longer than that delay.
//	retire    UpdateAccessKey Inactive on the old key (refused when the
//	          new key is not an Active key of the user; an old key already
//	          Inactive or gone is done). The Inactive key stays until the
//	          next rotation's generate needs its slot and deletes it: until
//	          then a rollback can re-activate it. Terminate is ignored.
//	restore   UpdateAccessKey Active; a deleted key: ErrNotRestorable.
//	          With the old secret (a store still held it), it is tested.
//	discard   DeleteAccessKey on the unpublished new key. With none named
//	          (generate failed), the key a generate of the fence's run
//	          created and never returned, if any (below); else nothing.
//
// # A retried generate leaves no extra key
//
// Before CreateAccessKey, generate writes its intent on the user's tag
// rotator:pending ("run=<run id> at=<unix seconds>"), and after it the
// new key's id ("... key=<id>"). A retry of the same run (the engine
// retries generate with the same run id after a crash or an error)
// deletes the key that tag names unless it is the current one, or, when
// the earlier try ended between the create and the record, the one key
// that is neither current nor created before the intent (less one minute
// of clock skew). That key was never returned, so no store holds it. The
// user never holds more than two keys: IAM refuses a third
// (LimitExceeded), and generate frees a slot only by the rules above.
//
// # The fence: what IAM cannot check
//
// IAM has no conditional writes: no call can say "only if nothing
// changed since I looked". What fences an action:
//
//   - the engine's lease: an action starts only while the lease has more
//     than the action's deadline left, and its context (and so the HTTP
//     request) ends before the lease could expire;
//   - observe before act: every action reads the user's keys first and
//     acts only on what it finds (retire refuses unless the new key is an
//     Active key of the user; generate never removes an Active key it did
//     not create; discard and retire never touch the current key);
//   - the tag rotator:fence ("token=<lease token> run=<run> action=<a>"):
//     each destructive action reads it, refuses (ErrFenced) when it names
//     a newer lease token, and writes its own token before acting.
//
// What cannot be fenced: a request already sent that AWS executes late
// (a process paused between its check and its call, or a request held in
// the network past the lease) lands without any check, because the read
// of the tag and the write are two calls. Such a late deactivation of a
// key that a newer holder has made current again (a rollback) would
// disable a published key: `rotator check` (rotation.Checker) reports it
// (credential_broken) and a rollback or `aws iam update-access-key
// --status Active` repairs it. A late CreateAccessKey cannot make a third
// key (IAM's limit). A late write of the fence tag can move the token
// back; only the stale process itself could then pass the check.
//
// # Required IAM actions
//
// On the rotated user (arn:aws:iam::ACCOUNT:user/NAME), for rotator's own
// credentials (deploy/aws/rotator-awsiam-policy.json):
//
//	iam:ListAccessKeys        observe the user's keys
//	iam:CreateAccessKey       generate
//	iam:UpdateAccessKey       retire (Inactive), restore (Active)
//	iam:DeleteAccessKey       free the slot, discard
//	iam:GetAccessKeyLastUsed  the last_used check, messages
//	iam:ListUserTags          read the fence and pending tags
//	iam:TagUser               write them
//
// sts:GetCallerIdentity is called with the key under test and needs no
// permission.
//
// # AWS and moto
//
// The tests run against moto_server with its IAM authentication enforced
// (internal/mototest.StartIAMAuth): a deleted key is refused there as on
// AWS (InvalidClientTokenId). What moto 5 does not model, pinned by
// internal/mototest.TestIAMAuthModel: it accepts an Inactive key (AWS
// refuses it), so tests and Test decide "refused" for an Inactive key by
// its status as IAM lists it; it records a key's last use at once (AWS up
// to hours later), so tests shorten LastUsedLag; it applies no eventual
// consistency (a key works the moment it is created and stops the moment
// it is deleted; on AWS either may take seconds); it allows an identity
// policy statement only with "Resource": "*", so the least-privilege
// policy in deploy/aws (which names the user's ARN) is checked for its
// actions, not enforced, in tests. The SDK cannot read the code of moto's
// STS errors (moto wraps them in <Errors>); the HTTP status 403 is what
// tells a refused key there.
package awsiam
