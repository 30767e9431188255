// Package announce tells people about secrets before and after their due
// time, apart from runs: an "overdue" event for a secret whose credential
// is older than 1.1 × its interval (schedule.Overdue), and, with
// notify.remind_before, an "upcoming" event before a scheduled rotation.
//
// # Episodes
//
// Each overdue secret is announced once until it is rotated (then the
// episode ends, and a later overdue spell is announced again); each
// upcoming rotation once per due time. The memory is per process (the
// daemon); failures and quarantines are announced by the engine and
// deduplicated across processes by notify's episodes in the state
// database.
//
// # Cost
//
// Announce reads every secret's row, so it scans at most once per Every
// (default 5 minutes), however often the daemon ticks. Settings are looked
// up through the daemon's index of the policies (a map read per secret).
package announce
