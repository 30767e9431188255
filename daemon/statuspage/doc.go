// Package statuspage serves the status page of `rotator daemon`: a
// read-only, server-rendered view of every secret (class, current version
// and credential name — never a value —, age against its interval, next
// due, last outcome, and one highlighted condition) and, per secret, the
// timeline of its runs with the commands that act on it.
//
// # What it reads
//
// The list is report.Status over daemon.Generation.Preview (what `rotator
// status` shows) plus the daemon's last published-credential check of each
// secret (Source.LastCheck, memory only); a secret's page adds its runs
// (state.DB.Runs, what `rotator history` shows). Conditions are
// report.ConditionOf, sorted by report.Condition.Rank so the secrets that
// need a person come first.
//
// # Pages
//
// The list shows Config.Rows secrets a view (default DefaultRows), the
// ones that need a person first; ?page=N shows the next ones, and the
// search and the condition filter narrow the whole list before it is cut
// into pages. A read keeps one row per secret and reads the state a batch
// at a time (daemon.Generation.PreviewEach) with the collector held as
// during a reload.
//
// # Caching: a page view never hammers the state database
//
// A read is kept for Config.Refresh (default DefaultRefresh) and shared by
// every viewer: concurrent views of a stale page wait for one read
// (singleflight), and at most one read runs at a time (one state
// connection, as /metrics' refresh), so any number of viewers cost at most
// one list read and one read per viewed secret per Refresh. A secret that
// is not in the policies is answered 404 without a read.
//
// # No JavaScript, no outside resources
//
// html/template renders everything on the server; filters and search are
// query parameters of a plain GET form (?q=text&state=condition). The one
// stylesheet is embedded and served from /static/; bars are <meter>
// elements and inline SVG. The Content-Security-Policy allows nothing but
// the page's own stylesheet: no script runs, nothing is fetched elsewhere.
//
// # Access
//
// With Config.Token set, every request (the stylesheet too) must carry it:
// `Authorization: Bearer TOKEN`, or HTTP basic auth with TOKEN as the
// password (any user name: what a browser prompts for). The comparison is
// constant-time. Without a token the page is open to whoever reaches its
// address; the daemon command only allows that on an address of its own
// (--status-page-listen).
package statuspage
