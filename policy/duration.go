package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Day is 24 hours. Policies count days, not calendar days: a rotation
// interval does not move with daylight saving time.
const Day = 24 * time.Hour

var durationRE = regexp.MustCompile(`^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$`)

// durationHint is what every duration error says is expected.
const durationHint = "expected a duration such as 90d, 12h or 30m"

// ParseDuration parses the compact form policies.yaml uses: whole numbers
// of days, hours, minutes and seconds, in that order, each at most once
// ("90d", "12h", "1d12h", "1h30m", "45s", "0s"). Negative durations, bare
// numbers and fractions are rejected.
func ParseDuration(s string) (Duration, error) {
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("must not be negative: %s, got %q", durationHint, s)
	}
	m := durationRE.FindStringSubmatch(s)
	if s == "" || m == nil {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return 0, fmt.Errorf("%s, got the bare number %s (add a unit)", durationHint, s)
		}
		return 0, fmt.Errorf("%s, got %q", durationHint, s)
	}
	var total time.Duration
	for i, unit := range []time.Duration{Day, time.Hour, time.Minute, time.Second} {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(math.MaxInt64/unit) || total > time.Duration(math.MaxInt64)-time.Duration(n)*unit {
			return 0, fmt.Errorf("%q is too long: %s", s, durationHint)
		}
		total += time.Duration(n) * unit
	}
	return Duration(total), nil
}

// String prints the compact form: 90d, 12h30m, 1d12h, 45s; zero is 0s. A
// remainder below a second (never produced by ParseDuration) is printed
// the way time.Duration prints it.
func (d Duration) String() string {
	v := time.Duration(d)
	if v == 0 {
		return "0s"
	}
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
		if v == math.MinInt64 {
			return time.Duration(v).String()
		}
		v = -v
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{Day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := v / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			v -= n * u.d
		}
	}
	if v > 0 {
		b.WriteString(v.String())
	}
	return b.String()
}

// MarshalJSON writes the compact form as a JSON string ("90d").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads the compact form from a JSON string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(durationHint)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}
