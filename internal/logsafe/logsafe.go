// Package logsafe bounds the client-controlled text that reaches a log
// line. A request can carry tens of kilobytes in one header, a token's
// "kid", a path or a username; written into every denial line, that
// fills disks and log pipelines at the attacker's rate and lets one line
// pose as many. Every such string passes through String before it is
// logged. The package has no state and is safe for concurrent use.
package logsafe

import (
	"strconv"
	"unicode/utf8"
)

// Max is the most bytes of one client-controlled string a log line
// carries. A longer string is cut at a UTF-8 boundary at or below Max and
// marked with the length it had.
const Max = 256

// String returns s when it is at most Max bytes, otherwise its first
// bytes (never splitting a UTF-8 sequence) followed by
// "…[truncated, N bytes]". It allocates only when it cuts.
func String(s string) string {
	if len(s) <= Max {
		return s
	}
	cut := Max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[truncated, " + strconv.Itoa(len(s)) + " bytes]"
}
