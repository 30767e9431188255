// Package policy loads and validates policies.yaml: the classes, stores and
// secrets rotator manages.
//
// # Contract
//
//   - Load(path) / Parse(name, data) return a *File or an error listing every
//     problem, each as file:line:column, the field path
//     (secrets[0].rotator.postgres.role) and what is expected. Unknown fields
//     are errors.
//   - Built-in classes admin_token (30d), database (90d) and api_key (180d)
//     are merged under the file's own.
//   - (*File).Settings(s) gives a secret's effective settings (secret, then
//     class, then defaults, then built-in defaults).
//   - Secret material is never inline: a Ref names an environment variable
//     or a file, resolved by Ref.Resolve when it is needed (so validate and
//     plan need none of it).
package policy
