package console

import (
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"money":   money,
	"ago":     ago,
	"seconds": seconds,
	"when":    when,
	"pct": func(part, whole int) int {
		if whole <= 0 {
			return 0
		}
		return int(math.Round(100 * float64(part) / float64(whole)))
	},
	"deref": func(p *int64) string {
		if p == nil {
			return "unknown"
		}
		return strconv.FormatInt(*p, 10)
	},
	"short": func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return s[:n] + "…"
	},
	"rate": func(p *float64) string {
		if p == nil {
			return "measuring…"
		}
		return strconv.FormatFloat(*p, 'f', 1, 64) + "/s"
	},
	"deref2": func(p *bool) bool { return p != nil && *p },
	"f1":     func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
}

// minorDigits are the currencies without two decimals.
var minorDigits = map[string]int{"JPY": 0, "KRW": 0, "HUF": 2, "BHD": 3, "KWD": 3, "TND": 3}

// money formats an amount in minor units: "EUR 12.50".
func money(minor int64, currency string) string {
	d, ok := minorDigits[currency]
	if !ok {
		d = 2
	}
	neg := minor < 0
	if neg {
		minor = -minor
	}
	s := strconv.FormatInt(minor, 10)
	if d > 0 {
		for len(s) <= d {
			s = "0" + s
		}
		s = s[:len(s)-d] + "." + s[len(s)-d:]
	}
	if neg {
		s = "-" + s
	}
	return strings.TrimSpace(currency + " " + s)
}

// ago says how long ago t was, coarsely.
func ago(t any) string {
	var at time.Time
	switch v := t.(type) {
	case time.Time:
		at = v
	case *time.Time:
		if v == nil {
			return "never"
		}
		at = *v
	default:
		return ""
	}
	if at.IsZero() {
		return "never"
	}
	d := time.Since(at)
	if d < 0 {
		return "in " + coarse(-d)
	}
	return coarse(d) + " ago"
}

func coarse(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// seconds formats an age in seconds.
func seconds(s float64) string {
	if s <= 0 {
		return "–"
	}
	return coarse(time.Duration(s * float64(time.Second)))
}

// when formats a time for a table: UTC, to the second.
func when(t any) string {
	switch v := t.(type) {
	case time.Time:
		if v.IsZero() {
			return "–"
		}
		return v.UTC().Format("2006-01-02 15:04:05") + " UTC"
	case *time.Time:
		if v == nil {
			return "–"
		}
		return v.UTC().Format("2006-01-02 15:04:05") + " UTC"
	}
	return ""
}
