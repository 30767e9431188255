package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a policies file: where it is, which field, and
// what was expected.
type Error struct {
	Pos Position
	// Field is the path of the field: secrets[0].rotator.postgres.mode.
	// Empty for problems that belong to no field (YAML syntax).
	Field string
	Msg   string
}

// Errorf returns a positioned configuration error. Packages that validate
// their own part of a policy (store and rotator factories) use it so their
// messages read like the loader's.
func Errorf(pos Position, field, format string, args ...any) *Error {
	return &Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Error formats the error as file:line:column: field: message.
func (e *Error) Error() string {
	var b strings.Builder
	if p := e.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a policies file, sorted by position.
// Load and Parse return one (never empty) when the file is not valid.
// errors.As finds both the list and, through Unwrap, its first *Error.
type ErrorList []*Error

// MaxShown is how many errors ErrorList.Error shows; the rest are
// counted on a last line. One mistake in defaults, classes or stores can
// make every secret of a large file fail (100,000 lines for an unknown
// store); the list itself keeps them all.
const MaxShown = 100

// Error joins the errors with newlines, the first MaxShown of them.
func (l ErrorList) Error() string {
	n := min(len(l), MaxShown)
	s := make([]string, n, n+1)
	for i, e := range l[:n] {
		s[i] = e.Error()
	}
	if len(l) > n {
		more := "problems"
		if len(l)-n == 1 {
			more = "problem"
		}
		s = append(s, fmt.Sprintf("... and %d more %s (%d in all; the first %d are shown): when many secrets fail alike, "+
			"look for one mistake they share (a store, a class, defaults), fix it and run rotator validate again", len(l)-n, more, len(l), n))
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors, so errors.As and errors.Is see each of them.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Sort orders the list by file, line and column, keeping the order of
// errors at one place. Callers that merge lists (the loader's and their
// own factories') sort the result with it.
func (l ErrorList) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
		)
	})
}

// sorted sorts the list and drops exact duplicates.
func (l ErrorList) sorted() ErrorList {
	l.Sort()
	return slices.CompactFunc(l, func(a, b *Error) bool { return *a == *b })
}
